"""The lifecycle table, the fold and the predicates, without I/O; and the state lines' wire format."""

from __future__ import annotations

import json

import pytest

from batchgen.lifecycle import (TRANSITIONS, Action, IllegalTransitionError, JobStatus, fold, in_flight, is_spending,
                                next_action)
from batchgen.state import JobRecord, StateLog, load
from batchgen.state_events import (KINDS, Adopted, Completed, Downloaded, Failed, Job, Missing, Submitted, Submitting,
                                   Unknown, Unsent, event_from_json)

S = JobStatus


def _downloaded() -> JobRecord:
    rec = JobRecord(key="k", id="a")
    for event in (Job("k", id="a", cost=1.2), Submitting("k", 1, "h", "m", 1.2), Submitted("k", "p1"),
                  Completed("k", "p1", ("http://x/v.mp4",)), Downloaded("k", "a.mp4", 10, "s")):
        assert fold(rec, event)
    return rec


def test_a_job_goes_through_its_lifecycle():
    rec = _downloaded()
    assert rec.status is S.DOWNLOADED and rec.pid == "p1" and rec.path == "a.mp4" and rec.cost == 1.2


def test_an_illegal_event_is_refused_loudly_when_written_and_skipped_when_loaded(caplog):
    rec = JobRecord(key="k")
    with pytest.raises(IllegalTransitionError, match="'downloaded' event cannot follow status 'new'"):
        fold(rec, Downloaded("k", "a.mp4", 1, "s"))
    assert not fold(rec, Downloaded("k", "a.mp4", 1, "s"), strict=False)
    assert rec.status is S.NEW and rec.path == "" and "ignored" in caplog.text


def test_downloaded_then_submitted_no_longer_resurrects_a_stale_job():
    """The old fold made a fresh key SUBMITTED, keeping the stale path, from these two lines."""
    rec = JobRecord(key="k")
    assert not fold(rec, Downloaded("k", "old.mp4", 1, "s"), strict=False)
    assert not fold(rec, Submitted("k", "p"), strict=False)
    assert rec.status is S.NEW and rec.path == "" and rec.pid == ""


def test_a_duplicated_submitting_line_never_turns_a_downloaded_job_unknown(tmp_path):
    """Issue 15 item 15: a repeated line is a no-op, wherever the duplicate sits."""
    rec = _downloaded()
    assert not fold(rec, Submitting("k", 1, "h", "m", 1.2))
    assert rec.status is S.DOWNLOADED and rec.pid == "p1"

    path = tmp_path / "state.jsonl"
    with StateLog(path) as log:
        log.open()
        for event in (Job("k", id="a", cost=1.2), Submitting("k", 1, "h", "m", 1.2), Submitted("k", "p1"),
                      Completed("k", "p1", ("http://x/v.mp4",)), Downloaded("k", "a.mp4", 10, "s")):
            log.append(event)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + [lines[1]] + lines[2:] + [lines[1]]) + "\n")
    again = load(path).jobs["k"]
    assert again.status is S.DOWNLOADED and again.pid == "p1" and again.attempts == 1


def test_repeated_answers_change_nothing():
    rec = JobRecord(key="k")
    fold(rec, Submitting("k", 1, "h", "m", 1.2))
    fold(rec, Submitted("k", "p1"))
    assert not fold(rec, Submitted("k", "p1"))
    assert rec.status is S.SUBMITTED
    fold(rec, Submitting("k", 2, "h", "m", 1.2), strict=False)  # not legal while submitted
    assert rec.status is S.SUBMITTED and rec.attempts == 1


def test_the_table_covers_every_job_event_kind_and_only_those():
    keyless = {"upload", "run", "snap"}
    assert set(TRANSITIONS) == set(KINDS) - keyless


def test_every_status_grouping_comes_from_the_predicates():
    assert {s for s in S if in_flight(s)} == {S.SUBMITTING, S.UNKNOWN, S.SUBMITTED, S.COMPLETED}
    failed_task = JobRecord(key="k", status=S.FAILED, pid="p", cost=0.0)
    refused = JobRecord(key="k", status=S.FAILED, cost=1.2)
    assert is_spending(failed_task) and not is_spending(refused) and not is_spending(None)
    assert is_spending(JobRecord(key="k", status=S.DOWNLOADED))


@pytest.mark.parametrize(("rec", "retry_failed", "action"), [
    (None, False, Action.SUBMIT),
    (JobRecord(key="k", status=S.UNKNOWN), False, Action.RECONCILE),
    (JobRecord(key="k", status=S.SUBMITTED, pid="p"), False, Action.POLL),
    (JobRecord(key="k", status=S.COMPLETED, pid="p"), False, Action.DOWNLOAD),
    (JobRecord(key="k", status=S.DOWNLOADED), False, Action.DONE),
    (JobRecord(key="k", status=S.FAILED, pid="p", error_class="task"), False, Action.FAILED),
    (JobRecord(key="k", status=S.FAILED, pid="p", error_class="task"), True, Action.SUBMIT),
    (JobRecord(key="k", status=S.FAILED, error_class="rejected"), True, Action.SUBMIT),
    # Issue 14 item 2: only refusals, never a task: not failed at all, the plain run submits it.
    (JobRecord(key="k", status=S.FAILED, error_class="transient"), False, Action.SUBMIT),
    # Issue 14 item 1: an internal error after paying resumes from what was paid.
    (JobRecord(key="k", status=S.FAILED, pid="p", error_class="internal"), True, Action.POLL),
    (JobRecord(key="k", status=S.FAILED, pid="p", error_class="internal", outputs=["u"]), True, Action.DOWNLOAD),
    (JobRecord(key="k", status=S.FAILED, pid="p", error_class="poll"), True, Action.POLL),
])
def test_next_action(rec, retry_failed, action):
    assert next_action(rec, retry_failed=retry_failed) is action


def test_missing_goes_back_to_download_with_a_prediction_id_and_to_new_without():
    rec = _downloaded()
    fold(rec, Missing("k"))
    assert rec.status is S.COMPLETED and rec.path == ""
    bare = JobRecord(key="k", status=S.DOWNLOADED)
    fold(bare, Missing("k"))
    assert bare.status is S.NEW


def test_a_video_adopted_from_its_sidecar_makes_a_new_job_downloaded_at_what_was_paid():
    # Issue 15 item 4: a state moved aside leaves the job new; its sidecar proves the video on disk.
    rec = JobRecord(key="k", id="a")
    fold(rec, Job("k", id="a", cost=1.2))
    assert fold(rec, Adopted("k", "a.mp4", 10, "s", pid="p1", model="m", model_used="m2", cost=0.9))
    assert (rec.status, rec.path, rec.bytes, rec.sha256) == (S.DOWNLOADED, "a.mp4", 10, "s")
    assert (rec.pid, rec.cost, rec.model_used) == ("p1", 0.9, "m2")
    assert rec.fell_back and is_spending(rec)
    assert not fold(rec, Adopted("k", "a.mp4", 10, "s", pid="p1")), "a repeated line changes nothing"
    refused = JobRecord(key="k", status=S.FAILED, error_class="transient", error="429")
    assert fold(refused, Adopted("k", "a.mp4", 10, "s")) and refused.status is S.DOWNLOADED and not refused.error


@pytest.mark.parametrize("status", [S.SUBMITTING, S.UNKNOWN, S.SUBMITTED, S.COMPLETED])
def test_a_sidecar_never_settles_a_job_in_flight(status):
    with pytest.raises(IllegalTransitionError):
        fold(JobRecord(key="k", status=status, pid="p"), Adopted("k", "a.mp4", 10, "s"))


@pytest.mark.parametrize("line", [
    {"ev": "submitting", "key": "k", "attempt": 1, "body_hash": "h", "model": "m", "cost": 1.2, "t": 1.5},
    {"ev": "submitted", "key": "k", "pid": "p", "model": "m", "t": 1.5},
    {"ev": "submitted", "key": "k", "pid": "p", "reconciled": True, "t": 1.5},
    {"ev": "unsent", "key": "k", "class": "429", "message": "slow down", "t": 1.5},
    {"ev": "unknown", "key": "k", "message": "lost", "t": 1.5},
    {"ev": "completed", "key": "k", "pid": "p", "outputs": ["u"], "model_used": "m", "inference_ms": 5, "t": 1.5},
    {"ev": "failed", "key": "k", "class": "task", "message": "no", "attempt": 1, "cost": 0.0, "t": 1.5},
    {"ev": "downloaded", "key": "k", "path": "a.mp4", "bytes": 3, "sha256": "s", "model_used": "m", "t": 1.5},
    {"ev": "adopted", "key": "k", "path": "a.mp4", "bytes": 3, "sha256": "s", "pid": "p", "model": "m",
     "model_used": "m", "cost": 1.2, "t": 1.5},
    {"ev": "missing", "key": "k", "t": 1.5},
    {"ev": "superseded", "key": "k", "by": "k2", "t": 1.5},
    {"ev": "upload", "sha256": "s", "url": "http://x/i.png", "t": 1.5},
    {"ev": "run", "phase": "end", "counts": {"downloaded": 3}, "halted": "", "t": 1.5},
])
def test_state_lines_keep_their_wire_form(line):
    event = event_from_json(line)
    assert event is not None and event.to_json() == line
    assert json.loads(json.dumps(event.to_json())) == line


def test_wire_names_are_read_back_into_fields():
    failed = event_from_json({"ev": "failed", "key": "k", "class": "task", "message": "no"})
    assert failed == Failed("k", "task", "no")
    assert event_from_json({"ev": "unsent", "key": "k", "class": "x"}) == Unsent("k", "x")
    assert event_from_json({"ev": "unknown", "key": "k"}) == Unknown("k")
    assert event_from_json({"ev": "nonsense", "key": "k"}) is None
    assert event_from_json({"ev": "submitted", "key": "k"}) is None, "a submitted line without its pid"
