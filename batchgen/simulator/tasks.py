"""One simulated prediction: its record, its status over time, and the job that produces its MP4.

Every random choice about a task (its id, generation time, whether it fails or falls back) is
drawn at submit time, so a run is reproducible for the same request order no matter how the
background jobs interleave.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
from PIL import Image

from ..models import output_size

log = logging.getLogger("batchgen.simulator")

CREATED, PROCESSING, COMPLETED, FAILED = "created", "processing", "completed", "failed"

# Worded like the content-policy rejections real video models return, so clients treat them as final.
MODERATION_ERROR = (
    "Your request was rejected by the content moderation system: the input image or prompt may "
    "violate the usage policy. Change the prompt or image and submit a new task."
)


@dataclass
class Task:
    id: str
    key_id: str
    model: str
    model_used: str
    body: dict[str, Any]
    body_hash: str
    price: float
    duration: int
    resolution: str
    created_at: str
    accepted_at: float
    #: Seconds of generation once a slot is free (drawn at submit time).
    gen: float
    fails: bool
    #: Epoch seconds on the simulator's clock, for the listing's filters and the 7-day retention.
    created_epoch: float = 0.0
    #: The error a failing task ends with.
    fail_error: str = MODERATION_ERROR
    #: Where to POST the prediction when it ends (``?webhook=`` on submit).
    webhook: str | None = None
    #: Scheme and host the task was submitted to, for its ``urls.get`` and output URLs.
    origin: str = ""
    #: Monotonic times, set when the task gets a slot; until then it waits in ``created``.
    start_at: float = math.inf
    finish_at: float = math.inf
    done: bool = False
    error: str = ""
    video: bytes | None = None
    video_sha256: str = ""
    inference_ms: int = 0
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def begin(self, now: float) -> None:
        """The task got a slot: it starts processing shortly and finishes ``gen`` seconds from now."""
        self.start_at = now + min(0.5, 0.1 * self.gen)
        self.finish_at = now + self.gen

    def status(self, now: float | None = None) -> str:
        if self.done:
            return FAILED if self.error else COMPLETED
        return PROCESSING if (time.monotonic() if now is None else now) >= self.start_at else CREATED

    def data(self, result_url: str, output_url: str | None) -> dict[str, Any]:
        """The wire ``data`` object for this task; ``output_url`` only when completed."""
        status = self.status()
        return {
            "id": self.id,
            "model": self.model_used if status == COMPLETED else self.model,
            "outputs": [output_url] if status == COMPLETED and output_url else [],
            "urls": {"get": result_url},
            "status": status,
            "created_at": self.created_at,
            "error": self.error if status == FAILED else "",
            "timings": {"inference": self.inference_ms if status in (COMPLETED, FAILED) else 0},
            "has_nsfw_contents": [False] if status == COMPLETED else [],
        }


def iso_at(epoch: float) -> str:
    """An epoch time as ISO 8601 UTC with milliseconds and Z, like ``2023-04-01T12:34:56.789Z``."""
    now = datetime.fromtimestamp(epoch, timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def motion_for(prompt: str, seed: int) -> int:
    """Which camera move a clip gets: stable for the same prompt and simulator seed."""
    return hashlib.sha256(f"{prompt}{seed}".encode("utf-8")).digest()[0] % 4


def decode_data_uri(uri: str) -> bytes:
    """Bytes of a base64 ``data:`` URI; ValueError when it is not one."""
    header, sep, payload = uri.partition(",")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        raise ValueError("the image data URI must look like data:image/png;base64,<base64 bytes>")
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"the image data URI is not valid base64: {exc}") from exc


def upright_size(image_bytes: bytes) -> tuple[int, int] | None:
    """Width and height as a viewer shows the picture (EXIF rotation applied), or None if unreadable."""
    try:
        with Image.open(io.BytesIO(image_bytes)) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - any unreadable picture is reported by the renderer instead
        return None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _aspect_size(aspect_ratio: Any) -> tuple[int, int] | None:
    """Seedance's aspect_ratio as a pseudo image size, so 9:16 renders portrait like the image would."""
    if not isinstance(aspect_ratio, str):
        return None
    w, sep, h = aspect_ratio.partition(":")
    return (int(w), int(h)) if sep and w.isdigit() and h.isdigit() else None


class ImageFetchError(Exception):
    """The task's image could not be obtained; the message is the task's error."""


async def fetch_image(
    url: str, local_lookup: Callable[[str], bytes | None], session: aiohttp.ClientSession
) -> bytes:
    """Bytes of the task's image: from a data URI, this simulator's upload store, or over HTTP."""
    if url.startswith("data:"):
        return decode_data_uri(url)
    local = local_lookup(urlsplit(url).path)
    if local is not None:
        return local
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as resp:
            if resp.status != 200:
                raise ImageFetchError(f"could not download the image {url}: HTTP {resp.status}; "
                                      "make sure the URL is public and still valid")
            return await resp.read()
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise ImageFetchError(f"could not download the image {url}: {exc or type(exc).__name__}; "
                              "make sure the URL is public and reachable") from exc


async def run_task(
    task: Task,
    seed: int,
    get_image: Callable[[str], Awaitable[bytes]],
    render: Callable[[bytes, int, int, int, int, int], Awaitable[bytes]],
) -> None:
    """Drive ``task`` to completed or failed; completed is only set once the MP4 bytes exist."""
    try:
        await _sleep_until(task.start_at)
        if task.fails:
            await _sleep_until(task.finish_at)
            task.error = task.fail_error
            return
        try:
            image = await get_image(task.body["image"])
        except (ImageFetchError, ValueError) as exc:
            task.error = str(exc)
            return
        size = _aspect_size(task.body.get("aspect_ratio")) or upright_size(image)
        width, height = output_size(task.resolution, size)
        motion = motion_for(str(task.body.get("prompt", "")), seed)
        try:
            video = await render(image, width, height, task.duration, motion, seed)
        except ValueError as exc:
            task.error = f"the image could not be used: {exc}"
            return
        await _sleep_until(task.finish_at)
        task.video = video
        task.video_sha256 = hashlib.sha256(video).hexdigest()
    except Exception as exc:  # noqa: BLE001 - a simulator bug must fail one task, not hang it
        log.exception("simulated task %s crashed", task.id)
        task.error = f"internal simulator error: {type(exc).__name__}: {exc}"
    finally:
        if not asyncio.current_task().cancelling():
            _finish(task)


def _finish(task: Task) -> None:
    task.inference_ms = int(round((max(time.monotonic(), task.finish_at) - task.accepted_at) * 1000))
    task.done = True
    task.finished.set()


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
