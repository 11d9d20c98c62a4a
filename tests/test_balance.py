"""The account balance: a warning before paying more than it holds, a clean halt when it runs out, and
"unknown" (never a stop) for a missing or odd answer."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from runner_helpers import make_images, run_cli, write_manifest

from batchgen.manifest import load_manifest
from batchgen.providers.replicate import ReplicateProvider
from batchgen.providers.wavespeed import WaveSpeedProvider
from batchgen.state import load

ANSWERS = {
    "plain": (200, '{"code": 200, "message": "success", "data": {"balance": 12.5, "currency": "USD"}}'),
    "text-number": (200, '{"code": 200, "data": {"balance": "7.25"}}'),
    "word": (200, '{"code": 200, "data": {"balance": "lots"}}'),
    "missing": (200, '{"code": 200, "data": {}}'),
    "infinite": (200, '{"code": 200, "data": {"balance": "inf"}}'),
    "boolean": (200, '{"code": 200, "data": {"balance": true}}'),
    "not-json": (200, "<html>hello</html>"),
    "not-found": (404, '{"code": 404, "message": "no such route"}'),
    "down": (503, '{"code": 503, "message": "upstream error"}'),
    "bad-key": (401, '{"code": 401, "message": "invalid key"}'),
}


async def read_balance(kind: str) -> float | None:
    """The client's balance read against a loopback server that answers ``kind``."""
    status, text = ANSWERS[kind]

    async def balance(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer k"
        return web.Response(status=status, text=text, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v3/balance", balance)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    provider = WaveSpeedProvider("k", f"http://127.0.0.1:{port}")
    try:
        return await provider.balance()
    finally:
        await provider.close()
        await runner.cleanup()


@pytest.mark.parametrize("kind, dollars", [("plain", 12.5), ("text-number", 7.25)])
def test_a_balance_answer_is_read_in_dollars(kind, dollars):
    assert asyncio.run(read_balance(kind)) == dollars


@pytest.mark.parametrize("kind", ["word", "missing", "infinite", "boolean", "not-json", "not-found", "down", "bad-key"])
def test_a_missing_or_odd_balance_answer_is_unknown_never_an_error(kind):
    assert asyncio.run(read_balance(kind)) is None


def test_replicate_has_no_balance_to_read():
    async def go():
        provider = ReplicateProvider("k", "http://127.0.0.1:9")
        try:
            return await provider.balance()
        finally:
            await provider.close()
    assert asyncio.run(go()) is None


def test_a_balance_below_the_run_warns_and_running_out_halts_cleanly_then_resumes(make_sim, tmp_path, capsys):
    make_images(tmp_path / "img", 3)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} turns", "duration": 4}])
    jobs = load_manifest(manifest)
    price = jobs.models.get(jobs.jobs[0].model).price(jobs.jobs[0].resolution, 4)
    sim = make_sim(balance=round(price * 1.5, 2))
    out = tmp_path / "out"
    assert run_cli(sim, manifest, out, "--concurrency", "1") == 3
    err = capsys.readouterr().err
    assert f"warning: the account balance is ${price * 1.5:.2f}, below the ${price * 3:.2f}" in err
    assert "insufficient balance" in err and "top up" in err
    assert "top up your account, then run the same command again" in err, "the server's advice, not twice"
    state = load(out / "state.jsonl")
    statuses = sorted(r.status.value for r in state.jobs.values())
    assert statuses == ["downloaded", "new", "new"], "nothing lost: the refused jobs are still to do"
    assert len(sim.ledger()["submissions"]) == 1

    async def top_up() -> None:
        sim.simulator.balance = 100.0

    sim.call(top_up)
    assert run_cli(sim, manifest, out) == 0
    assert len(sim.ledger()["submissions"]) == 3 and "warning: the account balance" not in capsys.readouterr().err
