"""Replicate's wire shapes: the prediction object, problem-details errors, signed webhook deliveries.

A prediction is the simulator's shared ``Task`` (same renderer, same timings) plus what Replicate
adds: a version, a webhook, start/completion times and the removal of its data after the TTL.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from ...webhooks import STANDARD_SCHEME
from ..tasks import COMPLETED, CREATED, FAILED, Task, decode_data_uri
from ..wire import ApiError

#: Replicate's statuses for the shared task states.
STATUS = {CREATED: "starting", "processing": "processing", COMPLETED: "succeeded"}
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
TERMINAL = frozenset({"succeeded", "failed", "canceled"})
#: Events a webhook may subscribe to (docs "Webhooks"); the simulator sends start and completed.
EVENTS = frozenset({"start", "output", "logs", "completed"})


@dataclass
class Run:
    """One Replicate prediction around the shared task."""

    task: Task
    seq: int
    version: str
    webhook: str | None = None
    #: Where the API was reached, for the ``urls`` a webhook delivery carries.
    origin: str = ""
    events: frozenset[str] = EVENTS
    started_at: str | None = None
    completed_at: str | None = None
    #: config.clock() when it ended; its data is removed ``output_ttl`` later.
    ended_clock: float | None = None
    canceled: bool = False

    def status(self) -> str:
        state = self.task.status()
        if state == FAILED:
            return "canceled" if self.canceled else "failed"
        return STATUS[state]

    def removed(self, now: float, ttl: float) -> bool:
        return self.ended_clock is not None and now >= self.ended_clock + ttl


def iso(epoch: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if epoch is None else epoch, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def prediction_json(run: Run, origin: str, output_url: str | None, removed: bool) -> dict[str, Any]:
    """The prediction object as GET /v1/predictions/{id} returns it (docs "Get a prediction")."""
    status, task = run.status(), run.task
    data: dict[str, Any] = {
        "id": task.id, "model": task.model, "version": run.version,
        "input": {} if removed else task.body,
        "logs": "", "output": output_url if status == "succeeded" and not removed else None,
        "data_removed": removed, "error": task.error if status == "failed" else None,
        "status": status, "source": "api", "created_at": task.created_at,
        "started_at": run.started_at, "completed_at": run.completed_at,
        "urls": {"get": f"{origin}/v1/predictions/{task.id}", "cancel": f"{origin}/v1/predictions/{task.id}/cancel"},
    }
    if status in TERMINAL:
        data["metrics"] = {"predict_time": round(task.inference_ms / 1000, 3)}
    return data


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    """An RFC 7807 error body, the shape the official client's ReplicateError reads."""
    body = {"type": f"https://replicate.com/docs/errors#{status}", "title": title, "status": status, "detail": detail}
    return web.json_response(body, status=status, headers=headers, content_type="application/problem+json")


def signed_delivery(secret: str, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A webhook body and its Standard Webhooks headers (``v1,<base64 HMAC-SHA256>``)."""
    body = json.dumps(payload).encode()
    delivery_id = "msg_" + secrets.token_hex(12)
    stamp = str(int(time.time()))
    return body, {
        "Content-Type": "application/json",
        "webhook-id": delivery_id,
        "webhook-timestamp": stamp,
        "webhook-signature": STANDARD_SCHEME.sign(secret, delivery_id, stamp, body),
    }


TITLES = {400: "Bad request", 401: "Unauthenticated", 404: "Not found", 422: "Input validation failed",
           429: "Too many requests", 500: "Internal server error", 502: "Bad gateway", 503: "Service unavailable"}


async def json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "the request body is not valid JSON; send a JSON object") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def check_create(request_body: dict[str, Any]) -> tuple[dict[str, Any], str | None, frozenset[str]]:
    """The input, the webhook and its events; 422 like Replicate's input validation otherwise."""
    body = request_body.get("input")
    if not isinstance(body, dict):
        raise ApiError(422, "input is required: send {\"input\": {...}}")
    image = body.get("image")
    if not isinstance(image, str) or not image.startswith(("http://", "https://", "data:")):
        raise ApiError(422, "input.image is required here: an http(s) URL or a data URI of the first frame")
    if image.startswith("data:"):
        try:
            decode_data_uri(image)
        except ValueError as exc:
            raise ApiError(422, f"input.image: {exc}") from exc
    if not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
        raise ApiError(422, "input.prompt is required")
    webhook = request_body.get("webhook")
    if webhook is not None and (not isinstance(webhook, str) or urlsplit(webhook).hostname not in _LOOPBACK):
        raise ApiError(422, "webhook: this simulator delivers only to loopback URLs (http://127.0.0.1:PORT/...)")
    events = request_body.get("webhook_events_filter") or sorted(EVENTS)
    if not isinstance(events, list) or not set(events) <= EVENTS:
        raise ApiError(422, f"webhook_events_filter must be a list of {', '.join(sorted(EVENTS))}")
    return body, webhook, frozenset(events)


def prefer_wait(header: str, cap: float) -> float:
    """Seconds a ``Prefer: wait`` / ``Prefer: wait=N`` create is held (docs: default 60, 1..60)."""
    name, _, value = header.strip().partition("=")
    if name.strip().lower() != "wait":
        return 0.0
    return min(cap, float(value)) if value.strip().isdigit() else min(cap, 60.0)


def encode_cursor(cursor: dict[str, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode().rstrip("=")


def cursor_from(raw: str | None) -> tuple[int | None, int | None]:
    if not raw:
        return None, None
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        return data.get("before"), data.get("after")
    except (ValueError, AttributeError) as exc:
        raise ApiError(400, f"the cursor {raw[:40]!r} is not one this server gave out") from exc
