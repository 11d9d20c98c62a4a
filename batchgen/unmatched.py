"""Paid videos no job could be matched to: ``<out>/unmatched/<prediction id>.mp4`` with a sidecar.

A prediction that may be a lost submit but cannot be told apart is still fetched, so no paid video
is left to expire on the provider's side. Its sidecar (``<id>.json``) says what it is and why it is
here; ``batchgen status``, the report and the end-of-run summary list them from these files.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .download import write_sidecar
from .providers.base import Download

FOLDER = "unmatched"


def video_path(out_dir: Path, pid: str) -> Path:
    """Where a candidate's video is kept; the id is the provider's, so only a plain name is accepted."""
    if not pid or not all(c.isalnum() or c in "-_" for c in pid):
        raise ValueError(f"the prediction id {pid[:40]!r} is not a plain name; it cannot name a file")
    return out_dir / FOLDER / f"{pid}.mp4"


def record(out_dir: Path, pid: str, info: dict[str, Any]) -> None:
    """Write (or rewrite) a kept video's sidecar."""
    write_sidecar(video_path(out_dir, pid), {"prediction_id": pid, **info})


def forget(out_dir: Path, pid: str) -> None:
    """The video was matched and moved to its job: its sidecar goes too."""
    side = video_path(out_dir, pid).with_suffix(".json")
    try:
        side.unlink()
    except FileNotFoundError:
        pass


def kept_copy(out_dir: Path, pid: str) -> tuple[Path, Download] | None:
    """The video of a prediction matched to a job but still here (the run stopped before placing it)."""
    try:
        path = video_path(out_dir, pid)
        data = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not data.get("matched_to") or not path.is_file():
            return None
        content = path.read_bytes()
    except (OSError, ValueError):
        return None
    return path, Download(len(content), hashlib.sha256(content).hexdigest(), "video/mp4")


def listed(out_dir: Path) -> list[dict[str, Any]]:
    """Every kept unmatched video whose sidecar is readable, oldest first."""
    folder = Path(out_dir) / FOLDER
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    found = []
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("prediction_id") and data.get("matched_to") is None:
            data["path"] = f"{FOLDER}/{name[:-5]}.mp4"
            found.append(data)
    return sorted(found, key=lambda d: (d.get("created_at") or 0, d["prediction_id"]))
