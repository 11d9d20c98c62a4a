"""batchgen's Replicate client against the Replicate simulator over loopback HTTP."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from aiohttp import web

from batchgen.errors import (
    AmbiguousSubmitError,
    ExpiredLinkError,
    FatalError,
    ModelUnavailableError,
    OutputExpiredError,
    PermanentError,
    RateLimitedError,
)
from batchgen.models import ModelTable, body_hash
from batchgen.providers import provider_info
from batchgen.providers.base import PredictionStatus
from batchgen.providers.replicate import MODELS, SEEDANCE, ReplicateProvider, parse_time
from batchgen.simulator import Faults
from batchgen.simulator.replicate import ReplicateConfig, start
from conftest import API_KEY, image_bytes, run

SPEC = ModelTable(MODELS).get(SEEDANCE)


class FakeClock:
    """Wall time the test moves by hand, so an hour of output retention passes instantly."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _config(cache: str, **overrides) -> ReplicateConfig:
    return ReplicateConfig(api_key=API_KEY, gen_base=0.05, gen_per_second=0.0, gen_jitter=0.0,
                           render_cache_dir=cache, **overrides)


async def _body(provider: ReplicateProvider, prompt: str = "slow orbit") -> dict:
    image = await provider.upload(image_bytes(320, 180), "p.png", "image/png")
    return provider.build_body(SPEC, image, prompt, {"duration": 4, "resolution": "480p"})


async def _finished(provider: ReplicateProvider, prediction_id: str):
    for _ in range(1500):
        prediction = await provider.result(prediction_id)
        if prediction.status in (PredictionStatus.COMPLETED, PredictionStatus.FAILED):
            return prediction
        await asyncio.sleep(0.02)
    raise AssertionError(f"prediction {prediction_id} never finished")


def _with_sim(cache: str, scenario, **overrides):
    async def body():
        sim = await start(_config(cache, **overrides))
        provider = provider_info("replicate").factory(API_KEY, sim.base_url)
        try:
            await scenario(sim, provider)
        finally:
            await provider.close()
            await sim.close()

    run(body())


def test_registered_with_replicates_policy():
    policy = provider_info("replicate").policy
    assert policy.key_variable == "REPLICATE_API_TOKEN" and policy.output_lifetime == 3600.0
    assert policy.upload_lifetime == 3600.0 and policy.queues_over_limit is True
    assert issubclass(OutputExpiredError, PermanentError)


def test_submit_result_and_verified_download(render_cache_dir, tmp_path):
    async def scenario(sim, provider):
        body = await _body(provider)
        assert body["image"].startswith(f"{sim.base_url}/v1/files/") and body["resolution"] == "480p"
        assert sim.ledger()["requests"]["files"] == 1
        created = await provider.submit(SEEDANCE, body)
        assert created.status is PredictionStatus.CREATED and created.model == SEEDANCE
        done = await _finished(provider, created.id)
        assert done.status is PredictionStatus.COMPLETED and len(done.outputs) == 1 and done.inference_ms
        got = await provider.download(done.outputs[0], tmp_path / "v.part", max_bytes=50 << 20)
        assert got.sha256 == sim.ledger()["outputs"][created.id] and got.length_checked
        assert got.sha256 == hashlib.sha256((tmp_path / "v.part").read_bytes()).hexdigest()
        assert sim.ledger()["charged_total"] == 0.48

    _with_sim(render_cache_dir, scenario)


def test_listing_pages_by_cursor_and_matches_inputs_exactly(render_cache_dir):
    async def scenario(sim, provider):
        bodies = [await _body(provider, f"take {n}") for n in range(5)]
        ids = [(await provider.submit(SEEDANCE, b)).id for b in bodies]
        listing = await provider.list_predictions(model=SEEDANCE, created_after=0, created_before=4e9)
        assert listing.complete and sim.ledger()["requests"]["list"] == 3, "5 items, 2 a page: 3 pages"
        by_id = {item.id: item for item in listing.items}
        assert set(by_id) == set(ids)
        for prediction_id, body in zip(ids, bodies):
            assert by_id[prediction_id].body_hash == body_hash(body) and by_id[prediction_id].input == body
        assert all(isinstance(item.created_at, float) for item in listing.items)
        assert parse_time("2026-01-01T00:00:00.5Z") == 1767225600.5

    _with_sim(render_cache_dir, scenario, page_size=2)


def test_removed_outputs_raise_the_typed_expiry_error(render_cache_dir, tmp_path):
    clock = FakeClock()

    async def scenario(sim, provider):
        done = await _finished(provider, (await provider.submit(SEEDANCE, await _body(provider))).id)
        clock.now += 3599
        assert (await provider.result(done.id)).outputs == done.outputs, "still there just before the hour"
        clock.now += 2
        with pytest.raises(OutputExpiredError) as lost:
            await provider.result(done.id)
        assert lost.value.prediction_id == done.id and "paid" in str(lost.value)
        with pytest.raises(ExpiredLinkError):
            await provider.download(done.outputs[0], tmp_path / "late.part", max_bytes=50 << 20)
        listing = await provider.list_predictions(model=SEEDANCE, created_after=0, created_before=4e9)
        assert listing.items[0].input is None and listing.items[0].body_hash == "", "inputs go with the data"
        assert sim.ledger()["removed"] == [done.id]

    _with_sim(render_cache_dir, scenario, clock=clock)


def test_a_dropped_answer_is_ambiguous_and_the_listing_finds_it_by_input(render_cache_dir):
    async def scenario(sim, provider):
        body = await _body(provider)
        with pytest.raises(AmbiguousSubmitError):
            await provider.submit(SEEDANCE, body)
        charged = sim.ledger()["submissions"]
        assert len(charged) == 1, "the server created (and will bill) the prediction"
        listing = await provider.list_predictions(model=SEEDANCE, created_after=0, created_before=4e9)
        assert [item.id for item in listing.items if item.body_hash == body_hash(body)] == [charged[0]["id"]]

    _with_sim(render_cache_dir, scenario, faults=Faults(rate_drop_after=1.0))


def test_server_errors_on_submit_are_ambiguous_and_refusals_are_typed(render_cache_dir):
    async def scenario(sim, provider):
        body = await _body(provider)
        sim.simulator.config.faults.rate_5xx = 1.0
        with pytest.raises(AmbiguousSubmitError):
            await provider.submit(SEEDANCE, body)
        sim.simulator.config.faults.rate_5xx = 0.0
        with pytest.raises(ModelUnavailableError) as missing:
            await provider.submit("nobody/no-such-model", body)
        assert missing.value.temporary is False and missing.value.status == 404
        sim.simulator.config.faults.unavailable_models = {SEEDANCE}
        with pytest.raises(ModelUnavailableError) as off:
            await provider.submit(SEEDANCE, body)
        assert off.value.temporary is True
        sim.simulator.config.faults.unavailable_models = set()
        with pytest.raises(PermanentError):
            await provider.submit(SEEDANCE, {**body, "duration": 99})
        assert sim.ledger()["submissions"] == [], "no refusal created anything"

    _with_sim(render_cache_dir, scenario)


def test_rate_limit_bad_token_and_failed_tasks(render_cache_dir):
    async def scenario(sim, provider):
        body = await _body(provider)
        await provider.submit(SEEDANCE, body)
        with pytest.raises(RateLimitedError) as limited:
            await provider.submit(SEEDANCE, body)
        assert limited.value.retry_after and limited.value.retry_after > 0
        stranger = ReplicateProvider("not-the-token", sim.base_url)
        try:
            with pytest.raises(FatalError, match="REPLICATE_API_TOKEN"):
                await stranger.result("anything")
        finally:
            await stranger.close()
        sim.simulator.config.create_rate = None
        sim.simulator.config.faults.rate_fail = 1.0
        failed = await _finished(provider, (await provider.submit(SEEDANCE, body)).id)
        assert failed.status is PredictionStatus.FAILED and "moderation" in failed.error and not failed.outputs
        assert sim.ledger()["charged_total"] == 0.48, "the failed one is not charged"

    _with_sim(render_cache_dir, scenario, create_rate=1)


def test_the_token_never_leaves_the_configured_origin():
    """A listing whose ``next`` names another origin is refused before anything is sent there."""
    seen: list[tuple[str, str | None]] = []

    async def listing(request: web.Request) -> web.Response:
        seen.append((request.host, request.headers.get("Authorization")))
        foreign = f"http://127.0.0.1:{request.url.port}/v1/predictions?cursor=steal"
        return web.json_response({"results": [], "next": foreign, "previous": None})

    async def body():
        app = web.Application()
        app.router.add_get("/v1/predictions", listing)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        provider = ReplicateProvider(API_KEY, f"http://localhost:{runner.addresses[0][1]}")
        try:
            with pytest.raises(PermanentError, match="not sent there"):
                await provider.list_predictions(model=SEEDANCE, created_after=0, created_before=4e9)
        finally:
            await provider.close()
            await runner.cleanup()
        assert [auth for _host, auth in seen] == [f"Bearer {API_KEY}"], "one request, to the configured origin"

    run(body())
