"""Every planning decision, without I/O; and "n" at the spend prompt writes nothing."""

from __future__ import annotations

import os
import pty

from runner_helpers import make_images, run_cli, write_manifest

from batchgen.cli import main
from batchgen.jobs import JobSpec
from batchgen.lifecycle import JobStatus
from batchgen.planner import PlanOptions, plan
from batchgen.sidecars import OnDisk
from batchgen.state import State, apply, load
from batchgen.state_events import (Adopted, Completed, Downloaded, Failed, Job, Missing, Submitted, Submitting,
                                   Superseded, Unknown, Unsent)
from conftest import API_KEY

MODEL = "openai/sora-2/image-to-video-pro"
OPTIONS = PlanOptions(price=lambda job: 1.2)
RETRY = PlanOptions(price=lambda job: 1.2, retry_failed=True)


def _job(i: int, prompt: str = "p") -> JobSpec:
    return JobSpec(id=f"job{i}", model=MODEL, prompt=prompt, image=f"img{i}.png", image_path=None, image_url=None,
                   image_sha256=f"{i:064x}", params={"duration": 4, "resolution": "720p"}, take=1,
                   output=f"job{i}.mp4")


def _state(*histories: tuple[JobSpec, list]) -> State:
    state = State()
    for job, events in histories:
        apply(state, Job(job.key, id=job.id, output=job.output, model=job.model, params=dict(job.params),
                         prompt=job.prompt, image=job.image, where=str(job.where), cost=1.2))
        for event in events:
            apply(state, event)
    return state


def _paid(job: JobSpec, *more) -> tuple[JobSpec, list]:
    return job, [Submitting(job.key, 1, "h", MODEL, 1.2), Submitted(job.key, "p-" + job.id), *more]


def _downloaded(job: JobSpec) -> tuple[JobSpec, list]:
    return _paid(job, Completed(job.key, "p-" + job.id, ("http://x/v.mp4",)),
                 Downloaded(job.key, job.output, 10, "s"))


def test_a_new_batch_submits_everything_and_records_each_job():
    jobs = [_job(1), _job(2)]
    result, events = plan(jobs, State(), {}, OPTIONS)
    assert result.submit == jobs and result.new == 2
    assert [type(e) for e in events] == [Job, Job] and events[0].cost == 1.2


def test_a_recorded_unchanged_batch_writes_nothing():
    jobs = [_job(1)]
    result, events = plan(jobs, _state(_downloaded(jobs[0])), {"job1.mp4": 10}, OPTIONS)
    assert result.done == jobs and events == [] and result.new == 0


def test_an_edited_row_supersedes_the_old_job():
    old, new = _job(1), _job(1, prompt="edited")
    result, events = plan([new], _state(_downloaded(old)), {"job1.mp4": 10}, OPTIONS)
    assert result.changed == 1 and result.submit == [new]
    assert events[0] == Superseded(old.key, by=new.key) and isinstance(events[1], Job)


def test_a_row_gone_from_the_manifest_is_counted_removed():
    result, _ = plan([_job(1)], _state(_downloaded(_job(1)), _downloaded(_job(2))), {"job1.mp4": 10,
                                                                                     "job2.mp4": 10}, OPTIONS)
    assert result.removed == 1


def test_a_row_edited_then_removed_is_counted_removed_once():
    """Its superseded job is history, not a second row gone from the manifest."""
    old, edited = _job(2), _job(2, prompt="edited")
    state = _state(_downloaded(_job(1)), _downloaded(old), _downloaded(edited))
    apply(state, Superseded(old.key, by=edited.key))
    result, _ = plan([_job(1)], state, {"job1.mp4": 10, "job2.mp4": 10}, OPTIONS)
    assert result.removed == 1


def test_a_paid_job_of_an_edited_row_is_followed_under_a_name_no_job_writes_even_up_to_case():
    old = _job(1)
    edited = JobSpec(**{**vars(_job(1, prompt="edited")), "output": "JOB1.mp4"})  # macOS: the same file
    removed = _job(2)
    result, _ = plan([edited], _state(_paid(old), _paid(removed)), {}, OPTIONS)
    assert [(j.key, j.output) for j in result.leftovers] == [
        (old.key, f"job1.prev-{old.key[:8]}.mp4"), (removed.key, "job2.mp4")]


def test_a_missing_or_cut_video_is_fetched_again_from_its_paid_task():
    job = _job(1)
    for present in ({}, {"job1.mp4": 3}):
        result, events = plan([job], _state(_downloaded(job)), present, OPTIONS)
        assert result.download == [job] and result.missing_files == 1 and events == [Missing(job.key)]


def test_a_video_proven_by_its_sidecar_is_adopted_not_paid_again():
    """Issue 15 item 4: the state moved aside, the job's finished video is still at its output."""
    jobs = [_job(1), _job(2)]
    found = {jobs[0].key: OnDisk("job1.mp4", 10, "s", "p-job1", MODEL, MODEL, 0.9)}
    result, events = plan(jobs, State(), {}, OPTIONS, found)
    assert result.done == [jobs[0]] and result.submit == [jobs[1]]
    assert (result.on_disk, result.on_disk_cost, result.new) == (1, 0.9, 2)
    assert events[1] == Adopted(jobs[0].key, "job1.mp4", 10, "s", "p-job1", MODEL, MODEL, 0.9)
    state = State()
    for event in events:
        apply(state, event)
    assert state.jobs[jobs[0].key].status is JobStatus.DOWNLOADED and round(state.committed, 2) == 0.9


def test_a_sidecar_does_not_settle_a_job_the_state_has_in_flight_or_failed_for_good():
    job = _job(1)
    found = {job.key: OnDisk("job1.mp4", 10, "s", "p-job1")}
    for history, action in (([], "poll"), ([Failed(job.key, "task", "moderated", 1, 0.0)], "failed")):
        result, events = plan([job], _state(_paid(job, *history)), {}, OPTIONS, found)
        assert getattr(result, action) == [job] and result.on_disk == 0
        assert not any(isinstance(e, Adopted) for e in events)


def test_failed_tasks_are_kept_unless_retry_failed():
    job = _job(1)
    state = _state(_paid(job, Failed(job.key, "task", "moderated", 1, 0.0)))
    assert plan([job], state, {}, OPTIONS)[0].failed == [job]
    assert plan([job], state, {}, RETRY)[0].submit == [job]


def test_a_failed_job_whose_video_was_paid_is_downloaded_not_paid_again():
    job = _job(1)
    state = _state(_paid(job, Completed(job.key, "p-job1", ("http://x/v.mp4",)),
                         Failed(job.key, "download", "broke", 1)))
    assert plan([job], state, {}, RETRY)[0].download == [job]


def test_a_job_whose_result_read_failed_is_polled_again():
    job = _job(1)
    for cls in ("poll", "internal"):  # issue 14 item 1: an internal error after paying never pays again
        state = _state(_paid(job, Failed(job.key, cls, "broke", 1)))
        assert plan([job], state, {}, RETRY)[0].poll == [job]


def test_a_job_whose_submits_were_all_refused_is_still_to_do_on_a_plain_run():
    """Issue 14 item 2: 'failed' after unbilled refusals (8 x 503) is not failed: the plain run submits it."""
    job = _job(1)
    state = _state((job, [Submitting(job.key, 1, "h", MODEL, 1.2), Unsent(job.key, "transient", "503"),
                          Failed(job.key, "transient", "submit gave up after 8 tries", 1)]))
    result, _ = plan([job], state, {}, OPTIONS)
    assert result.submit == [job] and result.failed == []


def test_an_unknown_job_is_reconciled():
    job = _job(1)
    state = _state((job, [Submitting(job.key, 1, "h", MODEL, 1.2), Unknown(job.key, "lost")]))
    assert plan([job], state, {}, OPTIONS)[0].unknown == [job]


def test_a_paid_job_keeps_the_price_it_was_submitted_at():
    job = _job(1, prompt="p")
    state = _state(_paid(job))
    state.jobs[job.key].where = "moved.yaml:3"
    _, events = plan([job], state, {}, PlanOptions(price=lambda j: 9.9))
    assert len(events) == 1 and events[0].cost is None


def _run_answering(sim, manifest, out, answer: str, monkeypatch) -> int:
    """``batchgen run`` with a terminal on stdin where ``answer`` was typed for the spend prompt."""
    terminal, ours = pty.openpty()
    os.write(terminal, answer.encode() + b"\n")
    with open(ours, encoding="utf-8") as stdin:
        monkeypatch.setattr("sys.stdin", stdin)
        monkeypatch.setenv("WAVESPEED_API_KEY", API_KEY)
        try:
            return main(["run", str(manifest), "--out", str(out), "--base-url", sim.base_url, "--confirm-above",
                         "0", "--poll-min", "0.05"])
        finally:
            os.close(terminal)


def test_no_at_the_spend_prompt_leaves_the_state_absent_or_byte_identical(sim, tmp_path, monkeypatch):
    make_images(tmp_path / "img", 3)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} turns", "duration": 4}])
    out = tmp_path / "out"
    assert _run_answering(sim, manifest, out, "n", monkeypatch) == 2
    assert not (out / "state.jsonl").exists() and sim.ledger()["submissions"] == []

    assert run_cli(sim, manifest, out) == 0
    before = (out / "state.jsonl").read_bytes()
    os.unlink(out / "shot00-4s-720p.mp4")  # a missing video: planning would write a 'missing' line
    write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} turns again", "duration": 4}])
    assert _run_answering(sim, manifest, out, "n", monkeypatch) == 2
    assert (out / "state.jsonl").read_bytes() == before
    assert len(sim.ledger()["submissions"]) == 3
    assert _run_answering(sim, manifest, out, "y", monkeypatch) == 0
    assert len(sim.ledger()["submissions"]) == 6
    assert (out / "state.jsonl").read_bytes().startswith(before)
    assert all(r.status is JobStatus.DOWNLOADED for r in load(out / "state.jsonl").jobs.values())


def test_a_prompt_that_differs_only_by_whitespace_keeps_the_recorded_job():
    paid, unpaid = _job(1, "The mug  turns"), _job(2, "The cup turns")
    state = _state(_downloaded(paid), (unpaid, []))
    spaced = [_job(1, " The mug turns\n"), _job(2, "The  cup turns")]
    result, events = plan(spaced, state, {"job1.mp4": 10}, OPTIONS)
    assert result.whitespace_kept == 1 and result.done == [result.jobs[0]] and result.jobs[0].key == paid.key
    assert result.jobs[0].prompt == paid.prompt, "the kept job is the one paid for, prompt as sent"
    assert result.changed == 1 and result.submit == [spaced[1]], "an unpaid job has nothing to keep: the new text"
    assert [type(e) for e in events] == [Superseded, Job] and result.removed == 0


def test_whitespace_alone_is_not_enough_when_anything_else_changed():
    paid = _job(1, "The mug turns")
    other_image = JobSpec(**{**vars(_job(1, "The mug  turns")), "image_sha256": "f" * 64})
    result, _ = plan([other_image], _state(_downloaded(paid)), {"job1.mp4": 10}, OPTIONS)
    assert result.whitespace_kept == 0 and result.submit == [other_image] and result.changed == 1


def test_one_extra_space_in_defaults_prompt_pays_nothing_again(sim, tmp_path, capsys):
    make_images(tmp_path / "img", 3)
    rows = [{"image": "img/*.png", "duration": 4}]
    manifest = write_manifest(tmp_path, rows, defaults={"prompt": "The {stem} turns slowly"})
    out = tmp_path / "out"
    assert run_cli(sim, manifest, out) == 0
    videos = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    write_manifest(tmp_path, rows, defaults={"prompt": "The {stem}  turns slowly "})
    capsys.readouterr()
    assert run_cli(sim, manifest, out) == 0
    err = capsys.readouterr().err
    assert "3 jobs differ from the state only by whitespace in their prompt: kept" in err
    assert "about to pay: $0.00 for 0 submit(s)" in err and "3 jobs: 3 done" in err
    assert len(sim.ledger()["submissions"]) == 3
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")} == videos, err
    assert main(["status", str(out / "state.jsonl")]) == 0
