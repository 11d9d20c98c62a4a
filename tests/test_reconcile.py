"""Lost submits recovered or proven absent, never guessed (issue 12), over real HTTP against the simulator's
``POST /api/v3/predictions`` listing, with and without the request ``input`` in its items."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from runner_helpers import lost_submits_left_unknown, make_images, run_cli, write_manifest

from batchgen.cli import main
from batchgen.manifest import load_manifest
from batchgen.providers.wavespeed import WaveSpeedProvider
from batchgen.report import write_report
from batchgen.runner import RunOptions, Runner
from batchgen.simulator import Faults
from batchgen.state import StateLog, load
from batchgen.state_events import Job, Submitting, Unknown
from batchgen.verifier import Verifier
from conftest import API_KEY, AUTH, image_bytes


def lost_batch(tmp_path):
    """Jobs of different pictures and lengths (the same picture at two lengths too)."""
    make_images(tmp_path / "img", 4)
    return write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} turns", "duration": 4},
                                     {"image": "img/shot0[01].png", "prompt": "The {stem} glides", "duration": 8}])


def assert_each_lost_submit_is_its_own(sim, out, jobs: int) -> None:
    """Every job downloaded from the one task made of its own request; nothing paid twice, nothing left over."""
    state, ledger = load(out / "state.jsonl"), sim.ledger()
    tasks = {s["id"]: s for s in ledger["submissions"]}
    assert len(tasks) == jobs and len(set(ledger["accepted_by_body_hash"].values())) == 1, "paid twice"
    for rec in state.jobs.values():
        assert rec.status.value == "downloaded", (rec.id, rec.status, rec.error)
        assert tasks[rec.pid]["body_hash"] == rec.body_hash, f"{rec.id} adopted another job's video"
        assert (out / rec.path).stat().st_size == rec.bytes and ledger["outputs"][rec.pid] == rec.sha256
    assert ledger["downloads"] == jobs, "a matched video's bytes are reused, never fetched twice"
    assert not list((out / "unmatched").glob("*.mp4")) if (out / "unmatched").exists() else True


@pytest.mark.parametrize("listing_input", [True, False], ids=["items-with-input", "items-without-input"])
def test_every_lost_submit_answer_is_matched_to_its_own_job(make_sim, tmp_path, listing_input, capsys):
    """Left for the next run (a run killed before settling them, or one by an older release)."""
    sim = make_sim(faults=Faults(rate_drop_after=1.0), listing_input=listing_input)
    manifest, out = lost_batch(tmp_path), tmp_path / "out"
    with lost_submits_left_unknown():
        assert run_cli(sim, manifest, out) == 1
    assert {r.status.value for r in load(out / "state.jsonl").jobs.values()} == {"unknown"}
    sim.configure(faults={"drop-after": 0.0})
    assert run_cli(sim, manifest, out) == 0
    err = capsys.readouterr().err
    assert "6 lost submit(s) found on the provider: not paid again" in err and "about to pay: $0.00" in err
    assert_each_lost_submit_is_its_own(sim, out, 6)


@pytest.mark.parametrize("listing_input", [True, False], ids=["items-with-input", "items-without-input"])
def test_lost_submit_answers_are_settled_in_the_run_that_lost_them(make_sim, tmp_path, listing_input, capsys):
    """Every answer lost (each task created and billed): one run finds every job's own task on the
    provider, follows it and downloads it; nothing is left for a second run, nothing is paid twice."""
    sim = make_sim(faults=Faults(rate_drop_after=1.0), listing_input=listing_input)
    manifest, out = lost_batch(tmp_path), tmp_path / "out"
    assert run_cli(sim, manifest, out, "-v") == 0
    err = capsys.readouterr().err
    assert err.count("is unknown: submit") == 6 and "0 unknown" in err
    assert "never created (sent again), 0 still unknown" in err
    assert_each_lost_submit_is_its_own(sim, out, 6)
    assert sim.ledger()["requests"]["list"] >= 1


def test_half_the_answers_lost_while_other_submits_run_settle_each_to_its_own_task(make_sim, tmp_path):
    """Every submit answered 1.5 s after its task was created, half of them never: the listing is read
    while no other submit is on the wire (settling.py), or a task whose answer is on its way is one nobody
    knows, which no survey can tell from a lost one (without the gate, such a task was fetched into
    unmatched/ as a stray and its video downloaded twice). Items without input: found by their output."""
    sim = make_sim(faults=Faults(rate_drop_after=0.5, rate_slow_after=1.0, slow_seconds=1.5), seed=7)
    make_images(tmp_path / "img", 6)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} turns", "duration": d}
                                         for d in (4, 8)])
    out = tmp_path / "out"
    assert run_cli(sim, manifest, out, "--concurrency", "5", "--queue-margin", "0") == 0
    assert sim.ledger()["faults"]["drop-after"] >= 3
    assert_each_lost_submit_is_its_own(sim, out, 12)


def test_a_lost_answer_of_a_task_never_created_is_proven_absent_and_sent_again_in_the_run(sim, tmp_path,
                                                                                          monkeypatch):
    """A 500 after sending (the provider created nothing): the complete listing proves it, so the job is
    submitted again in the same run, paid once."""
    from batchgen.errors import AmbiguousSubmitError

    real, calls = WaveSpeedProvider.submit, []

    async def lost_once(self, model, body, **options):
        calls.append(model)
        if len(calls) == 1:  # the request reached nobody, but its answer says nothing of it
            raise AmbiguousSubmitError("submit: HTTP 500: upstream error; the task may have been created")
        return await real(self, model, body, **options)

    monkeypatch.setattr(WaveSpeedProvider, "submit", lost_once)
    manifest, out = one_job(tmp_path), tmp_path / "out"
    assert run_cli(sim, manifest, out) == 0
    assert len(calls) == 2 and len(sim.ledger()["submissions"]) == 1
    rec = next(iter(load(out / "state.jsonl").jobs.values()))
    assert rec.status.value == "downloaded" and rec.attempts == 2


def test_a_survey_backing_off_from_a_failed_listing_lets_other_submits_through(make_sim, tmp_path, monkeypatch):
    """The listing that settles a lost submit is answered 503 three times: the backoffs are spent with
    the gate open (settling.py), so other jobs are submitted meanwhile (behind the shut gate, 20 % 5xx
    stalled whole batches); the listing is then read again whole and the lost job sent again, paid once."""
    from batchgen.errors import AmbiguousSubmitError, TransientError

    real_submit, real_list, seen = WaveSpeedProvider.submit, WaveSpeedProvider.list_predictions, []

    async def first_answer_lost(self, model, body, **options):
        seen.append("submit")
        if seen.count("submit") == 1:  # the request reached nobody, but its answer says nothing of it
            raise AmbiguousSubmitError("submit: HTTP 500: upstream error; the task may have been created")
        return await real_submit(self, model, body, **options)

    async def refused_three_times(self, **window):
        if seen.count("list refused") < 3:
            seen.append("list refused")
            raise TransientError("list: HTTP 503: upstream error (simulated)", status=503)
        seen.append("list read")
        return await real_list(self, **window)

    monkeypatch.setattr(WaveSpeedProvider, "submit", first_answer_lost)
    monkeypatch.setattr(WaveSpeedProvider, "list_predictions", refused_three_times)
    sim = make_sim(gen_base=1.0)
    make_images(tmp_path / "img", 6)
    manifest, out = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} turns"}]), tmp_path / "out"
    assert run_cli(sim, manifest, out, "--concurrency", "2", "--queue-margin", "0") == 0
    first, read = seen.index("list refused"), seen.index("list read")
    assert seen[first:read].count("list refused") == 3 and "submit" in seen[first:read], seen
    assert seen.count("submit") == 7, seen
    assert_each_lost_submit_is_its_own(sim, out, 6)


def crashed_before_post(out, manifest, *, at: float | None = None) -> None:
    """The state a run killed between writing a job's intent and sending its POST leaves behind."""
    job = load_manifest(manifest).jobs[0]
    out.mkdir(parents=True, exist_ok=True)
    when = time.time() - 30 if at is None else at
    with StateLog(out / "state.jsonl", clock=lambda: when) as log:
        log.open()
        for event in (Job(job.key, id=job.id, output=job.output, model=job.model, params=dict(job.params),
                          prompt=job.prompt, image=job.image, where=str(job.where), cost=1.2),
                      Submitting(job.key, 1, "never-sent", job.model, 1.2), Unknown(job.key, "killed")):
            log.append(event)


def one_job(tmp_path):
    make_images(tmp_path / "img", 1)
    return write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} turns", "duration": 4}])


def test_a_lost_submit_proven_never_created_is_a_payment_shown_before_the_confirmation(sim, tmp_path, capsys,
                                                                                        monkeypatch):
    """Issue 14 item 3: today the run said "about to pay: $0.00" and then paid for the job."""
    manifest, out = one_job(tmp_path), tmp_path / "out"
    crashed_before_post(out, manifest)
    price = load_manifest(manifest).models.get(load_manifest(manifest).jobs[0].model).price("720p", 4)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    monkeypatch.setenv("WAVESPEED_API_KEY", "k")
    code = main(["run", str(manifest), "--out", str(out), "--base-url", sim.base_url, "--confirm-above", "0"])
    err = capsys.readouterr().err
    assert code == 2 and f"about to pay: ${price:.2f} for 1 submit(s)" in err, err
    assert "1 of the submits are lost submits sent again" in err and f"spend up to ${price:.2f}" in err
    assert sim.ledger()["submissions"] == [] and load(out / "state.jsonl").jobs.popitem()[1].status.value == "unknown"
    assert run_cli(sim, manifest, out) == 0
    assert f"about to pay: ${price:.2f}" in capsys.readouterr().err
    assert len(sim.ledger()["submissions"]) == 1


async def foreign_submit(base_url: str, model: str) -> str:
    """Another batch's prediction of the same model (another picture), made on the same account."""
    import base64
    uri = "data:image/png;base64," + base64.b64encode(image_bytes(96, 64, "PNG", (250, 250, 250))).decode()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base_url}/api/v3/{model}", json={"image": uri, "prompt": "other", "duration": 4},
                                headers=AUTH) as resp:
            return (await resp.json())["data"]["id"]


def test_an_unmatchable_prediction_keeps_the_job_unknown_and_its_video_is_kept_and_reported(sim, tmp_path, capsys):
    manifest, out = one_job(tmp_path), tmp_path / "out"
    crashed_before_post(out, manifest)
    model = load_manifest(manifest).jobs[0].model
    pid = asyncio.run(foreign_submit(sim.base_url, model))
    assert run_cli(sim, manifest, out) == 1
    err = capsys.readouterr().err
    assert "about to pay: $0.00" in err and f"{pid} ({model})" in err, "never guessed: no resubmit"
    assert len(sim.ledger()["submissions"]) == 1
    video, side = out / "unmatched" / f"{pid}.mp4", json.loads((out / "unmatched" / f"{pid}.json").read_text())
    assert video.stat().st_size > 0 and side["sha256"] == sim.ledger()["outputs"][pid] and side["model"] == model
    assert side["prediction_id"] == pid and side["why"] and side["created_at"]
    assert main(["status", str(out / "state.jsonl"), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [u["prediction_id"] for u in status["unmatched"]] == [pid] and status["counts"]["unknown"] == 1
    assert main(["status", str(out / "state.jsonl")]) == 0 and f"unmatched/{pid}.mp4" in capsys.readouterr().out
    page = write_report(out / "state.jsonl").path.read_text()
    assert "not matched to a job" in page and pid in page
    assert run_cli(sim, manifest, out) == 1 and sim.ledger()["downloads"] == 1, "a kept video is not fetched again"


def test_identical_orders_cannot_be_told_apart_so_both_stay_unknown_and_both_videos_are_kept(make_sim, tmp_path):
    sim = make_sim(faults=Faults(rate_drop_after=1.0))
    make_images(tmp_path / "img", 1)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} turns", "duration": 4},
                                         {"image": "img/*.png", "prompt": "The {stem} spins", "duration": 4,
                                          "output": "{stem}-spins"}])
    out = tmp_path / "out"
    assert run_cli(sim, manifest, out) == 1
    sim.configure(faults={"drop-after": 0.0})
    assert run_cli(sim, manifest, out) == 1
    assert {r.status.value for r in load(out / "state.jsonl").jobs.values()} == {"unknown"}
    ledger = sim.ledger()
    assert len(ledger["submissions"]) == 2 and ledger["downloads"] == 2
    assert sorted(p.stem for p in (out / "unmatched").glob("*.mp4")) == sorted(ledger["outputs"])


def test_a_submit_older_than_the_provider_keeps_predictions_is_never_proven_absent(sim, tmp_path, capsys):
    manifest, out = one_job(tmp_path), tmp_path / "out"
    crashed_before_post(out, manifest, at=time.time() - 8 * 86400)
    assert run_cli(sim, manifest, out) == 1
    assert "older than the provider keeps predictions" in capsys.readouterr().err
    assert sim.ledger()["submissions"] == []


def test_a_match_recorded_by_a_run_that_stopped_before_placing_its_video_is_placed_not_fetched_again(make_sim,
                                                                                                     tmp_path):
    """Found by the torture run: a kill between recording a match and moving its video left the video in
    unmatched/ and the next run downloaded it a second time."""
    sim = make_sim(faults=Faults(rate_drop_after=1.0))
    manifest, out = lost_batch(tmp_path), tmp_path / "out"
    with lost_submits_left_unknown():
        assert run_cli(sim, manifest, out) == 1
    sim.configure(faults={"drop-after": 0.0})

    async def match_then_stop() -> None:
        jobs = load_manifest(manifest)
        provider, verifier = WaveSpeedProvider(API_KEY, sim.base_url), Verifier()
        try:
            with StateLog(out / "state.jsonl") as log:
                log.open()
                runner = Runner(jobs.jobs, provider, log, jobs.models, RunOptions(out_dir=out), verifier=verifier)
                plan, events = await runner.prepare()
                runner.commit(events + await runner.reconcile(plan))
        finally:
            verifier.shutdown()
            await provider.close()

    asyncio.run(match_then_stop())
    assert len(list((out / "unmatched").glob("*.mp4"))) == 6
    assert run_cli(sim, manifest, out) == 0
    assert_each_lost_submit_is_its_own(sim, out, 6)
    assert not list((out / "unmatched").glob("*.mp4"))


def test_a_proven_absent_resubmit_is_capped_once_not_counted_in_flight_and_again_as_a_submit(sim, tmp_path):
    manifest, out = one_job(tmp_path), tmp_path / "out"
    crashed_before_post(out, manifest)
    job = load_manifest(manifest).jobs[0]
    price = load_manifest(manifest).models.get(job.model).price(job.resolution, job.duration)
    assert run_cli(sim, manifest, out, "--max-cost", f"{price:.2f}") == 0
    assert len(sim.ledger()["submissions"]) == 1


def test_one_failed_listing_read_is_tried_again_not_left_for_the_next_run(make_sim, tmp_path, monkeypatch):
    """A 5xx on the listing once left every lost submit of the model unknown for the whole run (seen in the
    200-job torture); reading the listing changes nothing at the provider, so it is retried."""
    from batchgen.errors import TransientError
    from batchgen.retry import zero_sleeps

    sim = make_sim(faults=Faults(rate_drop_after=1.0), listing_input=True)
    manifest, out = one_job(tmp_path), tmp_path / "out"
    with lost_submits_left_unknown():
        assert run_cli(sim, manifest, out) == 1
    sim.configure(faults={"drop-after": 0.0})
    real, calls = WaveSpeedProvider.list_predictions, []

    async def fails_once(self, **window):
        calls.append(window)
        if len(calls) == 1:
            raise TransientError("list: HTTP 502: bad gateway", status=502)
        return await real(self, **window)

    monkeypatch.setattr(WaveSpeedProvider, "list_predictions", fails_once)
    with zero_sleeps():
        assert run_cli(sim, manifest, out) == 0
    assert len(calls) == 2 and [r.status.value for r in load(out / "state.jsonl").jobs.values()] == ["downloaded"]
    assert len(sim.ledger()["submissions"]) == 1, "found on the provider, not paid again"


def test_a_listing_read_within_the_grace_of_a_lost_submit_does_not_prove_it_never_created(tmp_path):
    """In the run that lost it, a job can join a survey whose listing is read before its grace ended (the
    request may still be in the provider's hands): found there it is followed, absent it is read again."""
    from types import SimpleNamespace

    from batchgen.providers.base import Listing
    from batchgen.reconcile import TOO_RECENT, Survey, match

    manifest, out = one_job(tmp_path), tmp_path / "out"
    crashed_before_post(out, manifest, at=1000.0)
    job = load_manifest(manifest).jobs[0]
    state = load(out / "state.jsonl")
    options = SimpleNamespace(unknown_grace=3.0, listing_margin=600.0, duration_tolerance=0.6, out_dir=out)
    s = Survey(SimpleNamespace(policy=SimpleNamespace(output_lifetime=None)), state, None, options,
               asyncio.sleep, lambda: 1010.0)
    empty = {job.model: Listing(items=(), complete=True)}
    early = asyncio.run(match([job], empty, s, read_at=1002.0))
    assert early.unknown == {job.key: TOO_RECENT} and not early.absent
    late = asyncio.run(match([job], empty, s, read_at=1003.5))
    assert late.absent == [job] and not late.unknown


def test_a_task_two_lost_jobs_could_have_made_is_never_given_to_the_one_surveyed_alone_later(make_sim, tmp_path,
                                                                                                monkeypatch):
    """Found by the torture run: two jobs of the same picture and length lost their answers 0.2 s apart,
    the first after its task was made, the second before. The first survey read the listing within the
    second's grace, so it left the first unknown (the one task fits both) and kept the second for
    another survey, which, matching it alone, took the first job's task for its own: that job was then
    proven absent and paid again. Every survey in the run matches every job still unknown."""
    from batchgen.errors import AmbiguousSubmitError, TransientError

    real, calls, made = WaveSpeedProvider.submit, [], []

    async def first_made_second_not(self, model, body, **options):
        calls.append(body["prompt"])
        if len(calls) == 1:
            made.append((await real(self, model, body, **options)).id)
            raise AmbiguousSubmitError("submit: the connection failed after sending; the task may have been created")
        if len(calls) == 2:  # refused: the second job's next intent comes after a backoff
            raise TransientError("submit: HTTP 503: busy, retry later", status=503)
        if len(calls) == 3:
            raise AmbiguousSubmitError("submit: HTTP 500: upstream error; the task may have been created")
        return await real(self, model, body, **options)

    monkeypatch.setattr(WaveSpeedProvider, "submit", first_made_second_not)
    sim = make_sim()
    make_images(tmp_path / "img", 1)
    manifest = write_manifest(tmp_path, [{"id": f"take{n}", "output": f"take{n}.mp4", "image": "img/shot00.png",
                                          "prompt": prompt, "duration": 4}
                                         for n, prompt in enumerate(("The shot turns", "The shot glides"))])
    out = tmp_path / "out"
    run_cli(sim, manifest, out, "--concurrency", "2")
    state = load(out / "state.jsonl").jobs.values()
    owner = [r for r in state if r.pid == made[0] or made[0] in r.past_pids]
    assert all(r.body_hash == sim.ledger()["submissions"][0]["body_hash"] for r in owner), "given to another job"
    assert max(sim.ledger()["accepted_by_body_hash"].values()) == 1, "a job was paid twice"
    # The one task fits both, and only one of them made it: neither is claimed, both wait for the user.
    assert [r.status.value for r in state] == ["unknown", "unknown"]
