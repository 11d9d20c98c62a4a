"""Reading HTTP bodies with bounds a hostile server cannot stretch: a size cap on API answers
(never buffered past it) and a throughput floor on downloads (a slowloris trickle fails, a
large file that flows steadily does not). Provider-neutral: any aiohttp-based provider can use it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiofiles.os
import aiohttp

from ..errors import ExpiredLinkError, PermanentError, TransientError
from ..fsguard import create_fresh, write_fully
from .base import Download
from .wire import parse_retry_after

_CHUNK = 1 << 16
#: How much of a download is gathered before one write to the disk.
_FLUSH = 1 << 20
#: A download must bring at least this many bytes per second over each window (16 KiB/s:
#: a 1 GB video on a slow line passes, a trickle of a byte every few seconds does not).
DOWNLOAD_MIN_RATE = 16 << 10
DOWNLOAD_WINDOW = 30.0
_VIDEO_TYPES = ("video/", "application/octet-stream", "binary/octet-stream")


@dataclass(frozen=True)
class DownloadLimits:
    """How long a download's head may take, and the throughput floor its body must keep."""

    head_timeout: float = 60.0
    connect_timeout: float = 10.0
    min_rate: float = DOWNLOAD_MIN_RATE
    window: float = DOWNLOAD_WINDOW


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
    """Write the body to ``dest`` as it arrives, never holding more than ``_FLUSH`` bytes of it.

    The disk work runs in a thread (aiofiles), in as few trips there as can be: the file is created
    with its first ``_FLUSH`` bytes and closed with its last, so a body shorter than that (a clip of a
    few seconds) costs one trip. Opening, writing and closing it each in its own trip, as
    ``aiofiles.open`` does, handed the interpreter's lock back and forth between the event loop and
    the thread three times a video: in a Gold batch most of the runner's system time."""
    loop = asyncio.get_running_loop()
    pending = bytearray()
    fd: int | None = None
    try:
        while True:
            window = asyncio.timeout_at(meter.deadline)
            try:
                async with window:
                    chunk = await resp.content.readany()
            except TimeoutError:
                if not window.expired():
                    raise  # the socket's own read timeout, not the end of a window
                chunk = None
            if chunk:
                meter.add(chunk)
                pending += chunk
            if chunk == b"":
                last, fd = fd, None
                await _put_last(dest, last, bytes(pending))
                return
            if len(pending) >= _FLUSH:
                fd = await _put(dest, fd, bytes(pending))
                pending.clear()
            meter.check(loop.time())
    finally:
        if fd is not None:
            os.close(fd)


def _write_piece(dest: Path, fd: int | None, data: bytes) -> int:
    """Write ``data`` to the open ``fd``, or to ``dest`` created fresh (a link planted at its name is
    refused, never followed out of the output folder); the descriptor written to."""
    created = fd is None
    if fd is None:
        fd = create_fresh(dest)
    try:
        write_fully(fd, data)
    except BaseException:
        if created:
            os.close(fd)
        raise
    return fd


def _write_last(dest: Path, fd: int | None, data: bytes) -> None:
    """``_write_piece``, then the file fsynced and closed (closed also when either failed). Syncing in
    this trip to the thread spares the placing its own: a paid video is durable before it is renamed."""
    try:
        fd = _write_piece(dest, fd, data)
        os.fsync(fd)
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise
    os.close(fd)


_put = aiofiles.os.wrap(_write_piece)
_put_last = aiofiles.os.wrap(_write_last)


async def download_output(session: aiohttp.ClientSession, url: str, dest: Path, *, max_bytes: int,
                          limits: DownloadLimits) -> Download:
    """Stream an output file ``url`` into ``dest``, hashing as it goes; never buffers the whole file.
    The caller's session sends no Authorization header here: output URLs are signed or public."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise PermanentError(f"the output URL uses {scheme or 'no'} scheme ({url[:80]}); only http(s) is downloaded")
    meter = Meter(limits.min_rate, limits.window, max_bytes)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=limits.connect_timeout, sock_read=limits.head_timeout)
    try:
        # Bounded until the head arrived (a server may trickle it); the body by the meter's floor.
        async with asyncio.timeout(limits.head_timeout):
            resp = await session.get(url, max_redirects=5, timeout=timeout)
        async with resp:
            ctype, expected = checked_head(resp, max_bytes)
            await stream_to_file(resp, dest, meter)
    except aiohttp.TooManyRedirects as exc:
        raise PermanentError("download: too many redirects") from exc
    except aiohttp.InvalidURL as exc:
        raise PermanentError(f"download: invalid URL ({exc})") from exc
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
        raise TransientError(f"download: the body was cut after {meter.written:,} bytes "
                             f"({type(exc).__name__})") from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransientError(f"download: the connection failed ({type(exc).__name__}: {exc})") from exc
    if expected is not None and meter.written != expected:
        raise TransientError(f"download: got {meter.written:,} of {expected:,} bytes (truncated)")
    return Download(bytes=meter.written, sha256=meter.digest.hexdigest(), content_type=ctype,
                    length_checked=expected is not None, synced=True)


def checked_head(resp: aiohttp.ClientResponse, max_bytes: int) -> tuple[str, int | None]:
    """A download's content type and promised length, or the error its status and head mean."""
    if resp.status in (401, 403, 404, 410):
        raise ExpiredLinkError(f"download: HTTP {resp.status} (the link has expired)", status=resp.status)
    if resp.status == 429 or resp.status >= 500:
        raise TransientError(f"download: HTTP {resp.status}", status=resp.status,
                             retry_after=parse_retry_after(resp.headers))
    if resp.status != 200:
        raise PermanentError(f"download: HTTP {resp.status}", status=resp.status)
    ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype and not ctype.startswith(_VIDEO_TYPES):
        raise PermanentError(f"download: the server sent {ctype!r}, not a video")
    expected = resp.content_length
    if expected is not None and expected > max_bytes:
        raise PermanentError(f"download: the file is {expected:,} bytes, over the {max_bytes:,}-byte cap")
    return ctype, expected
