"""``batchgen estimate MANIFEST [--state PATH] [--json]``: what a manifest costs, nothing sent.

Prices come from the model table in effect: the built-in one, extended by the user's models
file (batchgen.user_config) and by the manifest's own ``models:`` block. With a state file,
jobs already submitted keep the price recorded when they were submitted; every other job is
priced from the table. Rounding is per job, to the cent, as a generation is billed.

``--json`` prints one object whose fields scripts may rely on (dollars are numbers, USD):

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
                    to_pay     never submitted (or edited since): the next run pays this
    max_cost      the manifest's max_cost, or null
    unconfirmed   [{model, note}] for models in use whose figures are unconfirmed
    fallback      null without fallback_model; else {model, jobs, seconds, dollars_asked,
                  dollars_on_fallback, accepted_jobs, not_accepted: [{problem, jobs}]}
                  over the jobs on other models that could still be submitted: what they
                  cost as asked, and on the fallback model (only the jobs it accepts)
    other_in_state  {jobs, dollars}: state records not in this manifest (old edits), and
                  what of them was committed; null without --state
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import StateError
from .jobs import JobSpec
from .lifecycle import JobStatus, in_flight, is_generated
from .manifest import Manifest, load_manifest
from .state import JobRecord, State, committed_spend, load
from .user_config import user_model_table

BUCKETS = ("paid", "in_flight", "failed", "to_pay")
_LABELS = {
    "paid": "already paid",
    "in_flight": "in flight",
    "failed": "failed",
    "to_pay": "still to pay",
}


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
    if rec.status is JobStatus.FAILED:
        # A task that ends failed is not billed (its event records cost 0), and a submit that
        # never got a prediction id was never accepted. Anything else reached the provider.
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
    return {"jobs": len(others), "dollars": committed_spend(others)}


def _res_order(resolution: str) -> tuple[int, str]:
    digits = resolution.rstrip("pP")
    return (int(digits), resolution) if digits.isdigit() else (1 << 30, resolution)


# -- rendering --------------------------------------------------------------------------


def render(est: Estimate) -> str:
    t = est.total
    lines = [f"{est.manifest}: {_jobs(t.jobs)}, {t.seconds} s of video, ${t.dollars:.2f} at list price"]
    flagged = {u["model"] for u in est.unconfirmed}
    names = [r.model + (" *" if r.model in flagged else "") for r in est.rows]
    width = max([len("model"), len("total"), *map(len, names)])
    head = f"  {'model':<{width}}  {'resolution':<10}  {'$/s':>5}  {'jobs':>5}  {'seconds':>7}  {'dollars':>9}"
    lines += [head, "  " + "-" * (len(head) - 2)]
    for name, row in zip(names, est.rows):
        lines.append(f"  {name:<{width}}  {row.resolution:<10}  {row.price_per_second:>5.2f}  {row.jobs:>5}  "
                     f"{row.seconds:>7}  {row.dollars:>9.2f}")
    lines.append(f"  {'total':<{width}}  {'':<10}  {'':>5}  {t.jobs:>5}  {t.seconds:>7}  {t.dollars:>9.2f}")
    for u in est.unconfirmed:
        lines.append(f"  * price unconfirmed: {u['model']}" + (f" ({u['note']})" if u["note"] else ""))
    if est.unconfirmed:
        lines.append("    set the real figures in a models file ($BATCHGEN_MODELS or ~/.config/batchgen/models.yaml) "
                     "or the manifest's models: block")
    if est.split is not None:
        lines.append(f"  against {est.state}:")
        for name in BUCKETS:
            a = est.split[name]
            extra = "  (not billed; paid again only with --retry-failed)" if name == "failed" and a.jobs else ""
            extra = extra or ("  (prices recorded at submit)" if name in ("paid", "in_flight") and a.jobs else "")
            lines.append(f"    {_LABELS[name]:<13} {a.jobs:>5} {'job ' if a.jobs == 1 else 'jobs'} {a.seconds:>7} s "
                         f"  {'$' + format(a.dollars, '.2f'):>10}{extra}")
        other = est.other_in_state
        if other and other["jobs"]:
            lines.append(f"    not in this manifest: {_jobs(other['jobs'])} in the state "
                         f"(${other['dollars']:.2f} committed), left as they are")
    if est.max_cost is not None:
        lines.append(_cap_line(est))
    if est.fallback is not None:
        lines += _fallback_lines(est.fallback, est.split is not None)
    return "\n".join(lines)


def _cap_line(est: Estimate) -> str:
    cap = est.max_cost
    if est.split is not None:
        committed = est.split["paid"].dollars + est.split["in_flight"].dollars
        need = round(committed + est.split["to_pay"].dollars, 2)
        subject = f"${committed:.2f} committed + ${est.split['to_pay'].dollars:.2f} to pay = ${need:.2f}"
    else:
        need = est.total.dollars
        subject = f"${need:.2f}"
    if need <= cap + 1e-9:
        return f"  max_cost ${cap:.2f}: {subject} fits"
    return (f"  max_cost ${cap:.2f}: {subject} does not fit; the run will refuse to start (--partial runs "
            "the jobs that fit; raise max_cost or --max-cost to finish)")


def _fallback_lines(fb: Fallback, with_state: bool) -> list[str]:
    which = "still to submit on other models" if with_state else "on other models"
    if not fb.jobs:
        return [f"  fallback {fb.model}: no job {which}; nothing would move to it"]
    accepted = "all" if fb.accepted_jobs == fb.jobs else f"the {fb.accepted_jobs} it accepts"
    lines = [f"  fallback {fb.model}: the {_jobs(fb.jobs)} {which} cost ${fb.dollars_asked:.2f} as asked; "
             f"on the fallback, {accepted} would cost ${fb.dollars_on_fallback:.2f}"]
    for item in fb.not_accepted:
        lines.append(f"    {_jobs(item['jobs'])} could not fall back: {item['problem']}")
    return lines


def _jobs(n: int) -> str:
    return f"{n} job{'s' if n != 1 else ''}"


def estimate_command(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.manifest, user_model_table())
    state = None
    if args.state is not None:
        if not args.state.is_file():
            raise StateError(f"{args.state}: no such state file; it is written by 'batchgen run' "
                             "(default <out>/state.jsonl); leave out --state to price the whole manifest")
        state = load(args.state)
    est = estimate(manifest, state, str(args.state) if args.state is not None else None)
    print(json.dumps(est.to_json(), indent=2) if args.json else render(est))
    return 0
