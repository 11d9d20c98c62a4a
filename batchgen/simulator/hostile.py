"""Hostile answers on demand, so tests can prove a client survives a server that misbehaves.

A test names a mode with ``POST /_sim/hostile`` (or ``Simulator.hostile.set``)::

    {"mode": "non-json"}                 every result read answers HTTP 200 with an HTML page
    {"mode": "huge", "count": 1}         only the next output download is hostile
    {"mode": null}                       back to normal
    {"output_base_url": "http://127.0.0.2:9000"}   advertise output URLs on another origin

Result-read modes: ``non-json`` (200 with HTML), ``no-data`` (an envelope without ``data``),
``file-scheme`` / ``ftp-scheme`` (a completed task whose output URL is file:// or ftp://).
Submit modes (the task is created and charged first, as a gateway that times out after the backend
took it): ``submit-500`` / ``submit-502`` / ``submit-504`` (that HTTP status with an error page),
``submit-non-json`` (200 with HTML), ``submit-code-500`` (200 with an envelope ``code: 500`` that
still holds ``data.id``).
Output-download modes: ``redirect-loop`` (302 to itself, forever), ``huge`` (Content-Length of
10 GB, then zeros trickled slowly), ``huge-stream`` (no Content-Length, zeros without end),
``html-content-type`` (200 with an HTML page instead of a video).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

from aiohttp import web

from .wire import envelope

RESULT_MODES = ("non-json", "no-data", "file-scheme", "ftp-scheme")
OUTPUT_MODES = ("redirect-loop", "huge", "huge-stream", "html-content-type")
SUBMIT_MODES = ("submit-500", "submit-502", "submit-504", "submit-non-json", "submit-code-500")
HUGE_BYTES = 10 * 1000**3
#: How long a hostile stream trickles before the simulator gives up on a client that keeps reading.
_TRICKLE_SECONDS = 30.0
_ZEROS = bytes(1 << 16)


@dataclass
class Hostile:
    mode: str | None = None
    #: How many more answers misbehave; None: every one until the mode is cleared.
    left: int | None = None
    output_base_url: str | None = None
    served: Counter = field(default_factory=Counter)

    def set(self, changes: Mapping[str, Any]) -> None:
        """Apply ``{"mode", "count", "output_base_url"}``; ValueError names a bad key or mode."""
        unknown = set(changes) - {"mode", "count", "output_base_url"}
        if unknown:
            raise ValueError(f"unknown hostile setting(s) {sorted(unknown)}; known: mode, count, output_base_url")
        if "mode" in changes:
            mode = changes["mode"]
            known = RESULT_MODES + OUTPUT_MODES + SUBMIT_MODES
            if mode is not None and mode not in known:
                raise ValueError(f"unknown hostile mode {mode!r}; known: {', '.join(known)}")
            count = changes.get("count")
            if count is not None and (not isinstance(count, int) or count < 1):
                raise ValueError(f"count must be a positive whole number, got {count!r}")
            self.mode, self.left = mode, count
        if "output_base_url" in changes:
            base = changes["output_base_url"]
            self.output_base_url = base.rstrip("/") if base else None

    def _take(self, modes: tuple[str, ...]) -> str | None:
        if self.mode not in modes or self.left == 0:
            return None
        if self.left is not None:
            self.left -= 1
        self.served[self.mode] += 1
        return self.mode

    def result_answer(self, data: dict[str, Any]) -> web.Response | None:
        """A hostile answer to a result read, or None to answer normally with ``data``."""
        if self.mode in ("file-scheme", "ftp-scheme") and data.get("status") != "completed":
            return None  # these need an output URL to poison, so they wait for the task to finish
        mode = self._take(RESULT_MODES)
        if mode == "non-json":
            return web.Response(status=200, text="<html><body>Service temporarily degraded</body></html>",
                                content_type="text/html")
        if mode == "no-data":
            return web.json_response({"code": 200, "message": "success"})
        if mode in ("file-scheme", "ftp-scheme"):
            url = "file:///etc/passwd" if mode == "file-scheme" else "ftp://files.example.invalid/video.mp4"
            return envelope(200, "success", {**data, "outputs": [url]})
        return None

    def submit_answer(self, data: dict[str, Any]) -> web.Response | None:
        """A hostile answer to a submit whose task was already created (and charged), or None."""
        mode = self._take(SUBMIT_MODES)
        if mode in ("submit-500", "submit-502", "submit-504"):
            status = int(mode.rsplit("-", 1)[1])
            return web.Response(status=status, text=f"<html><body>{status} Gateway error</body></html>",
                                content_type="text/html")
        if mode == "submit-non-json":
            return web.Response(status=200, text="<html><body>Accepted</body></html>", content_type="text/html")
        if mode == "submit-code-500":
            return web.json_response({"code": 500, "message": "internal error", "data": data})
        return None

    async def output_answer(self, request: web.Request) -> web.StreamResponse | None:
        """A hostile answer to an output download, or None to serve the video."""
        hop = request.query.get("hop")
        if hop is not None and hop.isdigit():
            # Still inside a loop started earlier: one download counts once, however many hops it makes.
            return _redirect_to_self(request, int(hop) + 1)
        mode = self._take(OUTPUT_MODES)
        if mode == "redirect-loop":
            return _redirect_to_self(request, 1)
        if mode == "html-content-type":
            return web.Response(text="<html><body>Please log in</body></html>", content_type="text/html")
        if mode in ("huge", "huge-stream"):
            return await _trickle(request, HUGE_BYTES if mode == "huge" else None)
        return None


def _redirect_to_self(request: web.Request, hop: int) -> web.Response:
    return web.Response(status=302, headers={"Location": f"{request.path}?hop={hop}"})


async def _trickle(request: web.Request, content_length: int | None) -> web.StreamResponse:
    """Promise a huge video and send zeros slowly until the client hangs up (or time runs out)."""
    response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
    if content_length is not None:
        response.content_length = content_length
    else:
        response.enable_chunked_encoding()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _TRICKLE_SECONDS
    try:
        await response.prepare(request)
        while loop.time() < deadline:
            await response.write(_ZEROS)
            await asyncio.sleep(0.001)
    except (ConnectionResetError, ConnectionError):
        return response
    if request.transport is not None:
        request.transport.close()
    return response
