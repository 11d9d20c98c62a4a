"""The WaveSpeed client against a lying server over real loopback HTTP (tests/hostile_server.py):
every answer a broken or hostile server can give ends as the error that keeps batchgen's promises."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest
from conftest import run
from hostile_server import Answer, HostileServer
from runner_helpers import make_images, write_manifest

from batchgen import fsguard
from batchgen.cli import main
from batchgen.errors import (
    AmbiguousSubmitError,
    FatalError,
    PermanentError,
    RateLimitedError,
    TransientError,
    UnreachableError,
)
from batchgen.providers.base import PredictionStatus
from batchgen.providers.wavespeed import MAX_ANSWER_BYTES, WaveSpeedProvider

KEY = "sk-live-SECRET-4f9a0c1d2e3b"
PID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
MODEL = "bytedance/seedance-2.0/image-to-video"
BODY = {"image": "https://img.example/a.png", "prompt": "a slow turn", "duration": 5}


def task(status="created", **data):
    return {"code": 200, "message": "success", "data": {"id": PID, "model": MODEL, "status": status,
                                                        "outputs": [], **data}}


@pytest.fixture
def server():
    with HostileServer() as srv:
        yield srv


def call(server, method: str, *args, **options):
    """Run one provider call against ``server``; return its result or the exception it raised."""
    async def body():
        provider = WaveSpeedProvider(KEY, server.base_url, **options)
        try:
            return await getattr(provider, method)(*args)
        except Exception as exc:  # noqa: BLE001 - the test inspects what was raised
            return exc
        finally:
            await provider.close()
    return run(body())


# -- issue 15 item 1: a submit is sent again only when the answer proves it was not taken ----------
@pytest.mark.parametrize("answer", [
    Answer(500, {"code": 500, "message": "internal error"}),
    Answer(502, "<html>bad gateway</html>", headers={"Content-Type": "text/html"}),
    Answer(504, {"code": 504, "message": "gateway timeout"}),
    Answer(302, b"", headers={"Location": "/elsewhere"}),
], ids=["500", "502", "504", "redirect"])
def test_a_5xx_after_sending_a_submit_is_ambiguous(server, answer):
    server.script(answer)
    exc = call(server, "submit", MODEL, BODY)
    assert isinstance(exc, AmbiguousSubmitError), exc
    assert exc.prediction_id is None and "sent again only if the provider's listing proves it was not" in str(exc)


@pytest.mark.parametrize("status", [500, 502, 504])
def test_an_error_body_that_names_a_task_gives_its_id(server, status):
    server.script(Answer(status, {"code": status, "message": "oops", "data": {"id": PID}}))
    exc = call(server, "submit", MODEL, BODY)
    assert isinstance(exc, AmbiguousSubmitError) and exc.prediction_id == PID, exc


def test_an_envelope_code_500_inside_http_200_is_ambiguous_with_its_id(server):
    server.script(Answer(200, {"code": 500, "message": "internal", "data": {"id": PID, "status": "created"}}))
    exc = call(server, "submit", MODEL, BODY)
    assert isinstance(exc, AmbiguousSubmitError) and exc.prediction_id == PID, exc


@pytest.mark.parametrize("status,kind", [(503, TransientError), (429, RateLimitedError), (400, PermanentError),
                                         (422, PermanentError), (401, FatalError)])
def test_a_refusal_that_proves_nothing_was_taken_is_not_ambiguous(server, status, kind):
    server.script(Answer(status, {"code": status, "message": "refused"}))
    exc = call(server, "submit", MODEL, BODY)
    assert type(exc) is kind, exc


def test_a_connection_cut_mid_answer_is_ambiguous(server):
    answer = Answer(200, task(), content_length=5000, reset_after=20)
    server.script(answer)
    exc = call(server, "submit", MODEL, BODY)
    assert isinstance(exc, AmbiguousSubmitError), exc


def test_a_submit_answer_slower_than_the_total_timeout_is_ambiguous(server):
    server.script(Answer(200, task(), trickle=0.3))  # each byte on time, the whole far too late
    started = time.monotonic()
    exc = call(server, "submit", MODEL, BODY, api_timeout=1.0)
    assert isinstance(exc, AmbiguousSubmitError), exc
    assert time.monotonic() - started < 5


# -- issue 15 item 5: after a 2xx, an unreadable answer is never "rejected, not billed" -------------
@pytest.mark.parametrize("body,pid", [
    ("<html>ok</html>", None),
    ({"code": 200, "message": "success"}, None),
    ({"code": 200, "data": {"id": PID, "outputs": 5}}, PID),
    ({"code": 200, "data": {"id": PID, "status": {"deep": [[["junk"]]]}}}, PID),
    ("[" * 100_000, None),
], ids=["html", "no-id", "outputs-5", "nested-junk", "deep-nesting"])
def test_an_unreadable_submit_answer_is_ambiguous(server, body, pid):
    server.script(Answer(200, body))
    exc = call(server, "submit", MODEL, BODY)
    assert isinstance(exc, AmbiguousSubmitError), exc
    assert exc.prediction_id == pid


def test_an_absurd_inference_time_does_not_lose_a_created_task(server):
    server.script(Answer(200, b'{"code": 200, "data": {"id": "%s", "status": "created", '
                              b'"timings": {"inference": 1e999}}}' % PID.encode()))
    pred = call(server, "submit", MODEL, BODY)
    assert pred.id == PID and pred.inference_ms is None, pred


@pytest.mark.parametrize("body", ["<html>degraded</html>", {"code": 200, "data": {"id": PID, "outputs": 5}},
                                  b'{"code":200,"data":{"id":"%s","status":"completed","outputs":[1]}}' % PID.encode()])
def test_an_unreadable_result_is_transient(server, body):
    server.script(Answer(200, body))
    exc = call(server, "result", PID)
    assert type(exc) is TransientError, exc


# -- issue 15 item 8: glitches on a paid task are transient; an unknown status is a finite error -----
def test_an_unknown_status_is_transient_then_permanent_after_the_limit(server):
    server.script(Answer(200, task("succeeded")))

    async def body():
        provider = WaveSpeedProvider(KEY, server.base_url)
        errors = []
        try:
            for _ in range(20):
                with pytest.raises((TransientError, PermanentError)) as info:
                    await provider.result(PID)
                errors.append(info.value)
        finally:
            await provider.close()
        return errors

    errors = run(body())
    assert all(type(e) is TransientError for e in errors[:19])
    assert type(errors[19]) is PermanentError and "'succeeded'" in str(errors[19])


@pytest.mark.parametrize("back", ["processing", "created", "failed"])
def test_a_status_that_goes_back_from_completed_is_transient(server, back):
    done = task("completed", outputs=["https://cdn.example/v.mp4"])
    server.script(Answer(200, done), Answer(200, task(back, error="glitch")), Answer(200, done))

    async def body():
        provider = WaveSpeedProvider(KEY, server.base_url)
        try:
            first = await provider.result(PID)
            with pytest.raises(TransientError, match="went back from completed"):
                await provider.result(PID)
            return first, await provider.result(PID)
        finally:
            await provider.close()

    first, again = run(body())
    assert first.status is again.status is PredictionStatus.COMPLETED


def test_a_huge_content_length_on_a_result_is_transient(server):
    server.script(Answer(200, task(), content_length=10 * 1000**3))
    exc = call(server, "result", PID)
    assert type(exc) is TransientError and "size cap" in str(exc), exc


# -- issue 15 item 12: the answer size cap, without buffering the rest ------------------------------
def test_an_endless_answer_is_refused_without_growing_memory(server):
    server.script(Answer(200, b'{"code": 200, "data": {"id": "', filler=64 << 20))
    tracemalloc.start()
    try:
        exc = call(server, "result", PID)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert type(exc) is TransientError, exc
    assert peak < 3 * MAX_ANSWER_BYTES, f"peak {peak:,} bytes"
    assert server.sent < 48 << 20, "the rest of the answer was left unread"


# -- issue 15 item 11: bounded waits -----------------------------------------------------------------
@pytest.mark.parametrize("value,expected", [("inf", 300.0), ("nan", None), ("-5", 0.0), ("86400", 300.0),
                                            ("Fri, 31 Dec 9999 23:59:59 GMT", 300.0), ("12", 12.0)])
def test_retry_after_from_the_server_is_clamped(server, value, expected):
    server.script(Answer(429, {"code": 429, "message": "slow down"}, headers={"Retry-After": value}))
    exc = call(server, "result", PID)
    assert isinstance(exc, RateLimitedError) and exc.retry_after == expected, (exc, exc.retry_after)


def test_a_slowloris_download_fails_as_transient(server, tmp_path):
    server.script(Answer(200, b"\0" * 1000, headers={"Content-Type": "video/mp4"}, trickle=0.2))
    started = time.monotonic()
    exc = _download(server, tmp_path, download_window=1.0)
    assert type(exc) is TransientError and "under the floor" in str(exc), exc
    assert time.monotonic() - started < 5


@pytest.mark.slow
def test_a_slowloris_download_fails_within_a_minute_with_the_default_floor(server, tmp_path):
    server.script(Answer(200, b"\0" * 100, headers={"Content-Type": "video/mp4"}, trickle=5.0))
    started = time.monotonic()
    exc = _download(server, tmp_path)
    assert type(exc) is TransientError and "under the floor" in str(exc), exc
    assert time.monotonic() - started < 65


def test_a_steady_large_download_is_not_cut(server, tmp_path):
    # 6 MB at ~1.5 MB/s over 4 windows of 1 s, each well above a 256 KiB/s floor.
    server.script(Answer(200, b"", headers={"Content-Type": "video/mp4"}, filler=6_000_000, rate=1_500_000))
    got = _download(server, tmp_path, download_window=1.0, download_min_rate=256 << 10)
    assert got.bytes == 6_000_000, got


def _download_counting_trips(server, tmp_path, size):
    """Download a ``size``-byte body; what it got, and every call sent to a thread on the way."""
    server.script(Answer(200, b"", headers={"Content-Type": "video/mp4"}, filler=size, rate=6_000_000))
    hops: list[object] = []

    class Counting(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            hops.append(fn)
            return super().submit(fn, *args, **kwargs)

    async def body():
        asyncio.get_running_loop().set_default_executor(Counting(max_workers=2))
        provider = WaveSpeedProvider(KEY, server.base_url)
        try:
            return await provider.download(f"{server.base_url}/v.mp4", tmp_path / "v.part", max_bytes=1 << 30)
        finally:
            await provider.close()

    got = run(body())
    assert got.bytes == size and (tmp_path / "v.part").stat().st_size == size, got
    return got, hops


def test_a_download_reaches_the_disk_in_few_thread_hops_and_bounded_writes(server, tmp_path, monkeypatch):
    """A body read in many small chunks is written about a megabyte at a time, in a thread; the
    file is created with its first piece and closed with its last, not on the event loop; a chunk,
    an open or a close costs no trip of its own."""
    size = 3_000_000
    created_in = []
    open_nofollow = fsguard.open_nofollow
    monkeypatch.setattr(fsguard, "open_nofollow", lambda path, *args: created_in.append(threading.get_ident())
                        or open_nofollow(path, *args))
    _, hops = _download_counting_trips(server, tmp_path, size)
    assert created_in and threading.get_ident() not in created_in, "created in a thread, not on the event loop"
    writes = [len(fn.args[2]) for fn in hops if isinstance(fn, partial) and fn.func.__name__.startswith("_write_")]
    assert len(hops) == len(writes) == 3, hops  # three pieces of ~1 MiB: created with the first, closed with the last
    assert max(writes) <= (1 << 20) + (1 << 18), writes  # bounded: never the whole body at once
    assert sum(writes) == size


def test_a_short_download_reaches_the_disk_in_one_thread_hop(server, tmp_path, monkeypatch):
    """A clip under a megabyte: created, written, fsynced and closed in one trip to a thread, and the
    download says it is durable (placing it makes no trip of its own)."""
    synced_in = []
    fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced_in.append((threading.get_ident(), os.fstat(fd).st_size))
                        or fsync(fd))
    got, hops = _download_counting_trips(server, tmp_path, 200_000)
    assert [fn.func.__name__ for fn in hops if isinstance(fn, partial)] == ["_write_last"], hops
    assert len(synced_in) == 1 and synced_in[0][0] != threading.get_ident(), synced_in
    assert synced_in[0][1] == 200_000 and got.synced, (synced_in, got)  # synced whole, before it was closed


def _download(server, tmp_path, **options):
    async def body():
        provider = WaveSpeedProvider(KEY, server.base_url, **options)
        try:
            return await provider.download(f"{server.base_url}/v.mp4", tmp_path / "v.part", max_bytes=1 << 30)
        except Exception as exc:  # noqa: BLE001 - the test inspects what was raised
            return exc
        finally:
            await provider.close()
    return run(body())


# -- issue 15 item 3: a key echoed by the server never reaches an error message -------------------
@pytest.mark.parametrize("method,args,answer", [
    ("submit", (MODEL, BODY), Answer(400, {"code": 400, "message": f"bad header Authorization: Bearer {KEY}"})),
    ("submit", (MODEL, BODY), Answer(500, f"upstream saw token={KEY}")),
    ("result", (PID,), Answer(200, f"<html>{KEY}</html>")),
    ("result", (PID,), Answer(401, {"code": 401, "message": f"key {KEY} is wrong"})),
    ("upload", (b"png", "a.png", "image/png"), Answer(200, {"code": 200, "data": {"note": KEY}})),
])
def test_a_key_echoed_by_the_server_is_masked(server, method, args, answer):
    server.script(answer)
    exc = call(server, method, *args)
    assert isinstance(exc, Exception) and "***" in str(exc), exc
    chain = []
    link = exc
    while link is not None:
        chain.append(link)
        link = link.__cause__
    for link in chain:
        assert KEY not in str(link) and KEY not in repr(link.args), link


# -- issue 14 item 6: an unreachable base URL fails fast -------------------------------------------
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_base_url_is_fatal_after_a_few_tries():
    async def body():
        provider = WaveSpeedProvider(KEY, f"http://127.0.0.1:{_closed_port()}")
        try:
            first = [await _raised(provider.upload(b"png", "a.png", "image/png")) for _ in range(2)]
            return first, await _raised(provider.submit(MODEL, BODY))
        finally:
            await provider.close()

    first, last = run(body())
    assert all(type(e) is TransientError for e in first), first
    assert type(last) is UnreachableError and isinstance(last, FatalError) and "cannot reach http://127.0.0.1:" in str(last)
    assert "check --base-url" in str(last)


def test_a_host_that_never_connected_for_the_time_limit_is_fatal_at_once():
    # A blackholed host costs a connect timeout per try: the time limit, not the count, ends it.
    async def body():
        provider = WaveSpeedProvider(KEY, f"http://127.0.0.1:{_closed_port()}", unreachable_seconds=0.0)
        try:
            return await _raised(provider.submit(MODEL, BODY))
        finally:
            await provider.close()

    assert type(run(body())) is UnreachableError


def test_connection_failures_stay_transient_once_the_api_answered(server):
    server.script(Answer(200, task()))

    async def body():
        provider = WaveSpeedProvider(KEY, server.base_url)
        try:
            await provider.result(PID)
            provider.base_url = f"http://127.0.0.1:{_closed_port()}"  # the server went away after answering
            return [await _raised(provider.result(PID)) for _ in range(5)]
        finally:
            await provider.close()

    assert all(type(e) is TransientError for e in run(body()))


async def _raised(coro) -> Exception:
    try:
        await coro
    except Exception as exc:  # noqa: BLE001 - the test inspects what was raised
        return exc
    raise AssertionError("no error raised")


def test_run_exits_3_fast_when_the_base_url_is_unreachable(tmp_path, capsys):
    make_images(tmp_path / "img", 2)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "x", "duration": 4}])
    started = time.monotonic()
    os.environ["WAVESPEED_API_KEY"] = KEY
    try:
        code = main(["run", str(manifest), "--out", str(tmp_path / "out"), "--base-url",
                     f"http://127.0.0.1:{_closed_port()}", "--yes"])
    finally:
        os.environ.pop("WAVESPEED_API_KEY", None)
    assert code == 3 and time.monotonic() - started < 10
    assert "cannot reach" in capsys.readouterr().err

