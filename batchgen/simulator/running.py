"""Ways to run the simulator: in the current event loop, in a background thread, or until Ctrl-C."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from .config import SimConfig, apply_changes
from .server import Simulator

if TYPE_CHECKING:
    from .persist import Keeper


class RunningSimulator:
    """A simulator listening on a socket in the current event loop."""

    def __init__(self, simulator: Simulator, runner: web.AppRunner, base_url: str):
        self.simulator = simulator
        self.base_url = base_url
        self._runner = runner

    def ledger(self) -> dict[str, Any]:
        return self.simulator.ledger_snapshot()

    async def close(self) -> None:
        await self._runner.cleanup()


async def listen(simulator: Any, host: str, port: int) -> RunningSimulator:
    """Serve ``simulator.app()`` on ``host:port`` (port 0 picks a free one) in the running event loop."""
    runner = web.AppRunner(simulator.app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    shown_host = f"[{host}]" if ":" in host else host
    return RunningSimulator(simulator, runner, f"http://{shown_host}:{runner.addresses[0][1]}")


async def announce_until_cancelled(running: RunningSimulator, banner: Callable[[str], tuple[str, ...]]) -> None:
    """Print ``banner(base_url)``'s lines, then serve until cancelled (Ctrl-C under asyncio.run)."""
    try:
        for line in banner(running.base_url):
            print(line, flush=True)
        await asyncio.Event().wait()
    finally:
        await running.close()


async def start(config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0,
                keep: "Keeper | None" = None) -> RunningSimulator:
    """Listen on ``host:port`` (port 0 picks a free one) in the running event loop; with ``keep``,
    remember uploads and tasks across processes (persist.py: the local provider's resume)."""
    running = await listen(Simulator(config), host, port)
    if keep is not None:
        keep.attach(running.simulator, running._runner.addresses[0][1])
    return running


async def serve_forever(config: SimConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run until cancelled (Ctrl-C under asyncio.run), announcing where the simulator listens."""
    await announce_until_cancelled(await start(config, host, port), lambda url: (
        f"batchgen simulator listening on {url}",
        "This is a local SIMULATOR of the WaveSpeed API: nothing is generated or billed for real. "
        f"Point batchgen at it with --base-url {url}. Ctrl-C stops it."))


class SimulatorThread:
    """The simulator on its own event loop in a background thread, for synchronous code.

    Use as a context manager: ``with SimulatorThread(SimConfig(gen_base=0.05)) as sim: sim.base_url``.
    """

    def __init__(self, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0, *,
                 starter: Callable[..., Awaitable[RunningSimulator]] | None = None,
                 apply: Callable[[Any, Any], None] = apply_changes):
        """``starter`` and ``apply`` run another API's simulator the same way (the Replicate one's
        ``start`` and ``apply_changes``)."""
        self.config = config or SimConfig()
        self._start, self._apply = starter or start, apply
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running: RunningSimulator | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return self._require().base_url

    @property
    def simulator(self) -> Simulator:
        return self._require().simulator

    def _require(self) -> RunningSimulator:
        if self._running is None:
            raise RuntimeError("the simulator thread is not running; use 'with SimulatorThread(...) as sim:'")
        return self._running

    def __enter__(self) -> "SimulatorThread":
        self._thread = threading.Thread(target=self._main, name="batchgen-simulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._running = loop.run_until_complete(self._start(self.config, self._host, self._port))
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that called __enter__
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._running.close())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def call(self, make_coro: Callable[[], Awaitable[Any]], timeout: float = 30) -> Any:
        """Run a coroutine on the simulator's loop and return its result (thread-safe)."""
        if self._loop is None:
            raise RuntimeError("the simulator thread is not running")
        return asyncio.run_coroutine_threadsafe(make_coro(), self._loop).result(timeout)

    def ledger(self) -> dict[str, Any]:
        """The ledger (as ``GET /_sim/ledger`` returns it), read safely from the simulator's loop."""
        return self.call(self._snapshot)

    async def _snapshot(self) -> dict[str, Any]:
        return self.simulator.ledger_snapshot()

    def reset(self) -> None:
        self.call(self.simulator.reset)

    def configure(self, **changes: Any) -> None:
        """Change the live config like ``POST /_sim/config`` (e.g. ``faults={"5xx": 1.0}``)."""
        async def apply() -> None:
            self._apply(self.simulator.config, changes)

        self.call(apply)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._running = None
