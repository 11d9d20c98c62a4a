"""``batchgen status``: a state with every kind of job, written with StateLog, read back offline."""

from __future__ import annotations

import json

import pytest

from batchgen.cli import main
from batchgen.state import StateLog, load
from batchgen.status import summarize

SORA = "openai/sora-2/image-to-video-pro"
SEED = "bytedance/seedance-v2/image-to-video"


def _job(log: StateLog, key: str, line: int, cost: float = 1.2) -> None:
    log.append({"ev": "job", "key": key, "id": f"id-{key}", "output": f"{key}.mp4", "model": SORA,
                "params": {"duration": 4, "resolution": "720p"}, "prompt": "p", "image": "a.png",
                "where": f"shots.yaml:{line}", "cost": cost})


def _submit(log: StateLog, key: str, pid: str, cost: float = 1.2) -> None:
    log.append({"ev": "submitting", "key": key, "attempt": 1, "body_hash": "h" + key, "model": SORA, "cost": cost})
    log.append({"ev": "submitted", "key": key, "pid": pid, "model": SORA})


@pytest.fixture
def state_path(tmp_path):
    """Eight jobs: two done (one on a fallback model), two failed, one unknown, one of each in flight, one new."""
    path = tmp_path / "state.jsonl"
    with StateLog(path) as log:
        log.open()
        log.append({"ev": "run", "phase": "start", "jobs": 8})
        for n, key in enumerate(["done", "fallback", "taskfail", "rejected", "lost", "gen", "fetch", "new"]):
            _job(log, key, 10 + n)
        for key in ("done", "fallback", "taskfail", "gen", "fetch"):
            _submit(log, key, f"pid-{key}")
        for key, model in (("done", SORA), ("fallback", SEED), ("fetch", SORA)):
            log.append({"ev": "completed", "key": key, "pid": f"pid-{key}", "outputs": [f"https://x/{key}.mp4"],
                        "model_used": model, "inference_ms": 4000})
        for key, model in (("done", SORA), ("fallback", SEED)):
            log.append({"ev": "downloaded", "key": key, "path": f"{key}.mp4", "bytes": 10, "sha256": "0" * 64,
                        "model_used": model})
        log.append({"ev": "failed", "key": "taskfail", "class": "task", "message": "content policy", "attempt": 1,
                    "cost": 0.0})
        log.append({"ev": "submitting", "key": "rejected", "attempt": 1, "body_hash": "hr", "model": SORA, "cost": 1.2})
        log.append({"ev": "failed", "key": "rejected", "class": "rejected", "message": "HTTP 400: bad duration",
                    "attempt": 1, "cost": 0.0})
        log.append({"ev": "submitting", "key": "lost", "attempt": 1, "body_hash": "hl", "model": SORA, "cost": 1.2})
        log.append({"ev": "unknown", "key": "lost", "message": "connection reset after the POST was sent"})
        log.append({"ev": "run", "phase": "end", "counts": {}})
    return path


def test_summary_has_counts_spend_failures_unknowns_fallbacks_and_the_next_run(state_path):
    s = summarize(load(state_path), str(state_path))
    assert s["schema"] == 1 and s["jobs"] == 8 and s["runs"] == 1
    assert s["counts"] == {"new": 1, "submitting": 0, "unknown": 1, "submitted": 1, "completed": 1,
                           "downloaded": 2, "failed": 2}
    # Paid or in flight: 2 downloaded + submitted + completed + unknown; failed jobs cost nothing.
    assert s["spend"] == {"committed": 6.0, "downloaded": 2.4, "in_flight": 3.6}
    assert s["failed"] == [
        {"id": "id-taskfail", "key": "taskfail", "where": "shots.yaml:12", "class": "task", "error": "content policy",
         "attempts": 1, "pid": "pid-taskfail"},
        {"id": "id-rejected", "key": "rejected", "where": "shots.yaml:13", "class": "rejected",
         "error": "HTTP 400: bad duration", "attempts": 1, "pid": ""},
    ]
    assert s["unknown"] == [{"id": "id-lost", "key": "lost", "where": "shots.yaml:14",
                             "error": "connection reset after the POST was sent"}]
    assert s["fallbacks"] == [{"id": "id-fallback", "key": "fallback", "where": "shots.yaml:11",
                               "model_asked": SORA, "model_submitted": SORA, "model_used": SEED,
                               "switched": False, "answered_by_other": True}]
    assert s["next_run"] == {"submit": 1, "poll": 1, "download": 1, "skip_failed": 2, "unknown": 1}


def test_cli_json_is_the_summary_and_text_names_each_problem_job(state_path, capsys):
    assert main(["status", str(state_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == summarize(load(state_path), str(state_path))
    assert main(["status", str(state_path)]) == 0
    text = capsys.readouterr().out
    assert "8 jobs over 1 run(s)" in text
    assert "new 1, unknown 1, submitted 1, completed 1, downloaded 2, failed 2" in text
    assert ("$6.00 committed ($2.40 downloaded, $3.60 in flight: 3 jobs billed or maybe billed, not yet on disk)"
            in text)
    assert "failed  id-taskfail (shots.yaml:12) [task]: content policy" in text
    assert "unknown id-lost (shots.yaml:14): connection reset" in text
    assert f"fallback id-fallback: asked {SORA}, got {SEED} (answered by another model)" in text
    assert "next run: submit 1, poll 1, download 1; 2 failed kept" in text


def test_status_reads_while_a_run_holds_the_lock_and_a_dead_runs_submit_is_unknown(tmp_path, capsys):
    path = tmp_path / "state.jsonl"
    log = StateLog(path)
    log.open()
    _job(log, "a", 3)
    log.append({"ev": "submitting", "key": "a", "attempt": 1, "body_hash": "x", "model": SORA, "cost": 1.2})
    log.flush()
    try:
        assert main(["status", str(path), "--json"]) == 0
    finally:
        log.close()
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["unknown"] == 1 and data["next_run"]["unknown"] == 1
    assert "stopped between recording the submit" in data["unknown"][0]["error"]


def test_missing_state_file_says_where_it_comes_from(tmp_path, capsys):
    assert main(["status", str(tmp_path / "nope.jsonl")]) != 0
    err = capsys.readouterr().err
    assert "nope.jsonl: no such state file" in err and "batchgen run" in err


def test_the_output_folder_stands_for_its_state_file(state_path, capsys):
    # 'batchgen status outputs/shots' as the folder shows in a listing; the same for report, review, export.
    assert main(["status", str(state_path.parent), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["downloaded"] == 2
    assert main(["report", str(state_path.parent)]) == 0
    assert (state_path.parent / "report.html").is_file()


def test_json_lists_every_job_with_models_cost_billed_file_error_and_next_action(state_path):
    s = summarize(load(state_path), str(state_path))
    jobs = {j["key"]: j for j in s["job_list"]}
    assert list(jobs) == ["done", "fallback", "taskfail", "rejected", "lost", "gen", "fetch", "new"]
    assert jobs["fallback"] == {
        "id": "id-fallback", "key": "fallback", "where": "shots.yaml:11", "status": "downloaded",
        "model_asked": SORA, "model_submitted": SORA, "model_used": SEED, "cost_billed": 1.2,
        "file": "fallback.mp4", "error_class": "", "error": "", "attempts": 1, "pid": "pid-fallback",
        "next_action": "done", "superseded_by": ""}
    assert (jobs["taskfail"]["cost_billed"], jobs["taskfail"]["error"], jobs["taskfail"]["next_action"]) == (
        0.0, "content policy", "failed")
    assert (jobs["lost"]["status"], jobs["lost"]["cost_billed"], jobs["lost"]["next_action"]) == (
        "unknown", 1.2, "reconcile")
    assert [jobs[k]["next_action"] for k in ("gen", "fetch", "new")] == ["poll", "download", "submit"]
    assert jobs["new"]["model_submitted"] == "" and jobs["new"]["cost_billed"] == 0.0
    # In flight is billed (or maybe billed) and not on disk: submitted, completed, unknown.
    assert s["in_flight_jobs"] == 3 and s["spend"]["in_flight"] == 3.6


def test_plain_status_lists_each_job_needing_attention_with_its_line_and_what_to_do(state_path, capsys):
    assert main(["status", str(state_path)]) == 0
    text = capsys.readouterr().out
    assert "failed  id-taskfail (shots.yaml:12) [task]: content policy\n          -> the provider failed" in text
    assert "failed  id-rejected (shots.yaml:13) [rejected]: HTTP 400: bad duration\n          -> the provider " \
           "refused the request; fix the row in the manifest" in text
    assert "unknown id-lost (shots.yaml:14): connection reset after the POST was sent\n          -> its submit " \
           "may have been charged" in text
    assert "submitted id-gen (shots.yaml:15): submitted, not finished (or stalled); run the same command" in text
    assert "completed id-fetch (shots.yaml:16): generated, not on disk; run the same command to download" in text
    assert "new      id-new (shots.yaml:17): not submitted yet; run the same command to submit it" in text
    assert "id-done" not in text, "a finished job needs nothing"


def test_plain_status_names_ten_unfinished_jobs_and_counts_the_rest(tmp_path, capsys):
    path = tmp_path / "state.jsonl"
    with StateLog(path) as log:
        log.open()
        for n in range(13):
            _job(log, f"k{n:02d}", n + 1)
    assert main(["status", str(path)]) == 0
    text = capsys.readouterr().out
    assert "id-k09 (shots.yaml:10)" in text and "id-k10" not in text
    assert "... and 3 more unfinished jobs (status --json lists all)" in text


def test_jobs_switched_to_the_fallback_model_are_listed_as_fallbacks(make_sim, tmp_path, capsys):
    from batchgen.simulator import Faults
    from runner_helpers import make_images, run_cli, write_manifest
    primary, fallback = "openai/sora-2/image-to-video-pro", "bytedance/seedance-2.0/image-to-video"
    sim = make_sim(faults=Faults(unavailable_models={primary}))
    make_images(tmp_path / "img", 3)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} spins", "duration": 4}],
                              fallback_model=fallback, fallback_after=2)
    assert run_cli(sim, manifest, tmp_path / "out", "--concurrency", "1") == 0
    capsys.readouterr()
    assert main(["status", str(tmp_path / "out" / "state.jsonl"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["fallbacks"]) == 3
    for item in data["fallbacks"]:
        assert (item["model_asked"], item["model_submitted"], item["model_used"]) == (primary, fallback, fallback)
        assert item["switched"] is True and item["answered_by_other"] is False
    assert {(j["model_asked"], j["model_submitted"]) for j in data["job_list"]} == {(primary, fallback)}
    assert main(["status", str(tmp_path / "out" / "state.jsonl")]) == 0
    assert f"asked {primary}, got {fallback} (switched to the fallback_model)" in capsys.readouterr().out


def test_a_job_paid_before_its_row_was_edited_stays_in_flight_until_its_video_is_fetched(tmp_path):
    path = tmp_path / "state.jsonl"
    with StateLog(path) as log:
        log.open()
        for key in ("old", "new"):
            _job(log, key, 10)
        _submit(log, "old", "pid-old")
        log.append({"ev": "superseded", "key": "old", "by": "new"})
    summary = summarize(load(path), str(path))
    assert summary["spend"] == {"committed": 1.2, "downloaded": 0.0, "in_flight": 1.2}
    assert summary["in_flight_jobs"] == 1
    old = next(j for j in summary["job_list"] if j["key"] == "old")
    assert old["next_action"] == "poll", "the next run fetches its paid video"


def test_a_failure_that_was_never_billed_is_said_to_be_submitted_again_by_the_next_run(tmp_path, capsys):
    """A submit refused every time (its retries ran out, or its picture changed under it) made no task: the next
    plain run submits it again, no --retry-failed needed, and status and estimate say so."""
    path = tmp_path / "state.jsonl"
    with StateLog(path) as log:
        log.open()
        _job(log, "refused", 10)
        log.append({"ev": "submitting", "key": "refused", "attempt": 1, "body_hash": "h", "model": SORA, "cost": 1.2})
        log.append({"ev": "failed", "key": "refused", "class": "submit", "attempt": 1, "cost": 0.0,
                    "message": "a.png changed after the manifest was read; run again to submit the picture it holds now"})
    summary = summarize(load(path), str(path))
    assert summary["next_run"] == {"submit": 1, "poll": 0, "download": 0, "skip_failed": 0, "unknown": 0}
    assert main(["status", str(path)]) == 0
    text = capsys.readouterr().out
    assert "--retry-failed to try it" not in text and "not billed: the next run submits it again" in text
    assert text.count("id-refused") == 1, text
