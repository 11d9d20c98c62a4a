"""How long validating a big manifest takes: 10,000 CSV rows over 50 images of ~2 MB.

    python bench/manifest_bench.py [--rows N] [--images N] [--image-mb N]

Prints one table: a cold load (nothing cached: every image is sniffed and hashed), a load
in the same process (in-memory cache), and a load in a "new process" (memory cleared) that
reads the persistent ImageCache instead of hashing. Everything happens in a temp folder.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batchgen.images import ImageCache, clear_memory_cache  # noqa: E402
from batchgen.manifest import load_manifest  # noqa: E402


def build(folder: Path, rows: int, images: int, image_mb: float) -> Path:
    rng = random.Random(7)
    (folder / "img").mkdir()
    for i in range(images):
        path = folder / "img" / f"product{i:02d}.png"
        Image.new("RGB", (1024, 768), (rng.randrange(256), rng.randrange(256), rng.randrange(256))).save(path)
        with open(path, "ab") as fh:  # bytes after IEND keep it a valid PNG of realistic size
            fh.write(rng.randbytes(int(image_mb * 1024 * 1024)))
    lines = ["image,prompt,duration,resolution,output,sku,colour,angle"]
    for r in range(rows):
        lines.append(
            f"img/product{r % images:02d}.png,\"The {{colour}} {{stem}} turns, {{angle}} view, sku {{sku}}\","
            f"{4 if r % 2 else 8},720p,{{sku}}-{{stem}},SKU-{r:05d},{rng.choice(['red', 'blue', 'green'])},{r % 360}"
        )
    manifest = folder / "big.csv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def timed(fn) -> tuple[float, int]:
    start = time.perf_counter()
    jobs = len(fn().jobs)
    return time.perf_counter() - start, jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--image-mb", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest = build(folder, args.rows, args.images, args.image_mb)
        cache_file = folder / "image-cache.json"
        results = []
        clear_memory_cache()
        results.append(("cold: sniff + hash every image, write cache",
                        *timed(lambda: load_manifest(manifest, image_cache=ImageCache(cache_file)))))
        results.append(("warm, same process (memory cache)", *timed(lambda: load_manifest(manifest))))
        clear_memory_cache()
        results.append(("warm, new process (ImageCache file)",
                        *timed(lambda: load_manifest(manifest, image_cache=ImageCache(cache_file)))))
        clear_memory_cache()
        results.append(("cold again, no persistent cache", *timed(lambda: load_manifest(manifest))))
        size_mb = sum(p.stat().st_size for p in (folder / "img").iterdir()) / 1e6
    print(f"{args.rows} rows over {args.images} images ({size_mb:.0f} MB of images), "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{'case':<46} {'seconds':>8} {'jobs':>7}")
    for name, seconds, jobs in results:
        print(f"{name:<46} {seconds:>8.3f} {jobs:>7}")


if __name__ == "__main__":
    main()
