"""The torture run's batch: small pictures and one job per take over them."""

from __future__ import annotations

import io
import random
from pathlib import Path

import yaml
from PIL import Image

COLORS = [(200, 80, 40), (40, 160, 90), (90, 60, 200), (220, 200, 40), (20, 20, 20), (250, 250, 250),
          (120, 30, 160), (10, 140, 220)]


def make_batch(folder: Path, jobs: int, images: int, distinct: bool = False) -> Path:
    """``images`` small pictures and ``jobs`` jobs over them, each with its own prompt (``distinct``: one
    picture per job, 4 s and 8 s in turn)."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    images = jobs if distinct else images
    for i in range(images):
        picture = Image.new("RGB", (96, 64), COLORS[i % len(COLORS)])
        picture.paste((255 - 20 * i, 90, 30 + 20 * i), (0, 0, 48, 64))
        if distinct:  # four quadrants of seeded random colours: no two pictures alike
            rng = random.Random(i)
            for box in ((0, 0, 48, 32), (48, 0, 96, 32), (0, 32, 48, 64), (48, 32, 96, 64)):
                picture.paste(tuple(rng.randrange(256) for _ in range(3)), box)
        buffer = io.BytesIO()
        picture.save(buffer, "PNG")
        (folder / "img" / f"shot{i}.png").write_bytes(buffer.getvalue())
    items = [{"id": f"j{n:03d}", "image": f"img/shot{n % images}.png",
              "prompt": f"Take {n}: the product turns slowly on a table",
              "duration": 4 + 4 * (n % 2) if distinct else 4, "output": "{id}"}
             for n in range(jobs)]
    manifest = folder / "torture.yaml"
    manifest.write_text(yaml.safe_dump({"jobs": items}, sort_keys=False), encoding="utf-8")
    return manifest
