"""What a manifest costs, nothing sent: the data behind ``batchgen estimate`` (the CLI renders it).

Prices come from the model table in effect: the built-in one, extended by the user's models
file (batchgen.user_config) and by the manifest's own ``models:`` block. With a state file,
jobs already submitted keep the price recorded when they were submitted; every other job is
priced from the table. Rounding is per job, to the cent, as a generation is billed.

``Estimate.to_json()`` is one object whose fields scripts may rely on (``estimate --json`` prints
it; dollars are numbers, USD):

    manifest      path of the manifest
    state         path of the state file, or null
    rows          [{model, resolution, jobs, seconds, dollars, price_per_second, confirmed}],
                  one per (model, resolution), sorted by model then resolution; a submitted
                  job counts under the model it was sent to, at its recorded price;
                  ``confirmed`` is false when the model's price is not confirmed by a source
                  (see ``unconfirmed``)
    total         {jobs, seconds, dollars}: every job of the manifest done once
    split         null without --state; else {paid, in_flight, failed, to_pay}, each
                  {jobs, seconds, dollars}, adding up to ``total``:
                    paid       downloaded or completed (or failed after the provider billed it)
                    in_flight  submitting, submitted or unknown: committed, not finished
                    failed     ended failed and not billed; paid again only with --retry-failed,
                               priced at today's table price
                    to_pay     never submitted, edited since, or every submit refused (no task made):
                               the next run pays this
    max_cost      the manifest's max_cost, or null
    unconfirmed   [{model, note}] for models in use whose figures are unconfirmed
    fallback      null without fallback_model; else {model, jobs, seconds, dollars_asked,
                  dollars_on_fallback, accepted_jobs, not_accepted: [{problem, jobs}]}
                  over the jobs on other models that could still be submitted: what they
                  cost as asked, and on the fallback model (only the jobs it accepts)
    other_in_state  {jobs, dollars, fetching}: state records not in this manifest (edited or removed
                  rows), what of them was committed, and how many of them are paid and not on disk
                  yet (the next run fetches their videos, paying nothing); null without --state
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import StateError
from .jobs import JobSpec
from .lifecycle import JobStatus, in_flight, is_generated, never_billed, paid_not_on_disk
from .manifest import Manifest, load_manifest
from .state import JobRecord, State, committed_spend, load
from .user_config import user_model_table

BUCKETS = ("paid", "in_flight", "failed", "to_pay")


@dataclass
class Amount:
    jobs: int = 0
    seconds: int = 0
    dollars: float = 0.0

    def add(self, seconds: int, dollars: float) -> None:
        self.jobs += 1
        self.seconds += seconds
        self.dollars = round(self.dollars + dollars, 2)


@dataclass
class Row:
    model: str
    resolution: str
    jobs: int
    seconds: int
    dollars: float
    price_per_second: float
    confirmed: bool


@dataclass
class Fallback:
    model: str
    jobs: int
    seconds: int
    dollars_asked: float
    dollars_on_fallback: float
    accepted_jobs: int
    #: Each reason the fallback refuses a job, with how many jobs it refuses for it.
    not_accepted: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Estimate:
    manifest: str
    state: str | None
    rows: list[Row]
    total: Amount
    split: dict[str, Amount] | None
    max_cost: float | None
    unconfirmed: list[dict[str, str]]
    fallback: Fallback | None
    other_in_state: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def classify(rec: JobRecord | None) -> str:
    """Which bucket a job is in, from its state record (None: never seen)."""
    if rec is None:
        return "to_pay"
    if is_generated(rec.status):
        return "paid"
    if in_flight(rec.status):
        return "in_flight"
    if never_billed(rec):
        return "to_pay"  # every submit was refused, no task was made: the next plain run submits it again
    if rec.status is JobStatus.FAILED:
        # A task that ends failed is not billed (its event records cost 0), and a submit refused for good
        # was never accepted. Anything else reached the provider.
        return "paid" if rec.pid and rec.cost > 0 else "failed"
    return "to_pay"


def estimate(manifest: Manifest, state: State | None = None, state_path: str | None = None) -> Estimate:
    """Price every job of a loaded manifest, split by what a state says of it. Pure."""
    table = manifest.models
    rows: dict[tuple[str, str], Amount] = {}
    total = Amount()
    split = {name: Amount() for name in BUCKETS} if state is not None else None
    movable: list[JobSpec] = []
    for job in manifest.jobs:
        rec = state.jobs.get(job.key) if state is not None else None
        bucket = classify(rec)
        model = job.model
        if bucket in ("paid", "in_flight"):
            # A submitted job keeps the price it was submitted at, and shows under the model it
            # was sent to (its fallback, if the run switched it), even if the table changed since.
            dollars, model = rec.cost, rec.submit_model or job.model
        else:
            dollars = table.get(job.model).price(job.resolution, job.duration)
        rows.setdefault((model, job.resolution), Amount()).add(job.duration, dollars)
        total.add(job.duration, dollars)
        if split is not None:
            split[bucket].add(job.duration, dollars)
        if bucket in ("to_pay", "failed") and job.model != manifest.fallback_model:
            movable.append(job)
    out_rows = []
    for (model, resolution), amount in sorted(rows.items(), key=lambda item: (item[0][0], _res_order(item[0][1]))):
        spec = table.get(model) if model in table else None
        out_rows.append(Row(model, resolution, amount.jobs, amount.seconds, amount.dollars,
                            spec.price_per_second.get(resolution, 0.0) if spec else 0.0,
                            spec.confirmed if spec else False))
    used = sorted({r.model for r in out_rows} | ({manifest.fallback_model} if manifest.fallback_model else set()))
    unconfirmed = [{"model": m, "note": table.get(m).note if m in table else "no longer in the model table"}
                   for m in used if m not in table or not table.get(m).confirmed]
    return Estimate(
        manifest=str(manifest.path), state=state_path, rows=out_rows, total=total, split=split,
        max_cost=manifest.max_cost, unconfirmed=unconfirmed,
        fallback=_fallback(manifest, movable) if manifest.fallback_model else None,
        other_in_state=_others(manifest, state) if state is not None else None,
    )


def _fallback(manifest: Manifest, jobs: list[JobSpec]) -> Fallback:
    """What the jobs that may still move would cost on the fallback model, and which it refuses."""
    table = manifest.models
    spec = table.get(manifest.fallback_model)
    result = Fallback(spec.id, len(jobs), sum(j.duration for j in jobs), 0.0, 0.0, 0)
    refused: Counter[str] = Counter()
    for job in jobs:
        result.dollars_asked = round(result.dollars_asked + table.get(job.model).price(job.resolution, job.duration), 2)
        problems = spec.check({"duration": job.duration, "resolution": job.resolution})
        if problems:
            refused.update(problems)
            continue
        result.accepted_jobs += 1
        result.dollars_on_fallback = round(result.dollars_on_fallback + spec.price(job.resolution, job.duration), 2)
    result.not_accepted = [{"problem": p, "jobs": n} for p, n in sorted(refused.items())]
    return result


def _others(manifest: Manifest, state: State) -> dict[str, Any]:
    keys = {j.key for j in manifest.jobs}
    others = [r for k, r in state.jobs.items() if k not in keys]
    return {"jobs": len(others), "dollars": committed_spend(others),
            "fetching": sum(paid_not_on_disk(r) for r in others)}


def _res_order(resolution: str) -> tuple[int, str]:
    digits = resolution.rstrip("pP")
    return (int(digits), resolution) if digits.isdigit() else (1 << 30, resolution)


def estimate_files(manifest_path: Path, state_path: Path | None = None) -> Estimate:
    """Read a manifest (with the user's model table) and, if given, a state file, and price it."""
    manifest = load_manifest(manifest_path, user_model_table())
    if state_path is None:
        return estimate(manifest)
    if not state_path.is_file():
        raise StateError(f"{state_path}: no such state file; it is written by 'batchgen run' "
                         "(default <out>/state.jsonl); leave out --state to price the whole manifest")
    return estimate(manifest, load(state_path), str(state_path))
