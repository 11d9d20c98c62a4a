"""Job specs and job identity.

A job's *key* is a hash of exactly what is paid for: the model, the body parameters, the
prompt, the image's bytes (by sha256, never its path) and the take number. Two rows that
would buy the same video get the same key; editing any of those makes a new job.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping



@dataclass(frozen=True)
class Location:
    """Where a job came from: manifest file and line (YAML) or row (CSV)."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class JobSpec:
    """One paid generation, fully expanded from a manifest row."""

    id: str
    model: str
    prompt: str
    #: The image as written (path or URL), and what it resolves to.
    image: str
    image_path: str | None          # absolute local path, or None for a URL
    image_url: str | None           # the http(s) URL when the manifest gave one
    image_sha256: str | None        # bytes hash for local files
    params: Mapping[str, Any]       # duration, resolution and model-specific fields
    take: int
    output: str                     # path relative to the output folder, ends in .mp4
    where: Location = field(default_factory=lambda: Location("?"))
    fallback_model: str | None = None

    @property
    def duration(self) -> int:
        return int(self.params["duration"])

    @property
    def resolution(self) -> str:
        return str(self.params["resolution"])

    @cached_property
    def key(self) -> str:
        return job_key(self.model, self.paid_params, self.prompt, self.image_sha256 or self.image_url or self.image,
                       self.take)

    @cached_property
    def paid_params(self) -> Mapping[str, Any]:
        """Params as paid for (and as keyed): a local ``last_image`` counts by its bytes, hashed once."""
        last = self.params.get("last_image")
        if not isinstance(last, str) or last.startswith(("http://", "https://")):
            return self.params
        from .images import image_info  # cached by (path, size, mtime): no re-hashing per call
        return {**self.params, "last_image": image_info(last).sha256}


def job_key(model: str, params: Mapping[str, Any], prompt: str, image_identity: str, take: int) -> str:
    """Hash of what is paid for; 20 hex chars is plenty for one user's batches."""
    payload = json.dumps(
        {"model": model, "params": dict(sorted(params.items())), "prompt": prompt, "image": image_identity, "take": take},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:20]
