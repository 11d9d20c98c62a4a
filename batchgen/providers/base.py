"""The provider interface: the runner's only view of a video API.

The runner decides; a provider talks. Wire JSON is parsed once, in the provider, into the
records below; nothing else reads raw answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Protocol


class PredictionStatus(str, Enum):
    CREATED = "created"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class Prediction:
    """A task as the provider reports it."""

    id: str
    model: str
    status: PredictionStatus
    outputs: tuple[str, ...] = ()
    error: str = ""
    inference_ms: int | None = None
    created_at: str = ""


@dataclass(frozen=True)
class ListedPrediction:
    """One entry of the provider's recent-predictions listing (for reconciling lost answers)."""

    id: str
    model: str
    status: str
    body_hash: str
    created_at: str = ""


@dataclass(frozen=True)
class Download:
    """A finished download: what landed in the .part file."""

    bytes: int
    sha256: str
    content_type: str
    #: The server promised a Content-Length and exactly that many bytes arrived.
    length_checked: bool = False


class Provider(Protocol):
    """What batchgen needs from a video API. Errors are batchgen.errors.ProviderError subclasses."""

    base_url: str

    async def upload(self, data: bytes, filename: str, content_type: str) -> str:
        """Store an image; return the URL to put in a submit body."""

    async def submit(self, model: str, body: dict[str, Any]) -> Prediction:
        """Create a task. AmbiguousSubmitError when the answer was lost after sending."""

    async def result(self, prediction_id: str) -> Prediction:
        """Read a task's current state."""

    async def list_recent(self, limit: int = 1000) -> list[ListedPrediction] | None:
        """Recent tasks with their body hashes, or None when the API has no listing."""

    async def download(self, url: str, dest: Path, *, max_bytes: int) -> Download:
        """Stream an output file to ``dest``; checks Content-Length and size cap."""

    async def close(self) -> None:
        """Release connections."""
