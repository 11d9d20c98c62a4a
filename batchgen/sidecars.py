"""What the output folder proves on its own: finished videos recognised by their sidecars.

Every placed video ``NAME.mp4`` has a sidecar ``NAME.json`` naming its job's key, prediction id, size
and sha256 (fetch.sidecar). When the state that recorded a job is gone (moved aside after damage,
deleted), a job about to be submitted whose output holds a video its sidecar names, of the size and
sha256 the sidecar says, is adopted instead of paid again. This module reads the disk; the planner
only receives what it found.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from .download import safe_target, sidecar_path
from .errors import OutputPathError
from .jobs import JobSpec
from .lifecycle import Action, next_action
from .state import JobRecord
from .state_events import Adopted

log = logging.getLogger("batchgen")
#: A sidecar is a few hundred bytes of JSON; anything far bigger is not one batchgen wrote.
_SIDECAR_MAX = 1 << 20
_CHUNK = 1 << 20


@dataclass(frozen=True)
class OnDisk:
    """A job's finished video found at its output, proven by its sidecar."""

    path: str
    bytes: int
    sha256: str
    pid: str = ""
    model: str = ""
    model_used: str = ""
    cost: float | None = None

    def event(self, key: str) -> Adopted:
        return Adopted(key, self.path, self.bytes, self.sha256, self.pid or None, self.model or None,
                       self.model_used or None, self.cost)


def videos_on_disk(jobs: Iterable[JobSpec], records: Mapping[str, JobRecord], out_dir: Path, *,
                   retry_failed: bool = False) -> dict[str, OnDisk]:
    """The jobs a run would submit whose finished video is already at their output, by job key. Reads
    (and hashes) only those jobs' files: a run with its state whole reads nothing here."""
    root = out_dir.resolve()
    found = {}
    for job in jobs:
        if next_action(records.get(job.key), retry_failed=retry_failed) is not Action.SUBMIT:
            continue
        proof = _proof(root, job)
        if proof is not None:
            found[job.key] = proof
    return found


def _proof(root: Path, job: JobSpec) -> OnDisk | None:
    try:
        target = safe_target(root, job.output, resolved=True)
    except OutputPathError:
        return None
    side = _read_sidecar(sidecar_path(target))
    if side is None or side.get("key") != job.key:
        return None
    size, digest = side.get("bytes"), side.get("sha256")
    if not isinstance(size, int) or not isinstance(digest, str) or not same_file(target, size, digest):
        log.info("job %s: the video at %s is not the one its sidecar describes; it is not adopted", job.id, job.output)
        return None
    cost = side.get("cost_usd")
    return OnDisk(job.output, size, digest, _text(side.get("prediction_id")), _text(side.get("model_submitted")),
                  _text(side.get("model_used")),
                  float(cost) if isinstance(cost, (int, float)) and math.isfinite(cost) and cost >= 0 else None)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar's fields, or None when there is no regular file of JSON there (a link is not read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(_SIDECAR_MAX + 1)
    try:
        side = json.loads(data) if len(data) <= _SIDECAR_MAX else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return side if isinstance(side, dict) else None


def same_file(path: Path, size: int, sha256: str) -> bool:
    """``path`` is a regular file (not a link) of exactly these bytes: the size first, hashed only then."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size != size:
            return False
        digest = hashlib.sha256()
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest() == sha256
