"""What a run tells its observers: one frozen record per kind of run event.

Observers (progress.py) receive these and never change anything. Each job event carries the
job spec and ``committed``, the dollars paid or in flight when it happened, so a display needs
no access to the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .jobs import JobSpec

if TYPE_CHECKING:
    from .planner import Plan


@dataclass(frozen=True, kw_only=True)
class RunEvent:
    committed: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Planned(RunEvent):
    plan: "Plan"


@dataclass(frozen=True, kw_only=True)
class Stopping(RunEvent):
    reason: str
    #: A stop the user must act on (the reason ends the run's summary); else an interrupt.
    halt: bool = False


@dataclass(frozen=True, kw_only=True)
class QueueMargin(RunEvent):
    """How many tasks may wait in the provider's queue beyond its concurrency (billed at submit)."""

    concurrency: int
    margin: int


@dataclass(frozen=True, kw_only=True)
class JobEvent(RunEvent):
    job: JobSpec


@dataclass(frozen=True, kw_only=True)
class Uploaded(JobEvent):
    url: str


@dataclass(frozen=True, kw_only=True)
class Submitting(JobEvent):
    attempt: int
    model: str
    cost: float


@dataclass(frozen=True, kw_only=True)
class Submitted(JobEvent):
    pid: str
    model: str
    cost: float


@dataclass(frozen=True, kw_only=True)
class Unknown(JobEvent):
    error: str


@dataclass(frozen=True, kw_only=True)
class Generating(JobEvent):
    pid: str


@dataclass(frozen=True, kw_only=True)
class Completed(JobEvent):
    model_used: str
    inference_ms: int | None
    fell_back: bool


@dataclass(frozen=True, kw_only=True)
class Downloading(JobEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class Downloaded(JobEvent):
    path: str
    bytes: int
    sha256: str


@dataclass(frozen=True, kw_only=True)
class Failed(JobEvent):
    error: str
    cls: str


@dataclass(frozen=True, kw_only=True)
class Stalled(JobEvent):
    """The job could not progress in this run (retries used up); the next run carries it on."""

    error: str


Observer = Callable[[RunEvent], None]
