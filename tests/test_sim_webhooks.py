"""API.md v2 "Webhooks" as the simulator sends them: ?webhook= on submit, the prediction plus input,
v3 HMAC signatures keyed by the secret endpoint's value, duplicates, bounded retries, loopback only."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time

from aiohttp import web

from batchgen.simulator import Faults
from batchgen.webhooks import WAVESPEED_SCHEME, verify
from sim_helpers import SEEDANCE_BODY, Api, with_api


class Receiver:
    """A local webhook endpoint that answers ``fail_first`` deliveries with 500, then 200."""

    def __init__(self, fail_first: int = 0):
        self.fail_first = fail_first
        self.seen: list[tuple[dict, bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((dict(request.headers), await request.read()))
        if len(self.seen) <= self.fail_first:
            return web.Response(status=500)
        return web.Response(text="ok")

    async def start(self) -> tuple[web.AppRunner, str]:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"


async def _submit_and_collect(api: Api, receiver: Receiver, deliveries: int, webhook: str | None = None):
    runner, url = await receiver.start()
    try:
        status, payload, _ = await api.post(f"/api/v3/bytedance/seedance-2.0/image-to-video?webhook={webhook or url}",
                                            SEEDANCE_BODY)
        assert status == 200, payload
        await api.wait(payload["data"]["id"])
        deadline = time.monotonic() + 10
        while len(receiver.seen) < deliveries and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # nothing more arrives than expected
        secret = (await api.get("/api/v3/webhook/secret"))[1]["data"]["secret"]
        return payload["data"], secret
    finally:
        await runner.cleanup()


def test_a_completed_task_is_posted_signed_as_the_docs_say(make_sim):
    sim = make_sim()
    receiver = Receiver()
    data, secret = with_api(sim.base_url, lambda api, _s: _submit_and_collect(api, receiver, 1))
    [(headers, raw)] = receiver.seen
    assert secret.startswith("whsec_")
    key = secret[len("whsec_"):].encode()  # the text after the prefix, not base64-decoded
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + raw
    assert headers["webhook-signature"] == "v3," + hmac.new(key, signed, hashlib.sha256).hexdigest()
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 30
    body = json.loads(raw)
    assert body["id"] == data["id"] and body["status"] == "completed" and body["outputs"]
    assert body["input"] == SEEDANCE_BODY and body["urls"]["get"].endswith(f"/predictions/{data['id']}")
    assert verify(WAVESPEED_SCHEME, secret, headers, raw, now=time.time()).id == headers["webhook-id"]


def test_a_failing_receiver_gets_bounded_retries(make_sim):
    sim = make_sim(webhook_backoff=0.05, webhook_attempts=3)
    receiver = Receiver(fail_first=10)
    with_api(sim.base_url, lambda api, _s: _submit_and_collect(api, receiver, 3))
    assert len(receiver.seen) == 3, "three attempts, then it gives up"
    assert len({h["webhook-id"] for h, _ in receiver.seen}) == 1
    assert [a["status"] for a in sim.ledger()["webhook_attempts"]] == [500, 500, 500]


def test_retries_stop_at_the_first_2xx(make_sim):
    sim = make_sim(webhook_backoff=0.05)
    receiver = Receiver(fail_first=1)
    with_api(sim.base_url, lambda api, _s: _submit_and_collect(api, receiver, 2))
    assert [a["status"] for a in sim.ledger()["webhook_attempts"]] == [500, 200]


def test_duplicate_deliveries_carry_the_same_id(make_sim):
    sim = make_sim(faults=Faults(rate_webhook_duplicate=1.0))
    receiver = Receiver()
    with_api(sim.base_url, lambda api, _s: _submit_and_collect(api, receiver, 2))
    assert len(receiver.seen) == 2 and receiver.seen[0][1] == receiver.seen[1][1]
    assert receiver.seen[0][0]["webhook-id"] == receiver.seen[1][0]["webhook-id"]


def test_a_failed_task_is_delivered_too(make_sim):
    sim = make_sim(faults=Faults(rate_fail=1.0))
    receiver = Receiver()
    with_api(sim.base_url, lambda api, _s: _submit_and_collect(api, receiver, 1))
    body = json.loads(receiver.seen[0][1])
    assert body["status"] == "failed" and body["error"]


def test_only_loopback_urls_are_contacted(make_sim, caplog):
    sim = make_sim()
    receiver = Receiver()
    with caplog.at_level(logging.WARNING, logger="batchgen.simulator"):
        with_api(sim.base_url, lambda api, _s: _submit_and_collect(api, receiver, 0,
                                                                   webhook="https://hooks.example.com/in"))
    assert receiver.seen == []
    assert sim.ledger()["webhook_attempts"] == [{"id": sim.ledger()["webhook_attempts"][0]["id"],
                                                 "url": "https://hooks.example.com/in",
                                                 "status": "refused-not-loopback"}]
    assert "only delivers to loopback URLs" in caplog.text
