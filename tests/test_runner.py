"""The runner end to end: the CLI in this process, the simulator in a thread, real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from runner_helpers import (assert_batch_intact, files_written, lost_submits_left_unknown, make_images, run_cli,
                            write_manifest)

from batchgen import events as ev
from batchgen import planner
from batchgen.errors import AmbiguousSubmitError
from batchgen.lifecycle import JobStatus
from batchgen.manifest import load_manifest
from batchgen.planner import PlanOptions
from batchgen.providers.wavespeed import WaveSpeedProvider
from batchgen.runner import RunOptions, Runner
from batchgen.retry import zero_sleeps
from batchgen.poll_policy import PollPolicy
from batchgen.simulator import Faults
from batchgen.state import StateLog, load
from batchgen.verifier import Verifier

PROMPT = "The {stem} turns slowly on a studio table"


@pytest.fixture
def batch(tmp_path):
    """Three images, one 4 s job each, and an output folder."""
    make_images(tmp_path / "img", 3)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": PROMPT, "duration": 4}])
    return manifest, tmp_path / "out"


def run_in_process(sim, manifest, out, *, observer=None, made=None, provider_class=WaveSpeedProvider):
    """Run ``manifest``'s jobs with a Runner in this process (not the CLI): (result, runner).
    ``made`` sees the runner before it starts, for observers that look inside it."""
    async def go():
        provider = provider_class("k", sim.base_url)
        verifier = Verifier()
        try:
            with StateLog(out / "state.jsonl") as log:
                log.open()
                runner = Runner(manifest.jobs, provider, log, manifest.models,
                                RunOptions(out_dir=out, poll=PollPolicy(min_interval=0.05)), verifier=verifier,
                                observer=observer)
                if made is not None:
                    made(runner)
                return await runner.run(), runner
        finally:
            verifier.shutdown()
            await provider.close()

    out.mkdir(parents=True, exist_ok=True)
    return asyncio.run(go())


def test_run_downloads_verified_videos_and_resume_is_free(sim, batch, capsys):
    manifest, out = batch
    assert run_cli(sim, manifest, out) == 0
    ledger = assert_batch_intact(sim, out, 3)
    assert ledger["uploads"] == 3
    assert len(ledger["submissions"]) == 3
    side = json.loads((out / "shot00-4s-720p.json").read_text())
    assert side["model_asked"] == side["model_used"] == "openai/sora-2/image-to-video-pro"
    assert side["params"] == {"duration": 4, "resolution": "720p"} and side["cost_usd"] == 1.2
    assert "3 downloaded" in capsys.readouterr().err

    before = sim.ledger()["requests"]
    assert run_cli(sim, manifest, out) == 0
    after = sim.ledger()
    assert after["requests"] == before, "a finished batch re-run must make no API call at all"
    assert "3 done, 0 to submit" in capsys.readouterr().err


def test_edited_manifest_runs_only_the_changed_job_and_keeps_the_old_video(sim, batch, capsys):
    manifest, out = batch
    assert run_cli(sim, manifest, out) == 0
    old_sha = load(out / "state.jsonl")
    write_manifest(manifest.parent, [
        {"image": "img/shot0[01].png", "prompt": PROMPT, "duration": 4},
        {"image": "img/shot02.png", "prompt": "A different motion for {stem}", "duration": 4},
    ])
    capsys.readouterr()
    assert run_cli(sim, manifest, out) == 0
    err = capsys.readouterr().err
    assert "0 new, 1 changed, 0 no longer in the manifest" in err
    ledger = sim.ledger()
    assert len(ledger["submissions"]) == 4 and ledger["uploads"] == 3, "images are uploaded once, ever"
    aside = list(out.glob("shot02-4s-720p.prev-*.mp4"))
    assert len(aside) == 1, "the video paid for before the edit must be kept"
    old = next(r for r in old_sha.jobs.values() if r.id == "shot02-4s-720p")
    from runner_helpers import sha256
    assert sha256(aside[0]) == old.sha256


def test_missing_file_is_downloaded_again_without_paying(sim, batch):
    manifest, out = batch
    assert run_cli(sim, manifest, out) == 0
    (out / "shot01-4s-720p.mp4").unlink()
    assert run_cli(sim, manifest, out) == 0
    ledger = assert_batch_intact(sim, out, 3)
    assert len(ledger["submissions"]) == 3


def test_failed_task_is_recorded_and_retried_only_on_request(make_sim, batch, capsys):
    sim = make_sim(faults=Faults(rate_fail=1.0))
    manifest, out = batch
    assert run_cli(sim, manifest, out) == 1
    state = load(out / "state.jsonl")
    assert {r.status.value for r in state.jobs.values()} == {"failed"}
    assert all(r.error_class == "task" and r.error for r in state.jobs.values())
    assert "failed  shot00-4s-720p" in capsys.readouterr().err

    assert run_cli(sim, manifest, out) == 1
    assert len(sim.ledger()["submissions"]) == 3, "failed jobs are not resubmitted without --retry-failed"

    sim.configure(faults={"fail": 0.0})
    assert run_cli(sim, manifest, out, "--retry-failed") == 0
    assert len(sim.ledger()["submissions"]) == 6


def test_lost_submit_answer_is_unknown_then_reconciled_from_the_listing(make_sim, batch, capsys):
    sim = make_sim(faults=Faults(rate_drop_after=1.0), listing_input=True)  # items matched by their input
    manifest, out = batch
    with lost_submits_left_unknown():  # as a run killed before settling them in the run leaves them
        assert run_cli(sim, manifest, out) == 1
    state = load(out / "state.jsonl")
    assert {r.status.value for r in state.jobs.values()} == {"unknown"}
    assert "--resubmit-unknown" in capsys.readouterr().err
    assert len(sim.ledger()["submissions"]) == 3, "each lost answer was still accepted and charged once"

    sim.configure(faults={"drop-after": 0.0})
    assert run_cli(sim, manifest, out) == 0
    ledger = assert_batch_intact(sim, out, 3)
    assert len(ledger["submissions"]) == 3, "reconciled jobs are polled, never paid again"


def test_unknown_without_listing_waits_for_resubmit_unknown(make_sim, batch):
    sim = make_sim(faults=Faults(rate_drop_after=1.0), enable_listing=False)
    manifest, out = batch
    assert run_cli(sim, manifest, out) == 1
    sim.configure(faults={"drop-after": 0.0})
    assert run_cli(sim, manifest, out) == 1
    assert len(sim.ledger()["submissions"]) == 3
    assert run_cli(sim, manifest, out, "--resubmit-unknown") == 0
    assert len(sim.ledger()["submissions"]) == 6


def test_bad_key_halts_before_spending(make_sim, batch, capsys):
    sim = make_sim(api_key="the-right-key")
    manifest, out = batch
    assert run_cli(sim, manifest, out, key="wrong-key") == 3
    err = capsys.readouterr().err
    assert "WAVESPEED_API_KEY" in err and "wrong-key" not in err
    assert sim.ledger()["submissions"] == []


def test_transient_faults_and_account_cap_still_pay_once(make_sim, tmp_path):
    sim = make_sim(concurrency_cap=2, url_ttl=0.3, faults=Faults(rate_5xx=0.2, rate_truncate=0.3, rate_429_burst=0.2))
    make_images(tmp_path / "img", 6)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": PROMPT, "duration": 4}])
    out = tmp_path / "out"
    assert run_cli(sim, manifest, out, "--concurrency", "4") in (0, 1)
    # A 500 or 502 to a submit may follow a created task (issue 15 item 1): such a job is unknown,
    # never sent again in that run; the next run settles it from the listing and pays it once.
    sim.configure(faults={"5xx": 0.0})
    assert run_cli(sim, manifest, out, "--concurrency", "4") == 0
    ledger = assert_batch_intact(sim, out, 6)
    assert ledger["max_concurrent"] <= 2
    assert ledger["faults"], "the faults were actually injected"


@pytest.mark.parametrize("concurrency", ["1", "3"])
def test_budget_cap_stops_before_the_job_that_would_cross_it(sim, batch, capsys, concurrency):
    manifest, out = batch
    # With three slots all jobs could be in flight at once: the cap must count those in flight.
    assert run_cli(sim, manifest, out, "--max-cost", "2.5", "--partial", "--concurrency", concurrency) == 3
    assert len(sim.ledger()["submissions"]) == 2
    assert sim.ledger()["charged_total"] == 2.4
    assert "--max-cost" in capsys.readouterr().err
    assert run_cli(sim, manifest, out, "--max-cost", "10") == 0
    assert_batch_intact(sim, out, 3)


def test_refuses_to_spend_above_threshold_without_a_terminal(sim, batch, monkeypatch, capsys):
    manifest, out = batch
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    from batchgen.cli import main
    monkeypatch.setenv("WAVESPEED_API_KEY", "k")
    code = main(["run", str(manifest), "--out", str(out), "--base-url", sim.base_url, "--confirm-above", "1"])
    assert code == 2
    assert "--yes" in capsys.readouterr().err
    assert set(sim.ledger()["requests"]) <= {"balance"}, "only the free balance read comes before the answer"


def test_bad_manifest_costs_nothing(sim, tmp_path, capsys):
    make_images(tmp_path / "img", 1)
    manifest = write_manifest(tmp_path, [{"image": "img/shot00.png", "promt": "typo", "duration": 5}])
    assert run_cli(sim, manifest, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "batch.yaml:" in err and "prompt" in err
    assert sim.ledger()["requests"] == {}


def test_fallback_model_is_flagged_in_sidecar_and_status(make_sim, batch, capsys):
    sim = make_sim(faults=Faults(rate_fallback=1.0))
    manifest, out = batch
    assert run_cli(sim, manifest, out) == 0
    side = json.loads((out / "shot00-4s-720p.json").read_text())
    assert side["fell_back"] is True and side["model_used"] != side["model_asked"]
    from batchgen.cli import main
    capsys.readouterr()
    assert main(["status", str(out / "state.jsonl"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["fallbacks"]) == 3 and summary["counts"]["downloaded"] == 3


def test_api_key_never_written(make_sim, batch):
    key = "sk-live-SECRET-0123456789"
    sim = make_sim(api_key=key, faults=Faults(rate_5xx=0.2))
    manifest, out = batch
    assert run_cli(sim, manifest, out, "-v", key=key) == 0
    for path in files_written(out):
        assert key.encode() not in path.read_bytes(), path
    assert "retry" in (out / "batchgen.log").read_text() or (out / "batchgen.log").exists()


def test_unavailable_primary_switches_new_jobs_to_the_fallback_model(make_sim, tmp_path, capsys):
    sim = make_sim(faults=Faults(unavailable_models={"openai/sora-2/image-to-video-pro"}))
    make_images(tmp_path / "img", 3)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": PROMPT, "duration": 4}],
                              fallback_model="bytedance/seedance-2.0/image-to-video", fallback_after=2)
    out = tmp_path / "out"
    assert run_cli(sim, manifest, out, "--concurrency", "1") == 0
    assert_batch_intact(sim, out, 3)
    for side in out.glob("*.json"):
        data = json.loads(side.read_text())
        assert data["model_asked"] == "openai/sora-2/image-to-video-pro"
        assert data["model_submitted"] == data["model_used"] == "bytedance/seedance-2.0/image-to-video"
        assert data["switched_to_fallback"] is True and data["cost_usd"] == 0.96
    assert {s["model"] for s in sim.ledger()["submissions"]} == {"bytedance/seedance-2.0/image-to-video"}
    assert "fallback" in capsys.readouterr().err


def test_reconcile_never_adopts_an_earlier_failed_task_of_the_same_job(make_sim, tmp_path):
    sim = make_sim(faults=Faults(rate_fail=1.0), listing_input=True)
    make_images(tmp_path / "img", 1)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": PROMPT, "duration": 4}])
    out = tmp_path / "out"
    assert run_cli(sim, manifest, out) == 1
    first = load(out / "state.jsonl").jobs
    failed_pid = next(iter(first.values())).pid
    sim.configure(faults={"fail": 0.0, "drop-after": 1.0})
    # The retry's answer is lost: settled in that run, from the listing, to its own new task.
    assert run_cli(sim, manifest, out, "--retry-failed") == 0
    rec = next(iter(load(out / "state.jsonl").jobs.values()))
    subs = sim.ledger()["submissions"]
    assert len(subs) == 2 and rec.pid != failed_pid and rec.pid == subs[1]["id"]
    assert rec.status.value == "downloaded" and failed_pid in rec.past_pids


def test_a_broken_display_never_fails_a_job(sim, batch):
    """stderr piped into `head`, which exits early: the observer raises BrokenPipeError."""
    manifest_path, out = batch
    manifest = load_manifest(manifest_path)

    def broken(event):
        if isinstance(event, ev.Downloading):
            raise BrokenPipeError(32, "Broken pipe")

    result, _ = run_in_process(sim, manifest, out, observer=broken)
    assert result.exit_code == 0
    assert_batch_intact(sim, out, 3)


def test_status_counts_an_edited_job_once(sim, batch, capsys):
    from batchgen.cli import main
    manifest, out = batch
    assert run_cli(sim, manifest, out) == 0
    write_manifest(manifest.parent, [{"image": "img/*.png", "prompt": PROMPT + " again", "duration": 4}])
    assert run_cli(sim, manifest, out) == 0
    capsys.readouterr()
    assert main(["status", str(out / "state.jsonl"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["jobs"] == 3 and summary["superseded"] == 3
    assert summary["counts"]["downloaded"] == 3
    assert summary["spend"]["committed"] == 7.2, "the superseded videos were paid for too"


def test_an_upload_older_than_the_providers_retention_is_uploaded_again(sim, batch):
    manifest, out = batch
    assert run_cli(sim, manifest, out) == 0
    assert sim.ledger()["uploads"] == 3
    write_manifest(manifest.parent, [{"image": "img/*.png", "prompt": PROMPT + " take two", "duration": 4}])
    state = out / "state.jsonl"
    lines = state.read_text().splitlines()
    aged = [json.dumps({**ev, "t": ev["t"] - 7 * 86400}) if ev.get("ev") == "upload" else line
            for line, ev in ((line, json.loads(line)) for line in lines)]
    state.write_text("\n".join(aged) + "\n")
    assert run_cli(sim, manifest, out) == 0
    assert sim.ledger()["uploads"] == 6, "week-old upload URLs are not trusted"


def test_a_picture_edited_after_the_manifest_was_read_is_never_sent_in_its_place(sim, batch):
    """The job's key names the picture as validated; if the file changes before its upload, the
    job fails unpaid instead of generating (and charging for) a video of another picture."""
    manifest_path, out = batch
    manifest = load_manifest(manifest_path)
    edited = manifest.jobs[0].image_path
    make_images(manifest_path.parent / "other", 4)
    (manifest_path.parent / "other" / "shot03.png").replace(edited)

    result, _ = run_in_process(sim, manifest, out)
    assert result.exit_code == 1
    state = load(out / "state.jsonl")
    failed = state.jobs[manifest.jobs[0].key]
    assert failed.status.value == "failed" and "changed after the manifest was read" in failed.error
    ledger = sim.ledger()
    assert len(ledger["submissions"]) == 2 and ledger["uploads"] == 2
    assert round(state.committed, 2) == ledger["charged_total"] == 2.4, "nothing was paid for the edited one"


def test_a_resumed_batch_starts_with_the_generation_times_of_its_earlier_runs(sim, batch):
    manifest_path, out = batch
    assert run_cli(sim, manifest_path, out, "--max-cost", "2.5", "--partial") == 3  # two of three jobs done
    manifest = load_manifest(manifest_path)
    job = manifest.jobs[0]
    seen_at_start = []

    def observer(event):
        if isinstance(event, ev.Planned):
            seen_at_start.append(runners[0].schedule.window(job.model, job.duration))

    runners: list[Runner] = []
    result, _ = run_in_process(sim, manifest, out, observer=observer, made=runners.append)
    assert result.exit_code == 0
    assert seen_at_start and seen_at_start[0] is not None, "the first run's two jobs taught the schedule"
    low, high = seen_at_start[0]
    assert 0 < low <= high


def test_retry_failed_fetches_a_paid_video_again_whatever_broke_after_it_was_made(batch):
    """A job that failed after its video was completed (a download problem, or an unexpected error
    while handling it) is downloaded again on --retry-failed, never generated and paid again."""
    manifest_path, out = batch
    manifest = load_manifest(manifest_path)
    out.mkdir()
    with StateLog(out / "state.jsonl") as log:
        log.open()
        for job, cls in zip(manifest.jobs, ("download", "internal", "task")):
            log.append({"ev": "job", "key": job.key, "id": job.id, "output": job.output, "model": job.model,
                        "params": dict(job.params), "prompt": job.prompt, "image": job.image, "cost": 1.2})
            log.append({"ev": "submitting", "key": job.key, "attempt": 1, "body_hash": "h", "cost": 1.2})
            log.append({"ev": "submitted", "key": job.key, "pid": f"p-{cls}"})
            if cls != "task":
                log.append({"ev": "completed", "key": job.key, "pid": f"p-{cls}", "outputs": ["http://x/v.mp4"]})
            log.append({"ev": "failed", "key": job.key, "class": cls, "message": "broke", "attempt": 1})
        state = log.state
    plan, _ = planner.plan(manifest.jobs, state, {}, PlanOptions(lambda job: 1.2, retry_failed=True))
    assert [j.id for j in plan.download] == [manifest.jobs[0].id, manifest.jobs[1].id]
    assert [j.id for j in plan.submit] == [manifest.jobs[2].id]


def test_submits_that_were_all_refused_leave_the_job_to_do_for_the_next_plain_run(make_sim, batch):
    """Issue 14 item 2: eight 'temporarily unavailable' answers created no task and billed nothing: the job
    is not failed (which --retry-failed would pay again), it stays to do and the next plain run submits it."""
    manifest_path, out = batch
    manifest = load_manifest(manifest_path)
    down = make_sim(faults=Faults(unavailable_models={"openai/sora-2/image-to-video-pro"}))
    with zero_sleeps():
        result, _ = run_in_process(down, manifest, out)
    assert result.exit_code == 1 and result.unfinished == 3 and result.counts[JobStatus.FAILED] == 0
    assert down.ledger()["submissions"] == [] and round(load(out / "state.jsonl").committed, 2) == 0
    healthy = make_sim()
    result, _ = run_in_process(healthy, manifest, out)
    assert result.exit_code == 0
    assert_batch_intact(healthy, out, 3)


class _AnswerUnreadable(WaveSpeedProvider):
    """The task is created, but its answer cannot be read whole; it still names the prediction id."""

    async def submit(self, model, body):
        pred = await super().submit(model, body)
        raise AmbiguousSubmitError("submit: the answer was cut short", prediction_id=pred.id)


def test_an_ambiguous_submit_that_names_its_task_is_followed_not_left_unknown(sim, batch):
    manifest_path, out = batch
    result, _ = run_in_process(sim, load_manifest(manifest_path), out, provider_class=_AnswerUnreadable)
    assert result.exit_code == 0 and result.counts[JobStatus.UNKNOWN] == 0
    ledger = assert_batch_intact(sim, out, 3)
    assert len(ledger["submissions"]) == 3


def test_an_intent_stamped_a_day_ahead_does_not_make_reconciliation_sleep_a_day(sim, batch):
    """Issue 15 item 11: the grace wait before listing is capped whatever the intent's time says."""
    from batchgen.planner import Plan
    from batchgen.reconcile import MAX_GRACE_WAIT
    from batchgen.state_events import Job, Submitting, Unknown

    manifest_path, out = batch
    manifest = load_manifest(manifest_path)
    job = manifest.jobs[0]
    out.mkdir()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def go():
        provider = WaveSpeedProvider("k", sim.base_url)
        verifier = Verifier()
        try:
            with StateLog(out / "state.jsonl", clock=lambda: time.time() + 86400) as log:
                log.open()
                for event in (Job(job.key, id=job.id), Submitting(job.key, 1, "h", job.model, 1.2),
                              Unknown(job.key, "lost")):
                    log.append(event)
                plan = Plan(unknown=[job])
                runner = Runner(manifest.jobs, provider, log, manifest.models, RunOptions(out_dir=out),
                                verifier=verifier, sleep=sleep)
                await runner.reconcile(plan)
                return plan
        finally:
            verifier.shutdown()
            await provider.close()

    plan = asyncio.run(go())
    assert waits == [MAX_GRACE_WAIT] and plan.submit == [job], "never created: listed nowhere, submitted again"
    assert len(sim.ledger()["submissions"]) == 0


def test_a_lost_submit_is_not_resubmitted_while_listing_items_carry_no_input(make_sim, batch):
    """The documented listing has no input: each lost submit is found by its output (shape, first frame),
    never concluded "never created" and paid again."""
    sim = make_sim(faults=Faults(rate_drop_after=1.0))
    manifest, out = batch
    assert run_cli(sim, manifest, out) == 0  # settled in the run that lost them
    ledger = sim.ledger()
    assert max(ledger["accepted_by_body_hash"].values()) == 1, "no job was paid twice"
    assert ledger["requests"]["list"] >= 1
    assert {r.status.value for r in load(out / "state.jsonl").jobs.values()} == {"downloaded"}


def test_a_job_waiting_for_a_slot_holds_no_task(sim, tmp_path):
    """A task per job up front was 10,000 live tasks on a Gold batch, nearly all waiting for a slot:
    a job's task starts once it holds one, so the tasks alive follow the concurrency, not the batch."""
    make_images(tmp_path / "img", 20)
    manifest = load_manifest(write_manifest(tmp_path, [{"image": "img/*.png", "prompt": PROMPT, "duration": 4}]))
    runners, seen = [], []

    def count(event):
        if isinstance(event, ev.Submitting):
            jobs = sum(task.get_coro().__qualname__ == "Runner._job" for task in asyncio.all_tasks())
            seen.append((jobs, runners[0].slots.in_flight))

    result, _ = run_in_process(sim, manifest, tmp_path / "out", observer=count, made=runners.append)
    assert result.exit_code == 0 and len(seen) == 20
    jobs, holding = seen[0]
    assert jobs == holding < 20, seen  # at the first submit, before any job ended: only those holding a slot


def test_each_video_reaches_the_disk_durably_in_one_trip_to_a_thread(sim, batch):
    """Written, fsynced and closed in one trip per video; placing it (renames, sidecar) makes none:
    each trip hands the interpreter's lock back and forth with the event loop."""
    from concurrent.futures import ThreadPoolExecutor
    from functools import partial
    trips: list[str] = []

    class Counting(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            trips.append(fn.func.__name__ if isinstance(fn, partial) else getattr(fn, "__name__", repr(fn)))
            return super().submit(fn, *args, **kwargs)

    manifest, out = batch
    result, _ = run_in_process(sim, load_manifest(manifest), out,
                               made=lambda _: asyncio.get_running_loop().set_default_executor(Counting(2)))
    assert_batch_intact(sim, out, 3)
    assert trips.count("_write_last") == 3 and "fsync_path" not in trips, trips
    assert all(json.loads((out / f"shot{i:02d}-4s-720p.json").read_text())["bytes"] > 0 for i in range(3))
