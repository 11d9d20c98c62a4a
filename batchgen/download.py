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

from .errors import OutputPathError, VerificationError
from .fsguard import create_fresh, refuse_link
from .models import RESOLUTION_SIZES
from .probe import VideoInfo, check_video, probe_video


def safe_target(out_dir: Path, relative: str, *, resolved: bool = False) -> Path:
    """The absolute path for an output, refusing anything that would leave ``out_dir``
    (``resolved``: the caller already resolved ``out_dir``, as the runner does once per run)."""
    root = out_dir if resolved else out_dir.resolve()
    target = (root / relative).resolve()
    if target == root or root not in target.parents:
        raise OutputPathError(f"the output path {relative!r} would leave the output folder {root}")
    return target


class Targets:
    """``safe_target`` for one run's output folder, each sub-folder resolved once.

    Resolving a path costs a system call per component, six per video in a Gold batch (about 3 % of
    the runner's CPU). A folder's resolution is kept for the run; each call still looks at the last
    component, and one that is a link, or any ``..``, ``.`` or absolute path, takes the full check."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self._folders: dict[str, Path] = {}

    def __call__(self, relative: str) -> Path:
        folder, _, name = relative.rpartition("/")
        if relative.startswith("/") or name in ("", ".", "..") or ".." in folder.split("/"):
            return safe_target(self.root, relative, resolved=True)
        resolved = self._folders.get(folder)
        if resolved is None:
            resolved = (self.root / folder).resolve()
            if resolved != self.root and self.root not in resolved.parents:
                raise OutputPathError(f"the output path {relative!r} would leave the output folder {self.root}")
            self._folders[folder] = resolved
        target = resolved / name
        if target.is_symlink():
            return safe_target(self.root, relative, resolved=True)
        return target


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def sidecar_path(target: Path) -> Path:
    return target.with_suffix(".json")


def verify(path: str, resolution: str, duration: float, aspect_ratio: str | None, tolerance: float,
           scan_packets: bool = True) -> VideoInfo:
    """Probe a downloaded file and insist it is the video that was paid for.

    Plain arguments, so it can run in a worker process. The short side must be the asked
    resolution's (720 for 720p); the long side follows the image or the asked aspect ratio,
    since Seedance adapts to the image and Sora follows its orientation.
    """
    info = probe_video(path, scan_packets=scan_packets)
    problems = shape_problems(info, resolution, duration, aspect_ratio, tolerance, need_audio=True)
    if problems:
        raise VerificationError("the downloaded video is not what was asked: " + "; ".join(problems))
    return info


def shape_problems(info: VideoInfo, resolution: str, duration: float, aspect_ratio: str | None,
                   tolerance: float, *, need_audio: bool) -> list[str]:
    """Every way a probed clip differs from the shape asked for (resolution, length, aspect ratio)."""
    problems = check_video(info, info.width, info.height, duration, tolerance=tolerance, need_audio=need_audio)
    if resolution in RESOLUTION_SIZES:
        short = RESOLUTION_SIZES[resolution][1]
        got_short, got_long = sorted((info.width, info.height))
        if abs(got_short - short) > max(8, short * 0.02) or got_long < got_short:
            problems.append(f"video is {info.width}x{info.height}, expected {resolution} ({short} pixels on its short side)")
    ratio = _ratio(aspect_ratio)
    if ratio is not None and abs(info.width / info.height - ratio) > ratio * 0.03:
        problems.append(f"video is {info.width}x{info.height}, expected aspect ratio {aspect_ratio}")
    return problems


def _ratio(aspect_ratio: str | None) -> float | None:
    w, sep, h = (aspect_ratio or "").partition(":")
    try:
        return float(w) / float(h) if sep else None
    except (ValueError, ZeroDivisionError):
        return None


def set_aside(target: Path, tag: str) -> Path:
    """Move an older paid video out of the way instead of overwriting it (a link planted in its
    place is refused, not kept as if it were a video)."""
    old_sidecar = sidecar_path(target)
    refuse_link(target)
    refuse_link(old_sidecar)
    aside = target.with_name(f"{target.stem}.prev-{tag}{target.suffix}")
    n = 1
    while os.path.lexists(aside):  # set aside before (a run that halted after this step): never overwrite it
        n += 1
        aside = target.with_name(f"{target.stem}.prev-{tag}-{n}{target.suffix}")
    os.replace(target, aside)
    if old_sidecar.exists():
        os.replace(old_sidecar, sidecar_path(aside))
    return aside


def write_sidecar(target: Path, record: dict[str, Any]) -> None:
    """The video's own description next to it, written atomically (never through a planted link)."""
    side = sidecar_path(target)
    tmp = side.with_name(side.name + ".tmp")
    with os.fdopen(create_fresh(tmp), "w", encoding="utf-8") as fh:
        fh.write(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    refuse_link(side)
    os.replace(tmp, side)
