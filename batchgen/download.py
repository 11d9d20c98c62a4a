"""Putting a finished video on disk: ``.part`` file, verify, rename, sidecar.

A video is only ever visible under its final name once it has been received whole
(Content-Length and sha256), probed (a video stream of the asked size and length, an audio
stream) and fsynced; the state records it only after the rename.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import PermanentError
from .jobs import JobSpec
from .models import RESOLUTION_SIZES, output_size
from .probe import VideoInfo, check_video, probe_video


def safe_target(out_dir: Path, relative: str) -> Path:
    """The absolute path for an output, refusing anything that would leave ``out_dir``."""
    root = out_dir.resolve()
    target = (root / relative).resolve()
    if target == root or root not in target.parents:
        raise PermanentError(f"the output path {relative!r} would leave the output folder {root}")
    return target


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def sidecar_path(target: Path) -> Path:
    return target.with_suffix(".json")


def verify(path: Path, job: JobSpec, image_size: tuple[int, int] | None, tolerance: float) -> VideoInfo:
    """Probe a downloaded file and insist it is the video that was paid for."""
    info = probe_video(path)
    want_w, want_h = output_size(job.resolution, image_size) if job.resolution in RESOLUTION_SIZES else (info.width, info.height)
    if (info.width, info.height) == (want_h, want_w):
        # The provider followed the image's orientation the other way round; accept it.
        want_w, want_h = want_h, want_w
    problems = check_video(info, want_w, want_h, float(job.duration), tolerance=tolerance, need_audio=True)
    if problems:
        raise PermanentError("the downloaded video is not what was asked: " + "; ".join(problems))
    return info


def set_aside(target: Path, tag: str) -> Path:
    """Move an older paid video out of the way instead of overwriting it."""
    aside = target.with_name(f"{target.stem}.prev-{tag}{target.suffix}")
    os.replace(target, aside)
    old_sidecar = sidecar_path(target)
    if old_sidecar.exists():
        os.replace(old_sidecar, sidecar_path(aside))
    return aside


def write_sidecar(target: Path, record: dict[str, Any]) -> None:
    """The video's own description next to it, written atomically."""
    side = sidecar_path(target)
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, side)
