"""The simulator's output video: a real H.264/AAC MP4 made from the submitted image.

A user who opens a simulated result should see their own product move, so each clip is a slow
Ken-Burns pan or zoom over the image with a quiet seeded sine pad underneath. Rendering is
deterministic (same inputs, same bytes) so the simulator can cache results and tests can compare them.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import io
import math
import os
import queue
import random
import threading
from collections import OrderedDict
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import av
from PIL import Image, ImageOps

__all__ = ["FPS", "MOTIONS", "SAMPLE_RATE", "RenderCache", "render_mp4"]

T = TypeVar("T")

# Low frame rate keeps a 4 s 720p clip near a second on two cores; the motion is slow enough to stay smooth.
FPS = 15
SAMPLE_RATE = 24_000
MOTIONS = ("push in", "push in to the top", "push in to the left", "push in to the right")
#: Where each motion's last viewport sits inside the fitted picture (0 = left/top, 1 = right/bottom).
_ANCHORS = ((0.5, 0.5), (0.5, 0.0), (0.0, 0.5), (1.0, 0.5))

# How far the camera zooms or how much headroom a pan has: enough to see, small enough to stay calm.
_ZOOM = 1.18
_AAC_FRAME = 1024
_FADE_SECONDS = 0.6
_VOLUME = 0.12


def render_mp4(image_bytes: bytes, width: int, height: int, duration: int, motion: int, seed: int) -> bytes:
    """Encode ``duration`` seconds of ``width`` x ``height`` H.264 + AAC video moving over the image.

    ``motion`` picks one of MOTIONS (taken modulo their count); ``seed`` shapes the audio pad.
    Raises ValueError for an image Pillow cannot decode or for sizes H.264/yuv420p cannot hold.
    """
    _check_geometry(width, height, duration)
    source = _prescaled_source(_decode_image(image_bytes, width, height), width, height)
    buffer = io.BytesIO()
    # bitexact keeps library version strings out of the file so the bytes depend only on the inputs.
    with av.open(buffer, mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "28", "tune": "zerolatency"}
        # A fixed thread count: x264's output depends on it, and the cache must not depend on the machine.
        video.codec_context.thread_count = 2
        audio = container.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "mono"
        audio.codec_context.flags |= av.codec.context.Flags.bitexact
        # Scaling runs in a helper thread while x264 encodes here; both release the GIL, so the two
        # cores overlap and a clip renders about 35% faster, with identical bytes.
        frames = _frames(source, width, height, duration * FPS, motion % len(MOTIONS))
        with contextlib.closing(_prefetch(frames, depth=4)) as pictures:
            _write_interleaved(container, video, pictures, audio, _audio_frames(_pad_samples(duration, seed)))
    return buffer.getvalue()


def _check_geometry(width: int, height: int, duration: int) -> None:
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ValueError(f"cannot render a {width}x{height} video: width and height must be even and at least 16")
    if duration < 1:
        raise ValueError(f"cannot render a {duration} s video: the duration must be at least 1 second")


def _decode_image(image_bytes: bytes, width: int, height: int) -> Image.Image:
    try:
        with Image.open(io.BytesIO(image_bytes)) as image:
            # A JPEG can decode straight at 1/2, 1/4 or 1/8 size: a 12 MP phone photo loads several
            # times faster. Either orientation is allowed for, since EXIF may rotate the picture.
            scale = _ZOOM * max(width / image.width, height / image.height, width / image.height, height / image.width)
            image.draft(None, (math.ceil(image.width * scale), math.ceil(image.height * scale)))
            image.load()
            # Phone photos store rotation in EXIF; without this the product would lie on its side.
            upright = ImageOps.exif_transpose(image)
            return upright.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(
            f"the submitted image ({len(image_bytes)} bytes) cannot be decoded as a picture: {exc}; "
            "send a PNG, JPEG or WebP file"
        ) from exc


def _prescaled_source(image: Image.Image, width: int, height: int) -> Image.Image:
    """Cover-fit the image once at the largest zoom, so each frame is only a small downscale."""
    scale = max(width / image.width, height / image.height) * _ZOOM
    size = (max(width, math.ceil(image.width * scale)), max(height, math.ceil(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _crop_box(source: Image.Image, width: int, height: int, motion: int, t: float) -> tuple[float, ...]:
    """The source rectangle shown at time fraction ``t`` (0..1) for the given motion.

    Every motion starts on the plain fitted picture (the whole cover-fitted image, centred), as real
    image-to-video output opens on its source image, then pushes in towards its anchor."""
    ease = t * t * (3 - 2 * t)
    # The viewport at zoom 1 covers the whole cover-fitted image; at _ZOOM it covers 1/_ZOOM of it.
    full_w = min(source.width, source.height * width / height)
    full_h = full_w * height / width
    zoom = 1 + (_ZOOM - 1) * ease
    view_w, view_h = full_w / zoom, full_h / zoom
    anchor_x, anchor_y = _ANCHORS[motion]
    centre_x = source.width / 2 + (anchor_x - 0.5) * (full_w - full_w / _ZOOM) * ease
    centre_y = source.height / 2 + (anchor_y - 0.5) * (full_h - full_h / _ZOOM) * ease
    left, top = centre_x - view_w / 2, centre_y - view_h / 2
    return (left, top, left + view_w, top + view_h)


def _write_interleaved(
    container, video, pictures: Iterator[av.VideoFrame], audio, sounds: Iterator[av.AudioFrame]
) -> None:
    """Mux audio alongside video in time order, so players reading the file front to back need no seeking."""
    pending = next(sounds, None)
    for picture in pictures:
        container.mux(video.encode(picture))
        horizon = (picture.pts + 1) / FPS
        while pending is not None and pending.pts / SAMPLE_RATE < horizon:
            container.mux(audio.encode(pending))
            pending = next(sounds, None)
    while pending is not None:
        container.mux(audio.encode(pending))
        pending = next(sounds, None)
    container.mux(video.encode(None))
    container.mux(audio.encode(None))


def _frames(source: Image.Image, width: int, height: int, frames: int, motion: int) -> Iterator[av.VideoFrame]:
    for index in range(frames):
        t = index / (frames - 1) if frames > 1 else 0.0
        left, top, right, bottom = _crop_box(source, width, height, motion, t)
        # An integer crop plus one swscale pass is about three times faster than Pillow's sub-pixel
        # resize; the rounding moves the picture by under half a pixel, which nobody sees at this speed.
        crop = source.crop((round(left), round(top), round(right), round(bottom)))
        frame = av.VideoFrame.from_image(crop).reformat(
            width=width, height=height, format="yuv420p", interpolation="BILINEAR"
        )
        frame.pts = index
        frame.time_base = Fraction(1, FPS)
        yield frame


def _prefetch(items: Iterator[T], depth: int) -> Iterator[T]:
    """Run ``items`` in a background thread, ``depth`` ahead; its exceptions surface here."""
    slots: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                slots.put((True, item))
            slots.put((False, None))
        except BaseException as exc:
            slots.put((False, exc))

    worker = threading.Thread(target=produce, name="render-frames", daemon=True)
    worker.start()
    try:
        while True:
            more, item = slots.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        # Empty the queue so a producer blocked on put() can see the stop flag and end.
        while worker.is_alive():
            try:
                slots.get(timeout=0.05)
            except queue.Empty:
                pass
        worker.join()


def _pad_samples(duration: int, seed: int) -> array.array:
    """A quiet low chord with fade in/out; every partial is a whole number of Hz, so one second repeats."""
    rng = random.Random(seed)
    root = rng.choice((55, 62, 65, 73, 82, 98))
    partials = [(root, 1.0), (root * 3 // 2, 0.5), (root * 2, 0.3), (root * 5 // 2, 0.15)]
    phases = [rng.uniform(0, 2 * math.pi) for _ in partials]
    norm = _VOLUME / sum(level for _, level in partials)
    second = array.array(
        "f",
        (
            norm * sum(level * math.sin(2 * math.pi * freq * n / SAMPLE_RATE + phase)
                       for (freq, level), phase in zip(partials, phases))
            for n in range(SAMPLE_RATE)
        ),
    )
    samples = second * duration
    fade = min(int(_FADE_SECONDS * SAMPLE_RATE), len(samples) // 2)
    for n in range(fade):
        gain = n / fade
        samples[n] *= gain
        samples[-1 - n] *= gain
    return samples


def _audio_frames(samples: array.array) -> Iterator[av.AudioFrame]:
    for start in range(0, len(samples), _AAC_FRAME):
        chunk = samples[start:start + _AAC_FRAME]
        frame = av.AudioFrame(format="flt", layout="mono", samples=len(chunk))
        frame.planes[0].update(chunk.tobytes())
        frame.sample_rate = SAMPLE_RATE
        frame.pts = start
        frame.time_base = Fraction(1, SAMPLE_RATE)
        yield frame


class RenderCache:
    """Memoises render_mp4 in memory (LRU by count) and optionally on disk; safe across threads.

    Two threads asking for the same clip at once render it once: the second waits on the key's lock.
    """

    def __init__(self, max_items: int = 256, directory: str | os.PathLike | None = None):
        self.max_items = max_items
        self.directory = Path(directory) if directory is not None else None
        self.hits = 0
        self.renders = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[str, list] = {}
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def get_or_render(
        self, image_bytes: bytes, width: int, height: int, duration: int, motion: int, seed: int
    ) -> bytes:
        key = self._key(image_bytes, width, height, duration, motion, seed)
        key_lock = self._acquire_key_lock(key)
        try:
            with key_lock:
                data = self._lookup(key)
                if data is None:
                    data = render_mp4(image_bytes, width, height, duration, motion, seed)
                    self._store_on_disk(key, data)
                    with self._lock:
                        self.renders += 1
                self._remember(key, data)
        finally:
            self._release_key_lock(key)
        return data

    def _acquire_key_lock(self, key: str) -> threading.Lock:
        with self._lock:
            entry = self._key_locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
            return entry[0]

    def _release_key_lock(self, key: str) -> None:
        # Counting users lets the per-key lock go away with its last user, so the dict does not grow forever.
        with self._lock:
            entry = self._key_locks[key]
            entry[1] -= 1
            if entry[1] == 0:
                del self._key_locks[key]

    @staticmethod
    def _key(image_bytes: bytes, width: int, height: int, duration: int, motion: int, seed: int) -> str:
        digest = hashlib.sha256(image_bytes).hexdigest()
        return f"{digest}-{width}x{height}-{duration}s-m{motion}-s{seed}"

    def _lookup(self, key: str) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return data
        if self.directory is None:
            return None
        try:
            data = (self.directory / f"{key}.mp4").read_bytes()
        except FileNotFoundError:
            return None
        with self._lock:
            self.hits += 1
        return data

    def _remember(self, key: str, data: bytes) -> None:
        with self._lock:
            self._items[key] = data
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def _store_on_disk(self, key: str, data: bytes) -> None:
        if self.directory is None:
            return
        final = self.directory / f"{key}.mp4"
        partial = final.with_name(f"{final.name}.{os.getpid()}.{threading.get_ident()}.part")
        try:
            partial.write_bytes(data)
            # Rename is atomic, so a reader (or a crash) never sees half a clip under the final name.
            os.replace(partial, final)
        except OSError:
            partial.unlink(missing_ok=True)
            raise
