"""Running the Replicate simulator: in the current event loop, or until Ctrl-C."""

from __future__ import annotations

from ..running import RunningSimulator, announce_until_cancelled, listen
from .config import ReplicateConfig
from .server import ReplicateSimulator


async def start(config: ReplicateConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> RunningSimulator:
    """Listen on ``host:port`` (0 picks a free port); the handle is the WaveSpeed simulator's."""
    return await listen(ReplicateSimulator(config), host, port)


async def serve_forever(config: ReplicateConfig, host: str = "127.0.0.1", port: int = 8001) -> None:
    """Run until cancelled, announcing where the simulator listens."""
    await announce_until_cancelled(await start(config, host, port), lambda url: (
        f"batchgen Replicate simulator listening on {url}",
        "This is a local SIMULATOR of Replicate's API: nothing is generated or billed for real. "
        f"Point a Replicate client at it with base_url={url}. Ctrl-C stops it."))
