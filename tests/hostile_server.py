"""A small lying HTTP server on loopback that answers each request by a script.

    with HostileServer() as server:
        server.script(Answer(500, {"code": 500, "data": {"id": "abc"}}), Answer(200, ok))
        ... a client talks to server.base_url ...
        server.requests   # what arrived: (method, path with query, headers, body)

Answers are served in order, one per request, whatever the path; the last one repeats. An answer
can wait before its head (``delay``), trickle its body a byte at a time (``trickle`` seconds per
byte), stream ``filler`` extra bytes after its body, announce a false Content-Length, or drop the
connection after ``reset_after`` body bytes. The server runs on its own event loop in a thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_FILL = b"x" * (1 << 16)


@dataclass
class Answer:
    status: int = 200
    #: bytes or text as is; anything else is sent as JSON.
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    trickle: float = 0.0
    filler: int = 0
    #: The Content-Length to announce, true or not; None: the true one (chunked with filler or trickle).
    content_length: int | None = None
    reset_after: int | None = None
    #: Bytes per second for the filler (0: as fast as the socket takes them).
    rate: float = 0.0

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


class HostileServer:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.sent = 0
        self._answers: deque[Answer] = deque([Answer(404, {"code": 404, "message": "no script"})])
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="hostile-server", daemon=True)

    def script(self, *answers: Answer) -> None:
        self._answers = deque(answers)

    def __enter__(self) -> "HostileServer":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the hostile server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs, dict(request.headers), await request.read()))
        answer = self._answers.popleft() if len(self._answers) > 1 else self._answers[0]
        await asyncio.sleep(answer.delay)
        body = answer.payload()
        response = web.StreamResponse(status=answer.status, headers=answer.headers)
        response.content_type = answer.headers.get("Content-Type", "application/json")
        if answer.content_length is not None:
            response.content_length = answer.content_length
        elif answer.filler or answer.trickle:
            response.enable_chunked_encoding()
        else:
            response.content_length = len(body)
        try:
            await response.prepare(request)
            await self._body(request, response, answer, body)
        except ConnectionError:
            return response
        if answer.reset_after is not None or answer.content_length is not None:
            request.transport.close()  # a lie about the length, or a cut: end it where the client sees it
        else:
            await response.write_eof()
        return response

    async def _body(self, request: web.Request, response: web.StreamResponse, answer: Answer, body: bytes) -> None:
        limit = answer.reset_after if answer.reset_after is not None else len(body) + answer.filler
        chunks = (body[i:i + 1] for i in range(len(body))) if answer.trickle else iter([body])
        written = 0
        for chunk in chunks:
            chunk = chunk[:limit - written]
            await response.write(chunk)
            written += len(chunk)
            self.sent += len(chunk)
            await asyncio.sleep(answer.trickle)
        loop = asyncio.get_running_loop()
        started = loop.time()
        while written < limit and request.transport is not None and not request.transport.is_closing():
            chunk = _FILL[:limit - written]
            await response.write(chunk)
            written += len(chunk)
            self.sent += len(chunk)
            if answer.rate:
                await asyncio.sleep(max(0.0, started + written / answer.rate - loop.time()))
