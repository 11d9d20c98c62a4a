"""A job's lifecycle in one place: its statuses, the events that move it, and which may follow which.

Every state line is one event record of state_events.py. ``fold`` applies an event to a job record; an event the table does not allow
in the record's status is refused: loudly (an exception) when batchgen itself writes it, logged and
skipped when an existing file is loaded. A repeated event changes nothing. Every grouping of
statuses the rest of batchgen needs (what is spending, what is in flight, what to do next) is a
predicate here, so there is exactly one answer to each.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from .errors import StateError
from .state_events import (Adopted, Completed, Downloaded, Event, Failed, Job, Missing, Submitted, Submitting,
                           Superseded, Unknown, Unsent)

log = logging.getLogger("batchgen")


class JobStatus(str, Enum):
    """Where a job stands, as folded from the state log."""

    NEW = "new"                  # never submitted, or certainly not created (an unsent answer)
    SUBMITTING = "submitting"    # intent recorded; the POST may or may not have been sent
    UNKNOWN = "unknown"          # the POST may have reached the server, its answer was lost
    SUBMITTED = "submitted"      # has a prediction id; generating
    COMPLETED = "completed"      # the provider finished; not yet on disk
    DOWNLOADED = "downloaded"    # verified file on disk: done
    FAILED = "failed"            # the provider failed or refused it, or handling it kept failing



@dataclass
class JobRecord:
    """Everything the state knows about one job, folded from its events."""

    key: str
    id: str = ""
    output: str = ""
    model: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    prompt: str = ""
    image: str = ""
    where: str = ""
    status: JobStatus = JobStatus.NEW
    cost: float = 0.0
    attempts: int = 0
    body_hash: str = ""
    submit_model: str = ""
    pid: str = ""
    past_pids: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    model_used: str = ""
    inference_ms: int | None = None
    submitted_at: float | None = None
    completed_at: float | None = None
    path: str = ""
    bytes: int = 0
    sha256: str = ""
    error_class: str = ""
    error: str = ""
    #: The key of the job that replaced this one when its manifest row was edited (its video is kept).
    superseded_by: str = ""

    @property
    def fell_back(self) -> bool:
        """The provider answered with another model than the one submitted to (silently)."""
        asked = self.submit_model or self.model
        return bool(self.model_used) and self.model_used != asked

    @property
    def switched(self) -> bool:
        """batchgen sent the job to its manifest's fallback_model because the primary was unavailable."""
        return bool(self.submit_model) and self.submit_model != self.model

    def to_json(self) -> dict[str, Any]:
        # By hand, not dataclasses.asdict: that deep-copies every value, and compacting a
        # 10,000-job state spent more time there than writing the file.
        data = {name: getattr(self, name) for name in _RECORD_FIELDS}
        data["params"] = dict(self.params)
        data["past_pids"] = list(self.past_pids)
        data["outputs"] = list(self.outputs)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "JobRecord":
        rec = cls(**{k: v for k, v in data.items() if k in _KNOWN})
        rec.status = JobStatus(rec.status)
        return rec


_RECORD_FIELDS = tuple(f.name for f in fields(JobRecord))
_KNOWN = frozenset(_RECORD_FIELDS)


S = JobStatus
ANY = frozenset(JobStatus)


#: Which event kind is legal in which status (the kinds without a job key, upload/run/snap, are not folded).
TRANSITIONS: dict[str, frozenset[JobStatus]] = {
    "job":        ANY,
    "superseded": ANY,
    "submitting": frozenset({S.NEW, S.FAILED}),
    "unsent":     frozenset({S.NEW, S.SUBMITTING, S.UNKNOWN}),
    "unknown":    frozenset({S.SUBMITTING, S.UNKNOWN}),
    "submitted":  frozenset({S.SUBMITTING, S.UNKNOWN, S.SUBMITTED}),
    "completed":  frozenset({S.SUBMITTED, S.COMPLETED, S.FAILED}),
    "failed":     frozenset({S.NEW, S.SUBMITTING, S.SUBMITTED, S.COMPLETED, S.FAILED}),
    "downloaded": frozenset({S.COMPLETED, S.DOWNLOADED, S.FAILED}),
    # Only where nothing of the job is in flight: its sidecar proves the video, not what a pending submit did.
    "adopted":    frozenset({S.NEW, S.FAILED}),
    "missing":    frozenset({S.DOWNLOADED}),
}

#: Where each kind leaves a job (None: it keeps its status).
TARGET: dict[str, JobStatus | None] = {
    "job": None, "superseded": None, "submitting": S.SUBMITTING, "unsent": S.NEW, "unknown": S.UNKNOWN,
    "submitted": S.SUBMITTED, "completed": S.COMPLETED, "failed": S.FAILED, "downloaded": S.DOWNLOADED,
    "adopted": S.DOWNLOADED,
    "missing": None,  # back to COMPLETED with a prediction id, NEW without
}


class IllegalTransitionError(StateError):
    """An event arrived in a status the lifecycle table does not allow it in."""


# -- folding -----------------------------------------------------------------------------------
def is_repeat(rec: JobRecord, ev: Event) -> bool:
    """An event that says again what the record already holds (a duplicated line): no change."""
    if isinstance(ev, Submitting):
        return rec.status is not S.NEW and ev.attempt is not None and ev.attempt <= rec.attempts
    if isinstance(ev, Submitted):
        return rec.status is not S.SUBMITTING and rec.status is not S.UNKNOWN and ev.pid == rec.pid
    if isinstance(ev, Unknown):
        return rec.status is S.UNKNOWN
    if isinstance(ev, Adopted):
        return rec.status is S.DOWNLOADED and (rec.path, rec.sha256) == (ev.path, ev.sha256)
    return False


def fold(rec: JobRecord, ev: Event, *, strict: bool = True) -> bool:
    """Apply one job event to its record; False when it was a repeat or (not strict) an illegal one."""
    if is_repeat(rec, ev):
        return False
    if rec.status not in TRANSITIONS[ev.kind]:
        message = f"job {rec.id or rec.key}: a {ev.kind!r} event cannot follow status {rec.status.value!r}"
        if strict:
            raise IllegalTransitionError(message)
        log.warning("%s; the state line is ignored", message)
        return False
    _APPLY[ev.kind](rec, ev)
    target = TARGET[ev.kind]
    if target is not None:
        rec.status = target
    return True


def _job(rec: JobRecord, ev: Job) -> None:
    for name in ("id", "output", "model", "params", "prompt", "image", "where", "cost"):
        value = getattr(ev, name)
        if value is not None:
            setattr(rec, name, value)
    rec.superseded_by = ""


def _superseded(rec: JobRecord, ev: Superseded) -> None:
    rec.superseded_by = ev.by or ""


def _submitting(rec: JobRecord, ev: Submitting) -> None:
    rec.attempts = ev.attempt if ev.attempt is not None else rec.attempts + 1
    rec.body_hash = ev.body_hash or ""
    rec.submit_model = ev.model or rec.model
    rec.cost = rec.cost if ev.cost is None else ev.cost
    rec.submitted_at = ev.t
    if rec.pid:
        rec.past_pids.append(rec.pid)
    rec.pid, rec.outputs, rec.model_used, rec.error, rec.error_class = "", [], "", "", ""


def _submitted(rec: JobRecord, ev: Submitted) -> None:
    rec.pid = ev.pid


def _unsent(rec: JobRecord, ev: Unsent) -> None:
    rec.error_class, rec.error = ev.cls or "", ev.message or ""


def _unknown(rec: JobRecord, ev: Unknown) -> None:
    rec.error_class, rec.error = "unknown", ev.message or ""


def _completed(rec: JobRecord, ev: Completed) -> None:
    rec.pid = ev.pid or rec.pid
    rec.outputs = list(ev.outputs)
    rec.model_used = ev.model_used or ""
    rec.inference_ms = ev.inference_ms
    rec.completed_at = ev.t
    if ev.cost is not None:
        rec.cost = ev.cost


def _failed(rec: JobRecord, ev: Failed) -> None:
    rec.error_class, rec.error = ev.cls or "", ev.message or ""
    if ev.cost is not None:
        rec.cost = ev.cost


def _downloaded(rec: JobRecord, ev: Downloaded) -> None:
    rec.path, rec.bytes, rec.sha256 = ev.path, ev.bytes, ev.sha256
    rec.model_used = ev.model_used if ev.model_used is not None else rec.model_used


def _adopted(rec: JobRecord, ev: Adopted) -> None:
    rec.path, rec.bytes, rec.sha256 = ev.path, ev.bytes, ev.sha256
    rec.pid = ev.pid or rec.pid
    rec.submit_model = ev.model or rec.submit_model
    rec.model_used = ev.model_used or ""
    rec.error_class, rec.error = "", ""
    if ev.cost is not None:
        rec.cost = ev.cost


def _missing(rec: JobRecord, ev: Missing) -> None:
    rec.status = S.COMPLETED if rec.pid else S.NEW
    rec.path = ""


_APPLY = {"job": _job, "superseded": _superseded, "submitting": _submitting, "submitted": _submitted,
          "unsent": _unsent, "unknown": _unknown, "completed": _completed, "failed": _failed,
          "downloaded": _downloaded, "adopted": _adopted, "missing": _missing}


# -- groupings ---------------------------------------------------------------------------------
#: Billed (or possibly billed) and not yet on disk.
IN_FLIGHT = frozenset({S.SUBMITTING, S.UNKNOWN, S.SUBMITTED, S.COMPLETED})
#: The provider finished it: paid, whether or not the file is on disk yet.
GENERATED = frozenset({S.COMPLETED, S.DOWNLOADED})
#: Not finished by this run: the same command carries it on.
UNFINISHED = frozenset({S.NEW, S.SUBMITTED, S.COMPLETED})


def in_flight(status: JobStatus) -> bool:
    """Billed (or maybe billed) and not yet on disk."""
    return status in IN_FLIGHT


def is_generated(status: JobStatus) -> bool:
    return status in GENERATED


def is_unfinished(status: JobStatus) -> bool:
    return status in UNFINISHED


def is_spending(rec: JobRecord | None) -> bool:
    """The job's price is committed: it may have reached the provider (a failed task with a prediction
    id counts at the cost its failure recorded)."""
    if rec is None:
        return False
    return rec.status in IN_FLIGHT or rec.status is S.DOWNLOADED or (rec.status is S.FAILED and bool(rec.pid))


def spend_of(rec: JobRecord | None) -> float:
    return rec.cost if rec is not None and is_spending(rec) else 0.0


def committed_spend(records: Any) -> float:
    """Dollars paid or in flight over some records."""
    return round(sum(spend_of(r) for r in records), 2)


class Action(str, Enum):
    """What a run does next with a job."""

    SUBMIT = "submit"
    POLL = "poll"
    DOWNLOAD = "download"
    RECONCILE = "reconcile"
    DONE = "done"
    FAILED = "failed"


#: Failure classes that are the provider's verdict on the request itself, or on its task for good
#: ("expired": paid, but its outputs were deleted before the download, so only a new submit can give
#: the video); every other failure after a prediction id existed was local (reading, downloading, a
#: bug) and resumes from what was paid.
VERDICTS = frozenset({"task", "rejected", "expired"})

_BY_STATUS = {S.NEW: Action.SUBMIT, S.SUBMITTING: Action.RECONCILE, S.UNKNOWN: Action.RECONCILE,
              S.SUBMITTED: Action.POLL, S.COMPLETED: Action.DOWNLOAD, S.DOWNLOADED: Action.DONE}


def paid_not_on_disk(rec: JobRecord) -> bool:
    """A task paid and known by its id whose video is not on disk yet: a run follows it even when its row
    was edited or removed (planner.Leftover; an unknown one is settled only while its row is in the manifest)."""
    return bool(rec.pid) and rec.status in (S.SUBMITTED, S.COMPLETED)


def never_billed(rec: JobRecord) -> bool:
    """Failed before any task was created: every submit answer was a refusal (no prediction id, no
    verdict), so nothing was paid and the job is simply still to do."""
    return rec.status is S.FAILED and not rec.pid and rec.error_class not in VERDICTS


def next_action(rec: JobRecord | None, *, retry_failed: bool = False) -> Action:
    """The next step for a job as the state has it (a missing file is the planner's to notice)."""
    if rec is None:
        return Action.SUBMIT
    if rec.status is not S.FAILED:
        return _BY_STATUS[rec.status]
    if never_billed(rec):
        return Action.SUBMIT
    if not retry_failed:
        return Action.FAILED
    if rec.pid and rec.error_class not in VERDICTS:
        return Action.DOWNLOAD if rec.outputs else Action.POLL
    return Action.SUBMIT
