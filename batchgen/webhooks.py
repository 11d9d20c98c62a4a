"""Receiving webhook deliveries: a listener that verifies each one before anything changes.

A delivery counts only when its signature verifies with the provider's secret and its
timestamp is recent (a replayed or forged request changes nothing and is logged). Each
delivery id is handled once, however often the provider sends it. The answer is 2xx only
after the handler has returned (for the runner: after the state line is written), so a crash
in between makes the provider deliver again rather than lose the result.

The signing schemes differ per provider only in how the secret becomes a key and how the
MAC is written; both sign ``"{webhook-id}.{webhook-timestamp}.{raw body}"`` with HMAC-SHA256:
- WaveSpeed (shared/API.md, docs "Verifying Webhooks"): ``v3,<hex>``, key = the secret
  without its ``whsec_`` prefix, as text (not base64-decoded).
- Standard Webhooks (Replicate): ``v1,<base64>``, key = the base64-decoded secret.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import math
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Mapping

from aiohttp import web

log = logging.getLogger("batchgen.webhooks")

#: Deliveries older (or further in the future) than this are refused (API.md: 300 s).
MAX_AGE = 300.0
#: A delivery is one prediction: far below this.
MAX_BODY = 4 << 20


@dataclass(frozen=True)
class SignatureScheme:
    """How one provider signs its deliveries."""

    version: str
    key: Callable[[str], bytes]
    encode: Callable[[bytes], str]

    def sign(self, secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
        message = f"{delivery_id}.{timestamp}.".encode() + body
        return f"{self.version},{self.encode(hmac.new(self.key(secret), message, hashlib.sha256).digest())}"

    def matches(self, secret: str, delivery_id: str, timestamp: str, body: bytes, header: str) -> bool:
        """The header may carry several space-separated signatures (key rotation): one must match."""
        expected = self.sign(secret, delivery_id, timestamp, body)
        return any(hmac.compare_digest(expected, candidate) for candidate in header.split())


def _standard_key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError as exc:
        raise DeliveryRejected("the webhook secret is not base64; fetch it again from the provider") from exc


WAVESPEED_SCHEME = SignatureScheme("v3", lambda secret: secret.removeprefix("whsec_").encode(), bytes.hex)
STANDARD_SCHEME = SignatureScheme("v1", _standard_key, lambda mac: base64.b64encode(mac).decode())


class DeliveryRejected(Exception):
    """A request to the listener that is not a genuine, fresh delivery; nothing is recorded."""


@dataclass(frozen=True)
class Delivery:
    """A verified delivery: its id and the raw body (the provider parses it)."""

    id: str
    timestamp: float
    body: bytes


def verify(scheme: SignatureScheme, secret: str, headers: Mapping[str, str], body: bytes, *,
           now: float, max_age: float = MAX_AGE) -> Delivery:
    """Check one delivery's headers and signature; DeliveryRejected says why not."""
    delivery_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signature = headers.get("webhook-signature", "")
    if not (delivery_id and stamp and signature):
        raise DeliveryRejected("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent = float(stamp)
    except ValueError as exc:
        raise DeliveryRejected(f"webhook-timestamp {stamp[:40]!r} is not a number") from exc
    if not math.isfinite(sent) or abs(now - sent) > max_age:
        raise DeliveryRejected(f"webhook-timestamp is {now - sent:.0f} s from now (limit {max_age:.0f} s): a replay?")
    if not scheme.matches(secret, delivery_id, stamp, body, signature):
        raise DeliveryRejected("the signature does not match the provider's secret")
    return Delivery(id=delivery_id, timestamp=sent, body=body)


Handler = Callable[[Delivery], Awaitable[None]]


class WebhookListener:
    """An aiohttp server that hands each verified delivery to ``handler`` exactly once.

    It binds where it is told (loopback by default) and serves one path; everything else is 404."""

    def __init__(self, scheme: SignatureScheme, secret: str, handler: Handler, *, host: str = "127.0.0.1",
                 port: int = 0, path: str = "/", clock: Callable[[], float] = time.time, max_age: float = MAX_AGE):
        self.scheme, self.secret, self.handler = scheme, secret, handler
        self.host, self.port, self.path = host, port, "/" + path.lstrip("/")
        self.clock, self.max_age = clock, max_age
        self.handled: set[str] = set()
        self.rejected = 0
        self._busy: dict[str, asyncio.Lock] = {}
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        """Listen; returns the local URL (the public one, behind a proxy or tunnel, is the user's)."""
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(self.path, self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return f"http://{self.host}:{self.port}{self.path}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            delivery = verify(self.scheme, self.secret, request.headers, body, now=self.clock(), max_age=self.max_age)
        except DeliveryRejected as exc:
            self.rejected += 1
            log.warning("webhook from %s refused: %s", request.remote, exc)
            return web.Response(status=401, text="refused\n")
        lock = self._busy.setdefault(delivery.id, asyncio.Lock())
        async with lock:  # a duplicate arriving while the first is being recorded waits for it
            if delivery.id not in self.handled:
                try:
                    await self.handler(delivery)
                except Exception as exc:  # noqa: BLE001 - answered 500, the provider delivers again
                    log.error("webhook %s could not be recorded (%s: %s); the provider will deliver it again",
                              delivery.id, type(exc).__name__, exc)
                    return web.Response(status=500, text="not recorded\n")
                self.handled.add(delivery.id)
        self._busy.pop(delivery.id, None)
        return web.Response(status=204)
