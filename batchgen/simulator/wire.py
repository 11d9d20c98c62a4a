"""The envelope every simulated API answer wears, and the error that produces one."""

from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web


class ApiError(Exception):
    """Answer this request with an error envelope (HTTP status = envelope code)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def envelope(code: int, message: str, data: Any = None, headers: dict[str, str] | None = None) -> web.Response:
    body = {"code": code, "message": message, "data": data if data is not None else {}}
    return web.json_response(body, status=code, headers=headers)


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body, which must be a JSON object (400 otherwise)."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "the request body is not valid JSON; send a JSON object") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def retry_after_headers(seconds: float) -> dict[str, str]:
    """Both spellings clients look for: whole seconds (HTTP) and milliseconds."""
    return {"Retry-After": str(math.ceil(seconds)), "retry-after-ms": str(round(seconds * 1000))}


def signed_url_error(status: int, code: str, message: str) -> web.Response:
    """An object-store style XML error, like an expired pre-signed URL answers."""
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return web.Response(status=status, text=xml, content_type="application/xml")
