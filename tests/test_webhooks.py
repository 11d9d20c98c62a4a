"""The webhook listener over real loopback HTTP: signatures as API.md documents them, replays,
duplicates, and a 2xx only once the delivery was recorded."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json

import aiohttp
import pytest

from batchgen.webhooks import STANDARD_SCHEME, WAVESPEED_SCHEME, DeliveryRejected, WebhookListener, verify

SECRET = "whsec_s3cr3t-value"
NOW = 1_800_000_000.0


def wavespeed_headers(body: bytes, *, delivery_id="msg_1", stamp=NOW, secret=SECRET) -> dict[str, str]:
    """Signed by hand exactly as API.md describes, independently of the module under test."""
    key = secret.removeprefix("whsec_").encode()
    mac = hmac.new(key, f"{delivery_id}.{int(stamp)}.".encode() + body, hashlib.sha256).hexdigest()
    return {"webhook-id": delivery_id, "webhook-timestamp": str(int(stamp)), "webhook-signature": f"v3,{mac}"}


def test_wavespeed_signature_is_hex_hmac_keyed_by_the_secret_text():
    body = json.dumps({"id": "p1", "status": "completed"}).encode()
    headers = wavespeed_headers(body)
    assert verify(WAVESPEED_SCHEME, SECRET, headers, body, now=NOW).id == "msg_1"
    with pytest.raises(DeliveryRejected, match="signature"):
        verify(WAVESPEED_SCHEME, SECRET, headers, body + b" ", now=NOW)
    with pytest.raises(DeliveryRejected, match="signature"):
        verify(WAVESPEED_SCHEME, "whsec_other", headers, body, now=NOW)


def test_old_future_and_malformed_deliveries_are_refused():
    body = b"{}"
    with pytest.raises(DeliveryRejected, match="replay"):
        verify(WAVESPEED_SCHEME, SECRET, wavespeed_headers(body, stamp=NOW - 301), body, now=NOW)
    with pytest.raises(DeliveryRejected, match="replay"):
        verify(WAVESPEED_SCHEME, SECRET, wavespeed_headers(body, stamp=NOW + 301), body, now=NOW)
    with pytest.raises(DeliveryRejected, match="missing"):
        verify(WAVESPEED_SCHEME, SECRET, {"webhook-id": "x"}, body, now=NOW)
    bad_stamp = {**wavespeed_headers(body), "webhook-timestamp": "inf"}
    with pytest.raises(DeliveryRejected):
        verify(WAVESPEED_SCHEME, SECRET, bad_stamp, body, now=NOW)


def test_standard_webhooks_scheme_uses_the_base64_decoded_key_and_accepts_one_of_several_signatures():
    raw_key = b"0123456789abcdef0123456789abcdef"
    secret = "whsec_" + base64.b64encode(raw_key).decode()
    body = b'{"id":"r1"}'
    mac = base64.b64encode(hmac.new(raw_key, f"m1.{int(NOW)}.".encode() + body, hashlib.sha256).digest()).decode()
    headers = {"webhook-id": "m1", "webhook-timestamp": str(int(NOW)), "webhook-signature": f"v1,old v1,{mac}"}
    assert verify(STANDARD_SCHEME, secret, headers, body, now=NOW).body == body


async def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body, headers=headers) as resp:
            return resp.status


def test_listener_records_each_delivery_once_and_refuses_forgeries():
    async def scenario():
        seen: list[str] = []

        async def handler(delivery):
            seen.append(delivery.id)

        listener = WebhookListener(WAVESPEED_SCHEME, SECRET, handler, path="/hook", clock=lambda: NOW)
        url = await listener.start()
        try:
            assert url.startswith("http://127.0.0.1:")
            body = b'{"id":"p1","status":"completed"}'
            good = wavespeed_headers(body)
            statuses = await asyncio.gather(*(_post(url, body, good) for _ in range(3)))
            forged = {**good, "webhook-signature": "v3," + "0" * 64}
            other = wavespeed_headers(body, delivery_id="msg_2")
            return (statuses, await _post(url, body, forged), await _post(url, body, other),
                    await _post(url.replace("/hook", "/elsewhere"), body, other), seen, listener.rejected)
        finally:
            await listener.close()

    statuses, forged, second, wrong_path, seen, rejected = asyncio.run(scenario())
    assert statuses == [204, 204, 204] and seen == ["msg_1", "msg_2"], "duplicates are handled once"
    assert forged == 401 and rejected == 1
    assert second == 204 and wrong_path in (404, 405)


def test_a_delivery_that_could_not_be_recorded_is_answered_500_and_taken_when_sent_again():
    async def scenario():
        calls = []

        async def handler(delivery):
            calls.append(delivery.id)
            if len(calls) == 1:
                raise OSError("disk full")

        listener = WebhookListener(WAVESPEED_SCHEME, SECRET, handler, clock=lambda: NOW)
        url = await listener.start()
        try:
            body = b'{"id":"p9"}'
            first = await _post(url, body, wavespeed_headers(body))
            again = await _post(url, body, wavespeed_headers(body))
            return first, again, calls
        finally:
            await listener.close()

    first, again, calls = asyncio.run(scenario())
    assert (first, again) == (500, 204) and calls == ["msg_1", "msg_1"]
