"""An aiohttp application served on loopback from its own event loop in a background thread, for tests
whose code under test is synchronous or runs its own loop.

    class Mine(ThreadedServer):
        def app(self) -> web.Application: ...
    with Mine() as server: ... server.base_url ...
"""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web


class ThreadedServer:
    """Subclasses build ``app()``; ``on_start``/``on_stop`` run on the server's loop around its life."""

    #: Cancel a handler whose client went away (what a server under a killed client sees).
    handler_cancellation = False

    def __init__(self, host: str = "127.0.0.1", name: str = "test-server") -> None:
        self.host = host
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def app(self) -> web.Application:
        raise NotImplementedError

    async def on_start(self) -> None:
        """Runs on the server's loop once it listens."""

    async def on_stop(self) -> None:
        """Runs on the server's loop before it stops listening."""

    def __enter__(self):
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start")
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
            self._loop.run_until_complete(self.on_stop())
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handler_cancellation=self.handler_cancellation)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, 0).start()
        self.base_url = f"http://{self.host}:{self._runner.addresses[0][1]}"
        await self.on_start()
