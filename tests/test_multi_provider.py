"""One manifest on two providers: the runner against the WaveSpeed and the Replicate simulators at once,
over loopback HTTP, with a provider switched off half way (issue 17)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import aiohttp
import pytest
from runner_helpers import make_images, write_manifest

from batchgen import events as ev
from batchgen.errors import ManifestError
from batchgen.estimate import estimate
from batchgen.lifecycle import JobStatus
from batchgen.manifest import load_manifest
from batchgen.models import SEEDANCE, SEEDANCE_FAST
from batchgen.providers.multi import MultiProvider
from batchgen.providers.replicate import ReplicateProvider
from batchgen.providers.wavespeed import WaveSpeedProvider
from batchgen.retry import zero_sleeps
from batchgen.runner import RunOptions, Runner
from batchgen.poll_policy import PollPolicy
from batchgen.simulator import SimConfig
from batchgen.simulator import start as start_wavespeed
from batchgen.simulator.replicate import ReplicateConfig
from batchgen.simulator.replicate import start as start_replicate
from batchgen.state import StateLog, load
from batchgen.verifier import Verifier
from conftest import API_KEY

REPLICATE = "replicate:bytedance/seedance-2.0"
PROMPT = "The {stem} turns slowly on a studio table"


def _manifest(tmp_path: Path, models: list[str], **top) -> Path:
    make_images(tmp_path / "img", len(models))
    rows = [{"image": f"img/shot{i:02d}.png", "prompt": PROMPT, "duration": 4, "resolution": "480p", "model": m}
            for i, m in enumerate(models)]
    return write_manifest(tmp_path, rows, **top)


def _quick(config, render_cache_dir):
    """A simulator's config whose every task takes 50 ms."""
    return config(api_key=API_KEY, gen_base=0.05, gen_per_second=0.0, gen_jitter=0.0,
                  render_cache_dir=render_cache_dir)


async def _switch_off(base_url: str, model: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base_url}/_sim/config", json={"unavailable_models": [model]},
                                headers={"Authorization": f"Bearer {API_KEY}"}) as resp:
            assert resp.status == 200, await resp.text()


async def _run(manifest: Path, out: Path, members: dict, *, observer=None, fallback_after: int = 1):
    loaded = load_manifest(manifest)
    provider = MultiProvider(members)
    verifier = Verifier()
    try:
        with StateLog(out / "state.jsonl") as log:
            log.open()
            runner = Runner(loaded.jobs, provider, log, loaded.models,
                            # One queued beyond the slot: a switch-off lands while submits remain.
                            RunOptions(out_dir=out, concurrency=1, queue_margin=1, fallback_after=fallback_after,
                                       poll=PollPolicy(min_interval=0.05)),
                            verifier=verifier, observer=observer)
            return await runner.run()
    finally:
        verifier.shutdown()
        await provider.close()


def _check_ledgers(out: Path, ledgers: dict[str, dict], expect: int) -> None:
    """Every job downloaded, each file the provider's own output, and no body accepted twice anywhere."""
    state = load(out / "state.jsonl")
    done = [r for r in state.jobs.values() if r.status is JobStatus.DOWNLOADED]
    assert len(done) == expect, {r.id: (r.status.value, r.error) for r in state.jobs.values()}
    for rec in done:
        name, _, bare = rec.pid.rpartition(":")
        ledger = ledgers[name or "wavespeed"]
        assert hashlib.sha256((out / rec.path).read_bytes()).hexdigest() == rec.sha256 == ledger["outputs"][bare]
    for name, ledger in ledgers.items():
        assert all(n == 1 for n in ledger["accepted_by_body_hash"].values()), f"{name} paid a body twice"
    assert sum(len(l["submissions"]) for l in ledgers.values()) == expect


def test_mixed_batch_falls_back_to_the_other_provider_when_one_is_switched_off(tmp_path, render_cache_dir):
    models = [SEEDANCE, REPLICATE, SEEDANCE, REPLICATE, SEEDANCE, REPLICATE]
    manifest = _manifest(tmp_path, models, fallback_model=REPLICATE)
    out = tmp_path / "out"
    out.mkdir()

    async def body():
        ws = await start_wavespeed(_quick(SimConfig, render_cache_dir))
        rep = await start_replicate(_quick(ReplicateConfig, render_cache_dir))
        submitted, switches = [], []

        def observer(event):
            if isinstance(event, ev.Submitted):
                submitted.append(event)
                if len(submitted) == 2:  # half way: WaveSpeed's Seedance is switched off
                    switches.append(asyncio.ensure_future(_switch_off(ws.base_url, SEEDANCE)))

        def members():
            return {"wavespeed": WaveSpeedProvider(API_KEY, ws.base_url),
                    "replicate": ReplicateProvider(API_KEY, rep.base_url)}

        try:
            with zero_sleeps():
                result = await _run(manifest, out, members(), observer=observer)
                await asyncio.gather(*switches)
                assert result.exit_code == 0 and len(result.fallbacks) == 2, result
                _check_ledgers(out, {"wavespeed": ws.ledger(), "replicate": rep.ledger()}, 6)
                before = (ws.ledger()["requests"], rep.ledger()["requests"])
                again = await _run(manifest, out, members())
                assert again.exit_code == 0 and again.plan.submit == []
                assert (ws.ledger()["requests"], rep.ledger()["requests"]) == before, "a finished batch re-run is free"
        finally:
            await ws.close()
            await rep.close()
        return load(out / "state.jsonl")

    state = asyncio.run(body())
    by_id = {r.id: r for r in state.jobs.values()}
    assert not by_id["shot00-4s-480p"].pid.startswith("replicate:") and by_id["shot00-4s-480p"].submit_model == SEEDANCE
    for moved in ("shot02-4s-480p", "shot04-4s-480p"):
        assert by_id[moved].pid.startswith("replicate:") and by_id[moved].submit_model == REPLICATE
    assert all(by_id[f"shot0{i}-4s-480p"].pid.startswith("replicate:") for i in (1, 3, 5))


def test_an_unreachable_provider_moves_jobs_to_the_fallback_instead_of_halting(tmp_path, render_cache_dir):
    manifest = _manifest(tmp_path, [SEEDANCE, SEEDANCE], fallback_model=REPLICATE)
    out = tmp_path / "out"
    out.mkdir()

    async def body():
        rep = await start_replicate(_quick(ReplicateConfig, render_cache_dir))
        # A port nothing listens on: every connection is refused before anything is sent.
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        members = {"wavespeed": WaveSpeedProvider(API_KEY, f"http://127.0.0.1:{port}"),
                   "replicate": ReplicateProvider(API_KEY, rep.base_url)}
        try:
            with zero_sleeps():
                result = await _run(manifest, out, members, fallback_after=3)
            _check_ledgers(out, {"replicate": rep.ledger()}, 2)
            return result
        finally:
            await rep.close()

    result = asyncio.run(body())
    assert not result.halted and result.exit_code == 0 and len(result.fallbacks) == 2


def test_providers_pairs_the_same_model_on_two_providers_and_the_estimate_prices_both(tmp_path):
    manifest = _manifest(tmp_path, [SEEDANCE, REPLICATE], providers=["replicate", "wavespeed"])
    loaded = load_manifest(manifest)
    assert {(j.model, j.fallback_model) for j in loaded.jobs} == {(REPLICATE, SEEDANCE)}
    est = estimate(loaded)
    assert est.fallback is not None and est.fallback.model == SEEDANCE and est.fallback.accepted_jobs == 2
    assert [r.model for r in est.rows] == [REPLICATE]
    for bad, message in (([], "must list two different providers"), (["wavespeed", "fal"], "unknown provider")):
        with pytest.raises(ManifestError, match=message):
            load_manifest(_manifest(tmp_path / str(len(bad)), [SEEDANCE], providers=bad))
    with pytest.raises(ManifestError, match="has no row on replicate"):
        load_manifest(_manifest(tmp_path / "fast", [SEEDANCE_FAST], providers=["wavespeed", "replicate"]))
    with pytest.raises(ManifestError, match="either providers"):
        load_manifest(_manifest(tmp_path / "both", [SEEDANCE], providers=["wavespeed", "replicate"],
                                fallback_model=REPLICATE))


def test_providers_list_moves_jobs_when_replicate_switches_the_model_off_half_way(tmp_path, render_cache_dir):
    manifest = _manifest(tmp_path, [SEEDANCE] * 4, providers=["replicate", "wavespeed"])
    out = tmp_path / "out"
    out.mkdir()

    async def body():
        ws = await start_wavespeed(_quick(SimConfig, render_cache_dir))
        rep = await start_replicate(_quick(ReplicateConfig, render_cache_dir))
        switches = []

        def observer(event):
            if isinstance(event, ev.Submitted) and not switches:
                switches.append(asyncio.ensure_future(_switch_off(rep.base_url, "bytedance/seedance-2.0")))

        members = {"wavespeed": WaveSpeedProvider(API_KEY, ws.base_url),
                   "replicate": ReplicateProvider(API_KEY, rep.base_url)}
        try:
            with zero_sleeps():
                result = await _run(manifest, out, members, observer=observer)
                await asyncio.gather(*switches)
            _check_ledgers(out, {"wavespeed": ws.ledger(), "replicate": rep.ledger()}, 4)
            return result
        finally:
            await ws.close()
            await rep.close()

    result = asyncio.run(body())
    # How many submits reach Replicate before the switch lands depends on how many are in flight at once
    # (the provider queue is primed); every later one goes to WaveSpeed, and each job is paid once.
    on_replicate = [r.pid.startswith("replicate:") for r in load(out / "state.jsonl").jobs.values()].count(True)
    assert result.exit_code == 0 and 1 <= len(result.fallbacks) == 4 - on_replicate
