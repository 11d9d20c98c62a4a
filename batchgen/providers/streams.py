"""Reading HTTP bodies with bounds a hostile server cannot stretch: a size cap on API answers
(never buffered past it) and a throughput floor on downloads (a slowloris trickle fails, a
large file that flows steadily does not). Provider-neutral: any aiohttp-based provider can use it.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import aiofiles
import aiohttp

from ..errors import PermanentError, TransientError

_CHUNK = 1 << 16


async def read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes | None:
    """The whole body, or None (and the connection dropped, the rest unread) when it is, or
    says it is, larger than ``cap`` bytes."""
    if resp.content_length is not None and resp.content_length > cap:
        resp.close()
        return None
    body = bytearray()
    async for chunk in resp.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > cap:
            resp.close()
            return None
    return bytes(body)


class Meter:
    """What a download has received: its size, its sha256, and whether it keeps the floor of
    ``min_rate`` bytes per second over each ``window`` seconds."""

    def __init__(self, min_rate: float, window: float, max_bytes: int):
        self.written = 0
        self.digest = hashlib.sha256()
        self.min_rate, self.window, self.max_bytes = min_rate, window, max_bytes
        self.deadline = asyncio.get_running_loop().time() + window
        self._mark = 0

    def add(self, chunk: bytes) -> None:
        self.written += len(chunk)
        if self.written > self.max_bytes:
            raise PermanentError(f"download: the file passed the {self.max_bytes:,}-byte cap")
        self.digest.update(chunk)

    def check(self, now: float) -> None:
        """At each window's end: enough bytes came, or TransientError (fetch it again later)."""
        if now < self.deadline:
            return
        got = self.written - self._mark
        if got < self.min_rate * self.window:
            raise TransientError(f"download: only {got:,} bytes in {self.window:.0f} s, under the floor of "
                                 f"{self.min_rate:,.0f} bytes/s; the server stalls or trickles, so it is fetched "
                                 "again later")
        self._mark, self.deadline = self.written, now + self.window


async def stream_to_file(resp: aiohttp.ClientResponse, dest: Path, meter: Meter) -> None:
    """Write the body to ``dest`` as it arrives, never holding more than one chunk."""
    loop = asyncio.get_running_loop()
    async with aiofiles.open(dest, "wb") as fh:
        while True:
            window = asyncio.timeout_at(meter.deadline)
            try:
                async with window:
                    chunk = await resp.content.readany()
            except TimeoutError:
                if not window.expired():
                    raise  # the socket's own read timeout, not the end of a window
                chunk = None
            if chunk == b"":
                return
            if chunk:
                meter.add(chunk)
                await fh.write(chunk)
            meter.check(loop.time())
