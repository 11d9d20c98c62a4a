"""The official ``replicate`` client 1.0.7, unmodified, against the Replicate simulator (issue 17, done-when #1)."""

from __future__ import annotations

import asyncio
import base64
import signal
import subprocess
import sys

import httpx
import pytest
import replicate
from replicate.exceptions import ModelError, ReplicateError

from batchgen.probe import probe_video
from batchgen.providers.replicate import SEEDANCE
from batchgen.simulator import Faults
from batchgen.simulator.replicate import ReplicateConfig, start
from conftest import API_KEY, image_bytes, run


def _input(**extra):
    picture = "data:image/png;base64," + base64.b64encode(image_bytes(320, 180)).decode()
    return {"image": picture, "prompt": "slow orbit, soft music", "duration": 4, "resolution": "720p", **extra}


def _config(render_cache_dir, **overrides) -> ReplicateConfig:
    return ReplicateConfig(api_key=API_KEY, gen_base=0.05, gen_per_second=0.0, gen_jitter=0.0,
                           render_cache_dir=render_cache_dir, **overrides)


_TRANSPORTS: list[httpx.HTTPTransport] = []


@pytest.fixture(autouse=True)
def close_transports():
    """The client has no close(); its documented ``transport`` option lets the test close its sockets."""
    yield
    while _TRANSPORTS:
        _TRANSPORTS.pop().close()


def _client(base_url: str, token: str = API_KEY) -> replicate.Client:
    _TRANSPORTS.append(httpx.HTTPTransport())
    client = replicate.Client(api_token=token, base_url=base_url, transport=_TRANSPORTS[-1])
    client.poll_interval = 0.05  # the client's own knob (REPLICATE_POLL_INTERVAL), so the test does not idle
    return client


def test_official_client_creates_waits_and_downloads_a_real_clip(render_cache_dir, tmp_path):
    async def body():
        sim = await start(_config(render_cache_dir))
        try:
            def use_client():
                client = _client(sim.base_url)
                prediction = client.models.predictions.create(model=SEEDANCE, input=_input())
                assert prediction.status == "starting" and prediction.input["duration"] == 4
                prediction.wait()
                assert prediction.status == "succeeded", prediction.error
                assert prediction.metrics["predict_time"] > 0 and prediction.completed_at
                clip = tmp_path / "clip.mp4"
                clip.write_bytes(replicate.helpers.FileOutput(prediction.output, client).read())
                page = client.predictions.list()
                return prediction.id, clip, page

            prediction_id, clip, page = await asyncio.to_thread(use_client)
            info = probe_video(clip)
            assert (info.width, info.height) == (1280, 720) and info.video_codec == "h264"
            assert info.audio_codec == "aac" and abs(info.duration - 4.0) < 0.3
            assert [p.id for p in page.results] == [prediction_id] and page.results[0].input["prompt"]
            ledger = sim.ledger()
            assert [s["model"] for s in ledger["submissions"]] == [SEEDANCE] and ledger["charged_total"] == 0.96
            assert ledger["downloads"] == 1
        finally:
            await sim.close()

    run(body())


def test_official_run_uses_prefer_wait_and_reads_the_file(render_cache_dir):
    async def body():
        sim = await start(_config(render_cache_dir))
        try:
            output = await asyncio.to_thread(lambda: _client(sim.base_url).run(SEEDANCE, input=_input()))
            # run() wraps only https: URLs in FileOutput (replicate/helpers.py); the loopback one stays a str.
            assert isinstance(output, str) and output.startswith(sim.base_url)
            data = await asyncio.to_thread(lambda: replicate.helpers.FileOutput(output, _client(sim.base_url)).read())
            assert data[4:8] == b"ftyp" and sim.ledger()["requests"].get("get", 0) == 0, "Prefer: wait held the create"
        finally:
            await sim.close()

    run(body())


def test_official_client_uploads_a_file_handle_through_the_files_api(render_cache_dir, tmp_path):
    picture = tmp_path / "product.png"
    picture.write_bytes(image_bytes(180, 320))

    async def body():
        sim = await start(_config(render_cache_dir))
        try:
            def use_client():
                client = _client(sim.base_url)
                with picture.open("rb") as handle:
                    prediction = client.models.predictions.create(model=SEEDANCE, input=_input(image=handle))
                prediction.wait()
                return prediction

            prediction = await asyncio.to_thread(use_client)
            assert prediction.status == "succeeded", prediction.error
            assert prediction.input["image"].startswith(f"{sim.base_url}/v1/files/")
            assert sim.ledger()["requests"]["files"] == 1
            clip = tmp_path / "portrait.mp4"
            clip.write_bytes(await asyncio.to_thread(
                lambda: replicate.helpers.FileOutput(prediction.output, _client(sim.base_url)).read()))
            assert (probe_video(clip).width, probe_video(clip).height) == (720, 1280), "rendered from the upload"
        finally:
            await sim.close()

    run(body())


def test_official_client_sees_failures_wrong_token_and_missing_models(render_cache_dir):
    async def body():
        sim = await start(_config(render_cache_dir, faults=Faults(rate_fail=1.0)))
        try:
            def use_client():
                with pytest.raises(ModelError, match="moderation"):
                    _client(sim.base_url).run(SEEDANCE, input=_input())
                with pytest.raises(ReplicateError) as refused:
                    _client(sim.base_url, token="not-the-token").run(SEEDANCE, input=_input())
                assert refused.value.status == 401
                with pytest.raises(ReplicateError) as missing:
                    _client(sim.base_url).run("nobody/no-such-model", input=_input())
                assert missing.value.status == 404

            await asyncio.to_thread(use_client)
        finally:
            await sim.close()

    run(body())


@pytest.mark.parametrize("entry", [["batchgen", "simulate", "--provider", "replicate"], ["batchgen.simulator.replicate"]])
def test_official_client_against_batchgen_simulate_provider_replicate(entry, render_cache_dir, tmp_path):
    """The done-when as written: the CLI's Replicate simulator, in its own process, driven by the client."""
    cmd = [sys.executable, "-m", *entry, "--port", "0", "--api-key", API_KEY, "--gen-base", "0.05",
           "--render-cache", render_cache_dir]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert "Replicate simulator listening on" in first, first + proc.stderr.read()
        base_url = first.rsplit(" ", 1)[-1].strip()
        client = _client(base_url)
        prediction = client.models.predictions.create(model=SEEDANCE, input=_input())
        prediction.wait()
        assert prediction.status == "succeeded", prediction.error
        clip = tmp_path / "cli.mp4"
        clip.write_bytes(replicate.helpers.FileOutput(prediction.output, client).read())
        assert probe_video(clip).video_codec == "h264"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 0
