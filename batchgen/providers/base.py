"""The provider interface: the runner's only view of a video API.

The runner decides; a provider talks. Wire JSON is parsed once, in the provider, into the
records below; nothing else reads raw answers. A provider is one module that defines a
class following ``Provider`` and a ``ProviderInfo``; one line in ``providers/__init__.py``
registers it. The runner never knows a provider's name: what differs between providers
(the key's variable, how long uploads live, whether a failed task is billed, whether the
server queues over its concurrency cap) is data in its ``ProviderPolicy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from ..models import ModelSpec
from ..webhooks import SignatureScheme


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
    """One entry of the provider's predictions listing (for reconciling lost submit answers).

    ``input`` is the request body when the provider reports it (then a lost submit is matched
    exactly); otherwise None, and only the model, the creation time and the output can tell."""

    id: str
    model: str
    status: str
    created_at: float | None = None      # epoch seconds
    outputs: tuple[str, ...] = ()
    input: Mapping[str, Any] | None = None
    #: sha256 of ``input`` in canonical JSON (models.body_hash), "" without an input.
    body_hash: str = ""


@dataclass(frozen=True)
class Listing:
    """What a listing read found; ``complete`` only when every page up to the total was read."""

    items: tuple[ListedPrediction, ...]
    complete: bool


@dataclass(frozen=True)
class Download:
    """A finished download: what landed in the .part file."""

    bytes: int
    sha256: str
    content_type: str
    #: The server promised a Content-Length and exactly that many bytes arrived.
    length_checked: bool = False
    #: The file was fsynced when its last byte was written: placing it need not wait on the disk again.
    synced: bool = False


@dataclass(frozen=True)
class ProviderPolicy:
    """A provider's rules the runner must follow, as data."""

    name: str
    #: The environment variable the API key is read from.
    key_variable: str
    default_base_url: str
    #: Seconds an uploaded image URL may be reused in a later submit; None: it never expires.
    upload_lifetime: float | None = None
    #: Seconds a completed task's outputs stay downloadable; None: unknown or unbounded.
    output_lifetime: float | None = None
    #: Whether a task that ends ``failed`` is charged.
    failed_tasks_billed: bool = False
    #: Over the account's concurrency cap the server accepts (and bills) a submit and queues it
    #: (True), or refuses it with a 429 (False).
    queues_over_limit: bool = False
    #: How its webhook deliveries are signed; None: it sends none batchgen can verify.
    webhook_scheme: SignatureScheme | None = None


class Provider(Protocol):
    """What batchgen needs from a video API. Errors are batchgen.errors.ProviderError subclasses."""

    base_url: str
    policy: ProviderPolicy

    def build_body(self, spec: ModelSpec, image_url: str, prompt: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The submit body for one job, from the model table's data."""

    async def upload(self, data: bytes, filename: str, content_type: str) -> str:
        """Store an image; return the URL to put in a submit body."""

    async def submit(self, model: str, body: dict[str, Any], webhook: str | None = None) -> Prediction:
        """Create a task (``webhook``: a URL to call when it ends). AmbiguousSubmitError when the
        answer was lost after sending; ModelUnavailableError when the model cannot be used now."""

    async def webhook_secret(self) -> str:
        """The account's secret that signs webhook deliveries (``policy.webhook_scheme``)."""

    def parse_webhook(self, body: bytes) -> Prediction:
        """A delivery's body as a Prediction; PermanentError when it is not one."""

    async def result(self, prediction_id: str) -> Prediction:
        """Read a task's current state."""

    async def list_predictions(self, *, model: str, created_after: float, created_before: float) -> Listing | None:
        """Tasks of ``model`` created in the window (epoch seconds), or None without a listing."""

    async def balance(self) -> float | None:
        """The account's balance in dollars, or None when the provider does not say (unknown, never a stop)."""

    async def download(self, url: str, dest: Path, *, max_bytes: int) -> Download:
        """Stream an output file to ``dest``; checks Content-Length and size cap."""

    async def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True)
class ProviderInfo:
    """A registered provider: its policy and how to build a client for it."""

    policy: ProviderPolicy
    #: ``factory(api_key, base_url, **options)`` -> Provider.
    factory: Callable[..., Provider]
    #: Model rows the provider brings, by its own ids; the table lists them as ``name:id``.
    models: tuple[ModelSpec, ...] = ()
