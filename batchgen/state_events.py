"""The state file's lines as typed records: one frozen class per event kind.

``to_json`` writes the wire names a state file has always used ("ev", "key", "pid", "body_hash",
"class", "message", "t", ...) and ``from_json`` reads them back, so a file written by any earlier
release folds the same way. Which event may follow which status is lifecycle.py's table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Mapping


@dataclass(frozen=True)
class Event:
    """One state line. ``t`` is stamped by the state log when the event is written."""

    kind: ClassVar[str] = ""
    #: Python name -> wire name where they differ.
    wire: ClassVar[Mapping[str, str]] = {}

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ev": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                data[self.wire.get(f.name, f.name)] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Event":
        known = {}
        for f in fields(cls):
            name = cls.wire.get(f.name, f.name)
            if name in data:
                value = data[name]
                known[f.name] = tuple(value) if isinstance(value, list) and f.name == "outputs" else value
        return cls(**known)


@dataclass(frozen=True)
class Job(Event):
    """The job as planned (its price only while it is unpaid: a paid job keeps its submit price)."""

    kind: ClassVar[str] = "job"
    key: str
    id: str | None = None
    output: str | None = None
    model: str | None = None
    params: dict[str, Any] | None = None
    prompt: str | None = None
    image: str | None = None
    where: str | None = None
    cost: float | None = None
    t: float | None = None


@dataclass(frozen=True)
class Upload(Event):
    kind: ClassVar[str] = "upload"
    sha256: str
    url: str
    t: float | None = None


@dataclass(frozen=True)
class Submitting(Event):
    """The intent, durable before the POST."""

    kind: ClassVar[str] = "submitting"
    key: str
    attempt: int | None = None
    body_hash: str | None = None
    model: str | None = None
    cost: float | None = None
    t: float | None = None


@dataclass(frozen=True)
class Submitted(Event):
    kind: ClassVar[str] = "submitted"
    key: str
    pid: str
    model: str | None = None
    reconciled: bool | None = None
    t: float | None = None


@dataclass(frozen=True)
class Unsent(Event):
    """The POST certainly created no task (a refusal, or reconciliation proved it): back to new."""

    kind: ClassVar[str] = "unsent"
    wire: ClassVar[Mapping[str, str]] = {"cls": "class"}
    key: str
    cls: str | None = None
    message: str | None = None
    t: float | None = None


@dataclass(frozen=True)
class Unknown(Event):
    kind: ClassVar[str] = "unknown"
    key: str
    message: str | None = None
    t: float | None = None


@dataclass(frozen=True)
class Completed(Event):
    kind: ClassVar[str] = "completed"
    key: str
    pid: str | None = None
    outputs: tuple[str, ...] = ()
    model_used: str | None = None
    inference_ms: int | None = None
    cost: float | None = None
    t: float | None = None


@dataclass(frozen=True)
class Failed(Event):
    kind: ClassVar[str] = "failed"
    wire: ClassVar[Mapping[str, str]] = {"cls": "class"}
    key: str
    cls: str | None = None
    message: str | None = None
    attempt: int | None = None
    cost: float | None = None
    t: float | None = None


@dataclass(frozen=True)
class Downloaded(Event):
    kind: ClassVar[str] = "downloaded"
    key: str
    path: str
    bytes: int
    sha256: str
    model_used: str | None = None
    t: float | None = None


@dataclass(frozen=True)
class Adopted(Event):
    """A finished video found at the job's output whose sidecar names this job, its size and sha256 matching:
    the job is done without paying again (the state that recorded it was moved aside or lost)."""

    kind: ClassVar[str] = "adopted"
    key: str
    path: str
    bytes: int
    sha256: str
    pid: str | None = None
    #: The model it was submitted to, and the one that made it (as the sidecar says).
    model: str | None = None
    model_used: str | None = None
    cost: float | None = None
    t: float | None = None


@dataclass(frozen=True)
class Missing(Event):
    """A downloaded file was found gone: it is fetched again."""

    kind: ClassVar[str] = "missing"
    key: str
    t: float | None = None


@dataclass(frozen=True)
class Superseded(Event):
    kind: ClassVar[str] = "superseded"
    key: str
    by: str | None = None
    t: float | None = None


@dataclass(frozen=True)
class Snap(Event):
    """A whole record, written by compaction."""

    kind: ClassVar[str] = "snap"
    key: str
    record: dict[str, Any] = field(default_factory=dict)
    t: float | None = None


@dataclass(frozen=True)
class Run(Event):
    """Run bookkeeping (started/ended, counts); its fields are free-form and kept as written."""

    kind: ClassVar[str] = "run"
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"ev": "run", **self.info}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Run":
        return cls({k: v for k, v in data.items() if k != "ev"})


KINDS: dict[str, type[Event]] = {c.kind: c for c in (
    Job, Upload, Submitting, Submitted, Unsent, Unknown, Completed, Failed, Downloaded, Adopted, Missing,
    Superseded, Snap, Run)}


def event_from_json(data: Mapping[str, Any]) -> Event | None:
    """The event a state line holds; None for a kind this version does not know, or missing fields."""
    kind = KINDS.get(data.get("ev", ""))
    if kind is None:
        return None
    try:
        return kind.from_json(data)
    except TypeError:
        return None


