"""Running the Replicate simulator: in the current event loop, or until Ctrl-C."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..running import RunningSimulator
from .config import ReplicateConfig
from .server import ReplicateSimulator


async def start(config: ReplicateConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> RunningSimulator:
    """Listen on ``host:port`` (0 picks a free port); the handle is the WaveSpeed simulator's."""
    simulator = ReplicateSimulator(config)
    runner = web.AppRunner(simulator.app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    shown_host = f"[{host}]" if ":" in host else host
    return RunningSimulator(simulator, runner, f"http://{shown_host}:{runner.addresses[0][1]}")  # type: ignore[arg-type]


async def serve_forever(config: ReplicateConfig, host: str = "127.0.0.1", port: int = 8001) -> None:
    """Run until cancelled, announcing where the simulator listens."""
    running = await start(config, host, port)
    try:
        print(f"batchgen Replicate simulator listening on {running.base_url}", flush=True)
        print("This is a local SIMULATOR of Replicate's API: nothing is generated or billed for real. "
              f"Point a Replicate client at it with base_url={running.base_url}. Ctrl-C stops it.", flush=True)
        await asyncio.Event().wait()
    finally:
        await running.close()
