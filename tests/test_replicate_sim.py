"""The Replicate simulator's own promises: signed webhooks, queueing, cancel, cursors, the switch, the CLI."""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp
import pytest
from aiohttp import web
from replicate.webhook import InvalidSignatureError, WebhookSigningSecret, Webhooks

from batchgen.errors import PermanentError
from batchgen.models import ModelTable
from batchgen.providers.base import PredictionStatus
from batchgen.providers.replicate import MODELS, SEEDANCE, ReplicateProvider
from batchgen.simulator.replicate import ReplicateConfig, add_arguments, config_from_args, start
from batchgen.webhooks import STANDARD_SCHEME, DeliveryRejected, verify
from conftest import API_KEY, AUTH, image_bytes, run

SPEC = ModelTable(MODELS).get(SEEDANCE)


def _config(cache: str, **overrides) -> ReplicateConfig:
    settings = {"gen_base": 0.05, "gen_per_second": 0.0, "gen_jitter": 0.0, **overrides}
    return ReplicateConfig(api_key=API_KEY, render_cache_dir=cache, **settings)


async def _body(provider: ReplicateProvider, prompt: str = "orbit") -> dict:
    image = await provider.upload(image_bytes(320, 180), "p.png", "image/png")
    return provider.build_body(SPEC, image, prompt, {"duration": 4, "resolution": "480p"})


async def _wait_for(predicate, what: str, tries: int = 1500) -> None:
    for _ in range(tries):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_webhooks_are_signed_per_standard_webhooks_and_verify_with_both_checkers(render_cache_dir):
    received: list[tuple[dict[str, str], bytes]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    async def body():
        app = web.Application()
        app.router.add_post("/hook", receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        sim = await start(_config(render_cache_dir))
        hook = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        base_url = sim.base_url
        provider = ReplicateProvider(API_KEY, sim.base_url, webhook=hook, webhook_events=("start", "completed"))
        try:
            secret = await provider.webhook_secret()
            created = await provider.submit(SEEDANCE, await _body(provider))
            await _wait_for(lambda: len(received) == 2, "two deliveries")
        finally:
            await provider.close()
            await sim.close()
            await runner.cleanup()
        assert secret.startswith("whsec_")
        statuses = []
        for headers, raw in received:
            lowered = {k.lower(): v for k, v in headers.items()}
            assert lowered["webhook-signature"].startswith("v1,")
            delivery = verify(STANDARD_SCHEME, secret, lowered, raw, now=time.time())
            Webhooks.validate(headers=lowered, body=raw.decode(), secret=WebhookSigningSecret(key=secret))
            prediction = json.loads(delivery.body)
            statuses.append(prediction["status"])
            assert prediction["id"] == created.id and prediction["urls"]["get"].startswith(base_url)
        assert statuses == ["processing", "succeeded"] and prediction["output"].startswith(base_url)
        with pytest.raises(DeliveryRejected):
            verify(STANDARD_SCHEME, secret, lowered, raw + b" ", now=time.time())
        with pytest.raises(InvalidSignatureError):
            Webhooks.validate(headers=lowered, body=raw.decode() + " ", secret=WebhookSigningSecret(key=secret))

    run(body())


def test_webhooks_go_to_loopback_only(render_cache_dir):
    async def body():
        sim = await start(_config(render_cache_dir))
        provider = ReplicateProvider(API_KEY, sim.base_url, webhook="https://example.com/hook")
        try:
            with pytest.raises(PermanentError, match="loopback"):
                await provider.submit(SEEDANCE, await _body(provider))
        finally:
            await provider.close()
            await sim.close()
        assert sim.ledger()["submissions"] == []

    run(body())


def test_over_the_concurrency_cap_predictions_wait_in_starting_and_can_be_canceled(render_cache_dir):
    async def body():
        sim = await start(_config(render_cache_dir, gen_base=0.8, concurrency_cap=1))
        provider = ReplicateProvider(API_KEY, sim.base_url)
        try:
            first = await provider.submit(SEEDANCE, await _body(provider, "one"))
            second = await provider.submit(SEEDANCE, await _body(provider, "two"))
            third = await provider.submit(SEEDANCE, await _body(provider, "three"))
            await asyncio.sleep(0.2)
            assert (await provider.result(second.id)).status is PredictionStatus.CREATED, "queued, not refused"
            canceled = await provider.cancel(third.id)
            assert canceled.status is PredictionStatus.FAILED and "canceled" in canceled.error
            for prediction in (first, second):
                await _wait_for(lambda: sim.simulator.runs[prediction.id].task.done, "completion")
            ledger = sim.ledger()
        finally:
            await provider.close()
            await sim.close()
        assert ledger["max_concurrent"] == 1
        charged = {s["id"]: s["charged"] for s in ledger["submissions"]}
        assert charged == {first.id: True, second.id: True, third.id: False}

    run(body())


def test_cursor_pages_go_forward_and_back(render_cache_dir):
    async def body():
        sim = await start(_config(render_cache_dir, page_size=2))
        provider = ReplicateProvider(API_KEY, sim.base_url)
        try:
            ids = [(await provider.submit(SEEDANCE, await _body(provider, str(n)))).id for n in range(3)]
            async with aiohttp.ClientSession(headers=AUTH) as http:
                async with http.get(f"{sim.base_url}/v1/predictions") as resp:
                    first = await resp.json()
                async with http.get(first["next"]) as resp:
                    second = await resp.json()
                async with http.get(second["previous"]) as resp:
                    back = await resp.json()
                async with http.get(f"{sim.base_url}/v1/predictions?cursor=%%%") as resp:
                    assert resp.status == 400 and (await resp.json())["title"] == "Bad request"
        finally:
            await provider.close()
            await sim.close()
        assert [p["id"] for p in first["results"]] == ids[::-1][:2] and first["previous"] is None
        assert [p["id"] for p in second["results"]] == ids[:1] and second["next"] is None
        assert [p["id"] for p in back["results"]] == [p["id"] for p in first["results"]]
        assert all(p["input"]["prompt"] for p in first["results"])

    run(body())


def test_a_model_can_be_switched_off_and_on_over_http(render_cache_dir):
    async def body():
        sim = await start(_config(render_cache_dir))
        provider = ReplicateProvider(API_KEY, sim.base_url)
        try:
            async with aiohttp.ClientSession() as http:
                async def switch(models: list[str]) -> None:
                    async with http.post(f"{sim.base_url}/_sim/config", json={"unavailable_models": models}) as resp:
                        assert resp.status == 200
                await switch([SEEDANCE])
                create = http.post(f"{sim.base_url}/v1/models/{SEEDANCE}/predictions", headers=AUTH,
                                   json={"input": await _body(provider)})
                async with create as resp:
                    assert resp.status == 503 and "unavailable" in (await resp.json())["detail"]
                await switch([])
            assert (await provider.submit(SEEDANCE, await _body(provider))).id
        finally:
            await provider.close()
            await sim.close()

    run(body())


def test_cli_flags_build_the_config():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(
        ["--output-ttl", "60", "--concurrency-cap", "2", "--fault", "drop-after=0.5", "--unavailable", SEEDANCE]))
    assert config.output_ttl == 60 and config.concurrency_cap == 2
    assert config.faults.rate_drop_after == 0.5 and config.faults.unavailable_models == {SEEDANCE}
    with pytest.raises(ValueError, match="NAME=RATE"):
        config_from_args(parser.parse_args(["--fault", "bogus"]))


def test_an_expired_upload_fails_the_prediction_that_names_it(render_cache_dir):
    clock = type("Clock", (), {"now": 1_800_000_000.0, "__call__": lambda self: self.now})()

    async def body():
        sim = await start(_config(render_cache_dir, clock=clock))
        provider = ReplicateProvider(API_KEY, sim.base_url)
        try:
            stale = await _body(provider)
            clock.now += 25 * 3600
            created = await provider.submit(SEEDANCE, stale)
            await _wait_for(lambda: sim.simulator.runs[created.id].task.done, "the failure")
            failed = await provider.result(created.id)
        finally:
            await provider.close()
            await sim.close()
        assert failed.status is PredictionStatus.FAILED and "could not download the image" in failed.error

    run(body())
