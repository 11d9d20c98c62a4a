"""Replicate deletes outputs about an hour after a prediction ends: downloads come before new submits
when a deadline nears, a passed deadline is named on resume, and a lost video is a failed job of class
``expired``, reported per job (the runner against the Replicate simulator and its injectable clock)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from runner_helpers import make_images, write_manifest

from batchgen import events as ev
from batchgen.cli_run import describe_result
from batchgen.deadlines import DOWNLOAD_FIRST, Deadlines
from batchgen.jobs import JobSpec
from batchgen.lifecycle import JobRecord, JobStatus, next_action
from batchgen.manifest import load_manifest
from batchgen.providers.multi import MultiProvider
from batchgen.providers.replicate import ReplicateProvider
from batchgen.providers.wavespeed import WaveSpeedProvider
from batchgen.retry import zero_sleeps
from batchgen.runner import RunOptions, Runner
from batchgen.poll_policy import PollPolicy
from batchgen.simulator import SimulatorThread
from batchgen.simulator.replicate import ReplicateConfig, apply_changes, start
from batchgen.state import StateLog, load
from batchgen.verifier import Verifier
from conftest import API_KEY

REPLICATE = "replicate:bytedance/seedance-2.0"
HOUR = 3600.0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _job(n: int, model: str = REPLICATE) -> JobSpec:
    return JobSpec(id=f"j{n}", model=model, prompt=f"p{n}", image="x.png", image_path="x.png", image_url=None,
                   image_sha256="0" * 64, params={"duration": 4, "resolution": "480p"}, take=1, output=f"j{n}.mp4")


def _completed(at: float) -> JobRecord:
    rec = JobRecord(key="k", id="j")
    rec.status, rec.completed_at, rec.submit_model = JobStatus.COMPLETED, at, REPLICATE
    return rec


def test_deadlines_order_downloads_and_hold_submits_until_the_near_one_is_on_disk(caplog):
    clock = FakeClock(10_000.0)
    jobs = [_job(1), _job(2), _job(3), _job(4, "bytedance/seedance-2.0/image-to-video")]
    ages = [HOUR - 10, HOUR + 5, HOUR - 50, HOUR]
    recs = {job.key: _completed(clock.now - age) for job, age in zip(jobs, ages)}
    recs[jobs[3].key].submit_model = None
    slept, held = [], {}

    def rec_of(job):
        return recs[job.key]

    async def sleep(seconds):
        slept.append(seconds)
        deadlines = held["deadlines"]
        deadlines.see(ev.Downloaded(job=jobs[0], path="a", bytes=1, sha256="x"), rec_of)
        deadlines.see(ev.Failed(job=jobs[1], error="gone", cls="expired"), rec_of)
        deadlines.see(ev.Stalled(job=jobs[2], error="slow"), rec_of)

    async def body():
        router = MultiProvider({"replicate": ReplicateProvider("k", "http://127.0.0.1:9"),
                                "wavespeed": WaveSpeedProvider("k", "http://127.0.0.1:9")})
        try:
            with caplog.at_level(logging.WARNING, logger="batchgen"):
                deadlines = held["deadlines"] = Deadlines(router, clock, sleep)
                order = deadlines.first(jobs, rec_of)
            assert [j.id for j in order] == ["j2", "j1", "j3", "j4"], "soonest first; WaveSpeed's are a week away"
            assert "job j2" in caplog.text and "probably lost" in caplog.text and "job j1" not in caplog.text
            assert deadlines.near()
            await deadlines.before_submit(lambda: False)
            assert slept and not deadlines.near(), "the submit waited until no near deadline was left"
            far = Deadlines(router, clock, sleep)
            far.add(jobs[0], _completed(clock.now - HOUR + DOWNLOAD_FIRST + 60))
            assert not far.near()
        finally:
            await router.close()

    asyncio.run(body())


def test_an_expired_job_is_a_paid_verdict_that_retry_failed_submits_again():
    rec = _completed(0.0)
    rec.status, rec.error_class, rec.pid, rec.outputs = JobStatus.FAILED, "expired", "replicate:p1", ("u",)
    assert next_action(rec).value == "failed" and next_action(rec, retry_failed=True).value == "submit"


def _run(manifest: Path, out: Path, url: str, *, clock=time.time, observer=None, cancel_on=None):
    loaded = load_manifest(manifest)
    verifier = Verifier()

    async def go():
        provider = MultiProvider({"replicate": ReplicateProvider(API_KEY, url)})
        try:
            with StateLog(out / "state.jsonl") as log:
                log.open()
                runner = Runner(loaded.jobs, provider, log, loaded.models,
                                RunOptions(out_dir=out, concurrency=3, poll=PollPolicy(min_interval=0.05)),
                                verifier=verifier, observer=observer, clock=clock)
                task = asyncio.ensure_future(runner.run())
                if cancel_on is not None:
                    cancel_on.append(task)
                try:
                    return await task, runner
                except asyncio.CancelledError:
                    return None, runner
        finally:
            verifier.shutdown()
            await provider.close()

    return asyncio.run(go())


def test_outputs_deleted_during_a_pause_are_reported_per_job_and_never_paid_twice(tmp_path, render_cache_dir,
                                                                                   caplog):
    make_images(tmp_path / "img", 3)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} spins", "duration": 4,
                                          "resolution": "480p", "model": REPLICATE}])
    out = tmp_path / "out"
    out.mkdir()
    clock = FakeClock(time.time())
    with SimulatorThread(ReplicateConfig(api_key=API_KEY, gen_base=0.05, gen_per_second=0.0, gen_jitter=0.0,
                                         clock=clock, render_cache_dir=render_cache_dir), starter=start,
                         apply=apply_changes) as sim:
        tasks: list = []

        def crash_on_first_completion(event):
            if isinstance(event, ev.Completed) and tasks:
                tasks.pop().cancel()  # as if killed between the completion and the download

        with zero_sleeps():
            _run(manifest, out, sim.base_url, observer=crash_on_first_completion, cancel_on=tasks)
            waiting = [r for r in load(out / "state.jsonl").jobs.values() if r.status is JobStatus.COMPLETED]
            assert waiting, "the crash left a paid video to download"
            time.sleep(0.3)  # the other predictions end on the simulator meanwhile
            clock.now += HOUR + 1  # the pause: Replicate deletes every output that had ended
            with caplog.at_level(logging.WARNING, logger="batchgen"):
                result, runner = _run(manifest, out, sim.base_url, clock=lambda: time.time() + HOUR + 1)
        ledger = sim.ledger()

    state = load(out / "state.jsonl")
    expired = [r for r in state.jobs.values() if r.error_class == "expired"]
    assert {r.id for r in waiting} <= {r.id for r in expired}
    for rec in waiting:
        assert f"job {rec.id}" in caplog.text and "probably lost" in caplog.text, "named loudly on resume"
    for rec in expired:
        assert rec.status is JobStatus.FAILED and rec.pid.split(":", 1)[1] in ledger["removed"] and rec.cost > 0
    for rec in state.jobs.values():
        assert rec.status in (JobStatus.DOWNLOADED, JobStatus.FAILED), rec
    assert all(n == 1 for n in ledger["accepted_by_body_hash"].values()), "a body was paid twice"
    assert len(ledger["submissions"]) == 3
    summary = describe_result(result, runner, runner.opt)
    assert "LOST: " in summary and all(r.id in summary for r in expired)
