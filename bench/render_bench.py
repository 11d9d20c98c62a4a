"""How long the simulator takes to render a clip, so its latency settings can be chosen honestly.

Run: python bench/render_bench.py [--repeats N]
Prints the median wall time of N renders for 4 s and 20 s clips at 720p and 1080p, then the cost of a cache hit.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batchgen.simulator.render import FPS, RenderCache, render_mp4  # noqa: E402

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
DURATIONS = (4, 20)


def product_photo() -> bytes:
    """A 1600x1200 JPEG, about what a product shot weighs, with detail for the encoder to chew on."""
    image = Image.new("RGB", (1600, 1200), "white")
    draw = ImageDraw.Draw(image)
    for x in range(0, 1600, 80):
        draw.line([(x, 0), (x, 1200)], fill=(200, 30, 30), width=6)
    draw.ellipse([500, 300, 1100, 900], fill=(20, 90, 200))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def median_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="renders per case; the median is shown (default 3)")
    args = parser.parse_args()
    photo = product_photo()
    print(f"render_mp4 at {FPS} fps, median of {args.repeats}")
    print(f"{'size':>6} {'clip':>5} {'wall s':>7} {'x realtime':>10} {'MiB':>6}")
    for name, (width, height) in SIZES.items():
        for duration in DURATIONS:
            size = len(render_mp4(photo, width, height, duration, 0, 1))
            seconds = median_seconds(lambda: render_mp4(photo, width, height, duration, 0, 1), args.repeats)
            print(f"{name:>6} {duration:>4}s {seconds:>7.3f} {duration / seconds:>10.1f} {size / 2**20:>6.2f}")
    cache = RenderCache()
    cache.get_or_render(photo, 1280, 720, 4, 0, 1)
    hit = median_seconds(lambda: cache.get_or_render(photo, 1280, 720, 4, 0, 1), max(args.repeats, 100))
    print(f"cache hit (720p 4s, in memory, includes hashing the image): {hit * 1000:.3f} ms")
    with tempfile.TemporaryDirectory() as folder:
        RenderCache(directory=folder).get_or_render(photo, 1280, 720, 4, 0, 1)
        # A fresh cache each time, so the clip comes from disk rather than from memory.
        disk = median_seconds(lambda: RenderCache(directory=folder).get_or_render(photo, 1280, 720, 4, 0, 1), 20)
    print(f"cache hit (720p 4s, from disk): {disk * 1000:.3f} ms")


if __name__ == "__main__":
    main()
