"""Deciding what a run will do: a pure function of the specs, the folded state and the files present.

``plan`` returns the plan and the state events it would write (new and edited jobs, superseded
rows, videos found missing, videos found on disk and adopted from their sidecars); nothing is written
until the caller commits them, which ``batchgen run`` does only once the user has said yes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .jobs import JobSpec, Location
from .lifecycle import TRANSITIONS, Action, JobStatus, next_action, paid_not_on_disk, spend_of
from .sidecars import OnDisk
from .state import JobRecord, State
from .state_events import Event, Job, Missing, Superseded


@dataclass(frozen=True)
class Leftover(JobSpec):
    """A job paid and not yet on disk whose row was since edited or removed: followed to its video all the
    same, so none is lost. Its file keeps the job's name unless a job of the manifest names it now; then it
    is NAME.prev-KEY.mp4, the name an older video of the row is set aside as."""

    recorded_key: str = ""

    @property
    def key(self) -> str:  # the recorded one: the image it was hashed from may have changed since
        return self.recorded_key


def leftover(rec: JobRecord, taken: set[str]) -> Leftover:
    """The spec that follows ``rec``; ``taken``: the outputs the manifest's jobs write, casefolded (on macOS
    and Windows 'A.mp4' is 'a.mp4')."""
    output = rec.output
    if output.casefold() in taken:
        stem = output[:-4] if output.endswith(".mp4") else output
        output = f"{stem}.prev-{rec.key[:8]}.mp4"
    return Leftover(id=rec.id, model=rec.model, prompt=rec.prompt, image=rec.image, image_path=None, image_url=None,
                    image_sha256=None, params=dict(rec.params), take=1, output=output, where=Location(rec.where),
                    recorded_key=rec.key)


@dataclass(frozen=True)
class PlanOptions:
    #: The list price of a job at its own model.
    price: Callable[[JobSpec], float]
    retry_failed: bool = False


@dataclass
class Plan:
    """What this run will do, decided from the manifest and the state before any request."""

    submit: list[JobSpec] = field(default_factory=list)
    poll: list[JobSpec] = field(default_factory=list)
    download: list[JobSpec] = field(default_factory=list)
    unknown: list[JobSpec] = field(default_factory=list)
    done: list[JobSpec] = field(default_factory=list)
    failed: list[JobSpec] = field(default_factory=list)
    #: Lost submits found by their output, whose video reconciliation already fetched: placed, not downloaded.
    adopt: list[JobSpec] = field(default_factory=list)
    new: int = 0
    changed: int = 0
    removed: int = 0
    missing_files: int = 0
    #: Jobs the state did not hold as done whose video was already at their output, proven by its sidecar
    #: (sidecars.py): done, not paid again; and the dollars their sidecars say were paid for them.
    on_disk: int = 0
    on_disk_cost: float = 0.0
    #: Lost submits sent again (proven never created, or --resubmit-unknown): payments in ``submit``.
    resubmits: int = 0
    #: What reconciling the unknown jobs found (reconcile.Findings); None until it ran.
    found: Any = None
    #: Jobs that differ from a recorded paid job only by whitespace in their prompt: the recorded job is kept.
    whitespace_kept: int = 0
    #: The specs as planned, in manifest order (a whitespace-only edit stands for its recorded job).
    jobs: list[JobSpec] = field(default_factory=list)
    #: Jobs of edited or removed rows, paid and not yet on disk: polled or downloaded (not in ``jobs``).
    leftovers: list[Leftover] = field(default_factory=list)

    def add(self, action: Action, job: JobSpec) -> None:
        self._lists[action].append(job)

    @property
    def _lists(self) -> dict[Action, list[JobSpec]]:
        return {Action.SUBMIT: self.submit, Action.POLL: self.poll, Action.DOWNLOAD: self.download,
                Action.RECONCILE: self.unknown, Action.DONE: self.done, Action.FAILED: self.failed}


def plan(specs: list[JobSpec], state: State, files_present: Mapping[str, int],
         options: PlanOptions, on_disk: Mapping[str, OnDisk] | None = None) -> tuple[Plan, list[Event]]:
    """The plan, and the events that record it. ``files_present`` maps a downloaded job's path
    (relative to the output folder) to its size on disk; a path absent or of another size is missing.
    ``on_disk`` maps a job key to its finished video found at its output (sidecars.videos_on_disk)."""
    result, events = Plan(), []
    ids_before = {r.id: r.key for r in state.jobs.values() if r.id}
    by_words = _paid_by_words(state)
    for job in specs:
        rec = state.jobs.get(job.key)
        if rec is None:
            job, rec = _same_but_whitespace(job, by_words, state)
            result.whitespace_kept += rec is not None
        result.jobs.append(job)
        if rec is None or not rec.id:
            old_key = ids_before.get(job.id)
            if old_key and old_key != job.key:
                result.changed += 1
                events.append(Superseded(old_key, by=job.key))
            else:
                result.new += 1
        described = describe(job, rec, options.price(job))
        if described is not None:
            events.append(described)
        action = next_action(rec, retry_failed=options.retry_failed)
        if action is Action.DONE and files_present.get(rec.path) != rec.bytes:
            result.missing_files += 1
            events.append(Missing(job.key))
            action = Action.DOWNLOAD if rec.pid else Action.SUBMIT
        if action is Action.SUBMIT and _adopt(job, rec, (on_disk or {}).get(job.key), options, result, events):
            action = Action.DONE
        result.add(action, job)
    keys, ids = {j.key for j in result.jobs}, {j.id for j in result.jobs}
    _follow_leftovers(result, state, keys)
    # A superseded job is the history of an edited row, counted (once) by the job that replaced it.
    result.removed = sum(1 for k, r in state.jobs.items()
                         if k not in keys and r.id not in ids and not r.superseded_by)
    return result, events


def _follow_leftovers(result: Plan, state: State, keys: set[str]) -> None:
    """Jobs no longer in the manifest (edited or removed rows) whose task was paid and whose video is not
    on disk yet."""
    taken = {j.output.casefold() for j in result.jobs}
    result.leftovers = [leftover(r, taken) for k, r in state.jobs.items() if k not in keys and paid_not_on_disk(r)]


def _adopt(job: JobSpec, rec: JobRecord | None, found: OnDisk | None, options: PlanOptions, result: Plan,
           events: list[Event]) -> bool:
    """Adopt the job's video found at its output instead of paying for it again; False when there is none
    (or the job's record is somewhere a sidecar cannot settle)."""
    if found is None or (rec is not None and rec.status not in TRANSITIONS["adopted"]):
        return False
    events.append(found.event(job.key))
    unpaid = rec is None or rec.status is JobStatus.NEW
    cost = found.cost if found.cost is not None else (options.price(job) if unpaid else rec.cost)
    result.on_disk += 1
    # What the committed spend grows by once the event is written (the cap is checked before that).
    result.on_disk_cost += cost - spend_of(rec)
    return True


def _words(prompt: str) -> str:
    return " ".join(prompt.split())


def _paid_by_words(state: State) -> dict[str, list[JobRecord]]:
    """Recorded jobs with something paid or done, by their prompt with whitespace normalised."""
    found: dict[str, list[JobRecord]] = {}
    for rec in state.jobs.values():
        if rec.prompt and rec.status is not JobStatus.NEW:
            found.setdefault(_words(rec.prompt), []).append(rec)
    return found


def _same_but_whitespace(job: JobSpec, by_words: Mapping[str, list[JobRecord]],
                         state: State) -> tuple[JobSpec, JobRecord | None]:
    """The recorded job this one differs from only by whitespace in its prompt, and the spec that stands
    for it. The proof is the key: the spec with the recorded prompt hashes to the recorded key, so model,
    parameters, image bytes and take are the same. Keys themselves never change (old states resume)."""
    for rec in reversed(by_words.get(_words(job.prompt), [])):
        if rec.prompt != job.prompt:
            kept = replace(job, prompt=rec.prompt)
            if kept.key == rec.key:
                return kept, state.jobs[rec.key]
    return job, None


def describe(job: JobSpec, rec: JobRecord | None, price: float) -> Job | None:
    """The ``job`` event when the state does not hold this job as the manifest has it now."""
    desc: dict[str, Any] = {"id": job.id, "output": job.output, "model": job.model, "params": dict(job.params),
                            "prompt": job.prompt, "image": job.image, "where": str(job.where)}
    unpaid = rec is None or rec.status is JobStatus.NEW
    if rec is not None and not rec.superseded_by and all(getattr(rec, k) == v for k, v in desc.items()) and (
            not unpaid or rec.cost == price):
        return None
    # A paid job keeps the price it was submitted at.
    return Job(job.key, **desc, cost=price if unpaid else None)


def files_present(records: Iterable[JobRecord], out_dir: Path) -> dict[str, int]:
    """Sizes on disk of the downloaded records' files (the planner's only view of the output folder)."""
    sizes = {}
    for rec in records:
        if rec.status is JobStatus.DOWNLOADED and rec.path:
            try:
                sizes[rec.path] = (out_dir / rec.path).stat().st_size
            except OSError:
                continue
    return sizes


def cost_to_pay(result: Plan, price: Callable[[JobSpec], float]) -> float:
    """Dollars this run would commit if every planned submit goes through."""
    return round(sum(price(j) for j in result.submit), 2)
