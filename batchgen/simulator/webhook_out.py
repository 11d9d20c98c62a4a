"""Webhook deliveries as WaveSpeed sends them (shared/API.md "Webhooks").

When a task with ``?webhook=<url>`` ends, its prediction (the ``data`` fields plus ``input``) is
POSTed with ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``
``v3,<hex>``: HMAC-SHA256 over ``"{id}.{timestamp}.{raw body}"`` keyed by the account's secret
without its ``whsec_`` prefix (as text). A failed or non-2xx delivery is retried with doubling
waits, a bounded number of times; a fault rate sends some deliveries twice. Only loopback URLs
are ever contacted: the simulator sends nothing off this machine.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
from typing import Any, Callable
from urllib.parse import urlsplit

import aiohttp

log = logging.getLogger("batchgen.simulator")

SECRET_PREFIX = "whsec_"


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` is http(s) to this machine (localhost or a loopback address)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``webhook-signature`` header value for one delivery."""
    key = secret.removeprefix(SECRET_PREFIX).encode()
    mac = hmac.new(key, f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v3,{mac}"


class WebhookSender:
    """Signs and sends deliveries; every attempt is recorded for tests in ``attempts``."""

    def __init__(self, master: bytes, session: Callable[[], aiohttp.ClientSession], clock: Callable[[], float]):
        self._master = master
        self._session = session
        self._clock = clock
        self.attempts: list[dict[str, Any]] = []

    def secret(self, key_id: str) -> str:
        """The account's signing secret (stable per key and simulator seed)."""
        return SECRET_PREFIX + hmac.new(self._master, f"webhook:{key_id}".encode(), "sha256").hexdigest()[:32]

    async def deliver(self, url: str, key_id: str, payload: dict[str, Any], *, delivery_id: str,
                      attempts: int, backoff: float) -> bool:
        """Send one delivery until a 2xx answer or ``attempts`` tries; True when it was accepted."""
        if not is_loopback_url(url):
            log.warning("webhook for %s NOT sent to %s: the simulator only delivers to loopback URLs "
                        "(127.0.0.1, ::1, localhost); give a local receiver's URL", payload.get("id"), url)
            self.attempts.append({"id": delivery_id, "url": url, "status": "refused-not-loopback"})
            return False
        body = json.dumps(payload, separators=(",", ":")).encode()
        wait = backoff
        for attempt in range(1, max(1, attempts) + 1):
            if await self._attempt(url, key_id, body, delivery_id, attempt):
                return True
            if attempt < attempts:
                await asyncio.sleep(wait)
                wait *= 2
        return False

    async def _attempt(self, url: str, key_id: str, body: bytes, delivery_id: str, attempt: int) -> bool:
        timestamp = str(int(self._clock()))
        headers = {"Content-Type": "application/json", "webhook-id": delivery_id, "webhook-timestamp": timestamp,
                   "webhook-signature": signature(self.secret(key_id), delivery_id, timestamp, body)}
        record: dict[str, Any] = {"id": delivery_id, "url": url, "attempt": attempt}
        try:
            async with self._session().post(url, data=body, headers=headers, allow_redirects=False,
                                            timeout=aiohttp.ClientTimeout(total=10)) as resp:
                record["status"] = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            record["status"] = f"error: {type(exc).__name__}"
        self.attempts.append(record)
        return isinstance(record["status"], int) and 200 <= record["status"] < 300
