"""Settling jobs whose submit answer was lost (``unknown``): recovered or proven absent, never guessed.

For each model, the provider's listing is read over a window around the jobs' intent times (with a
margin for clock skew). An item carrying its request ``input`` is matched to a job exactly, by its
body hash. Items without it are candidates when the state has never known their id; each one's
output is fetched and compared with the jobs (matching.py), and a pairing unique both ways is
adopted. A candidate nobody can claim stays in ``<out>/unmatched/`` (unmatched.py).

"Never created" is concluded only when the listing was read completely, over a window the provider
still keeps, and no candidate of that model is left unclaimed; only then is a job submitted again.
Anything else leaves it unknown (``--resubmit-unknown`` is the user's explicit override).

Reading is free, so it happens before the spend is confirmed: ``survey`` writes no state, ``settle``
turns its findings into the plan's lists and the events to write once the user said yes.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from .candidates import CandidateFetcher, Fetched
from .errors import BatchgenError, TransientError
from .jobs import JobSpec
from .matching import assign, pairings
from .planner import Plan
from .providers.base import ListedPrediction, Listing, Provider
from .retry import retrying
from .state import State
from .state_events import Completed, Event, Submitted, Unsent
from .unmatched import record

log = logging.getLogger("batchgen")

#: Never wait longer than this for a request sent just before a crash (an intent stamped in the future
#: by a wrong clock must not make a run sleep for a day).
MAX_GRACE_WAIT = 60.0


@dataclass(frozen=True)
class Adopted:
    """A lost submit found: the job's prediction, and its video when matching fetched it already."""

    job: JobSpec
    pid: str
    model: str
    status: str
    outputs: tuple[str, ...] = ()
    fetched: Fetched | None = None


@dataclass
class Findings:
    adopted: list[Adopted] = field(default_factory=list)
    #: Proven never created: submitted again (a payment).
    absent: list[JobSpec] = field(default_factory=list)
    #: Job key -> why it stays unknown.
    unknown: dict[str, str] = field(default_factory=dict)
    #: Candidates no job could be matched to (kept in unmatched/ when their video could be fetched).
    strays: list[Fetched] = field(default_factory=list)


@dataclass(frozen=True)
class Survey:
    """What a survey needs besides the jobs: the provider, the state, the clock and the options."""

    provider: Provider
    state: State
    fetcher: CandidateFetcher
    options: Any
    sleep: Callable[[float], Any]
    clock: Callable[[], float]


async def survey(unknown: list[JobSpec], s: Survey) -> Findings:
    """Read the listing for every unknown job; writes no state (the kept videos aside)."""
    await wait_grace(unknown, s)
    return await match(unknown, await read_listings(unknown, s), s)


async def wait_grace(unknown: list[JobSpec], s: Survey) -> None:
    """A request sent just before a crash (or a lost answer) may still be in the server's hands."""
    newest = max((s.state.record(j.key).submitted_at or 0) for j in unknown)
    wait = min(newest + s.options.unknown_grace - s.clock(), MAX_GRACE_WAIT)
    if wait > 0:
        await s.sleep(wait)


#: A model's listing, or why it could not be read.
Listings = dict[str, "Listing | str"]


async def read_listings(unknown: list[JobSpec], s: Survey, *, retry: bool = True) -> Listings:
    """Each model's listing over a window around its jobs' intent times (with a margin for clock skew).
    ``retry`` False: one try each, and a transient error goes up (the caller backs off, settling.py)."""
    listings: Listings = {}
    for model, jobs in sorted(_by_model(unknown, s).items()):
        times = [s.state.record(j.key).submitted_at or 0.0 for j in jobs]
        margin, f = s.options.listing_margin, s.fetcher
        try:
            # Reading the listing changes nothing at the provider: a transient error is worth another try,
            # or one 5xx would leave every lost submit of the model unsettled for the whole run.
            listing = await retrying(lambda: s.provider.list_predictions(
                model=model, created_after=min(times) - margin, created_before=max(times) + margin),
                f.retry, sleep=f.sleep, rng=f.rng, what=f"list {model}", attempts=None if retry else 1)
        except BatchgenError as exc:
            if not retry and isinstance(exc, TransientError):
                raise
            log.warning("cannot list %s predictions to settle %d unknown job(s): %s", model, len(jobs), exc)
            listings[model] = f"the provider's listing failed ({exc})"
        else:
            listings[model] = listing if listing is not None else "the provider offers no listing of its predictions"
    return listings


#: Why a job stays unknown when its listing was read before its grace ended (settling.py reads it again).
TOO_RECENT = "its submit is too recent for the listing to prove it was never created"


async def match(unknown: list[JobSpec], listings: Listings, s: Survey, read_at: float | None = None) -> Findings:
    """Settle each unknown job from its model's listing (read_listings, started at ``read_at``: a job
    whose grace had not ended by then may be found, but is not concluded never created)."""
    found = Findings()
    for job in unknown:
        if s.state.record(job.key).submitted_at is None:
            found.unknown[job.key] = "the state has no time for its submit, so no listing window can hold it"
    for model, jobs in sorted(_by_model(unknown, s).items()):
        listing = listings.get(model, "its model's listing was not read")
        if isinstance(listing, str):
            found.unknown.update((j.key, listing) for j in jobs)
            continue
        sent = {j.key: s.state.record(j.key).submitted_at or 0.0 for j in jobs}
        left, candidates = _by_input(jobs, listing, s, found)
        strays = await _by_output(left, candidates, s, found)
        adopted = {a.job.key for a in found.adopted}
        recent = set() if read_at is None else {
            j.key for j in left if j.key not in adopted and sent[j.key] + s.options.unknown_grace > read_at}
        found.unknown.update((key, TOO_RECENT) for key in recent)
        _conclude([j for j in left if j.key not in adopted | recent], listing, strays,
                  min(sent.values()) - s.options.listing_margin, s, found)
    return found


def _by_model(unknown: list[JobSpec], s: Survey) -> dict[str, list[JobSpec]]:
    """The jobs a listing window can hold (their submit time is recorded), by the model they went to."""
    by_model: dict[str, list[JobSpec]] = defaultdict(list)
    for job in unknown:
        rec = s.state.record(job.key)
        if rec.submitted_at is not None:
            by_model[rec.submit_model or job.model].append(job)
    return by_model


def _by_input(jobs: list[JobSpec], listing: Listing, s: Survey, found: Findings
              ) -> tuple[list[JobSpec], list[ListedPrediction]]:
    """Adopt the items whose input is a job's body; the jobs left and the items without input."""
    state = s.state
    # Every task a job ever had, its earlier failed ones too, belongs to that attempt, never to a lost answer.
    known = {pid for r in state.jobs.values() for pid in (r.pid, *r.past_pids) if pid}
    fresh = sorted((i for i in listing.items if i.id not in known), key=lambda i: (i.created_at or 0, i.id))
    free: dict[str, list[ListedPrediction]] = defaultdict(list)
    for item in fresh:
        if item.input is not None:
            free[item.body_hash].append(item)
    left = []
    for job in jobs:
        matches = free.get(state.record(job.key).body_hash)
        if matches:
            item = matches.pop(0)  # oldest first, so identical takes pair up in submit order
            found.adopted.append(Adopted(job, item.id, item.model, item.status, item.outputs))
            log.info("job %s: found its lost submit on the provider as %s (same request)", job.id, item.id)
        else:
            left.append(job)
    return left, [i for i in fresh if i.input is None]


async def _by_output(jobs: list[JobSpec], candidates: list[ListedPrediction], s: Survey,
                     found: Findings) -> list[Fetched]:
    """Fetch each candidate, adopt the unique pairings; the candidates left unclaimed."""
    if not candidates:
        return []
    fetched = [await s.fetcher.fetch(item) for item in candidates]
    seen = {f.item.id: f.clip for f in fetched if f.clip is not None}
    chosen = assign(pairings(seen, jobs, s.options.duration_tolerance)) if jobs else {}
    by_key = {j.key: j for j in jobs}
    strays = []
    for f in fetched:
        job = by_key.get(chosen.get(f.item.id, ""))
        if job is not None:
            found.adopted.append(Adopted(job, f.item.id, f.pred.model or f.item.model, "completed",
                                         f.pred.outputs, f))
            log.info("job %s: found its lost submit on the provider as %s (its output matches)", job.id, f.item.id)
            _note(s, f, matched_to=job.id)
        elif not f.failed:
            strays.append(f)
            _note(s, f, why=f.why or _why_unclaimed(f.item.id, jobs, seen))
    found.strays += strays
    return strays


def _why_unclaimed(pid: str, jobs: list[JobSpec], seen: dict) -> str:
    if not jobs:
        return "no unknown job of its model was left to match it to"
    return ("it fits none of the unknown jobs, or more than one (same shape and picture)" if pid in seen
            else "its output could not be compared")


def _note(s: Survey, f: Fetched, **info: Any) -> None:
    """The kept video's sidecar: what it is, and why it is still there (or whose it is)."""
    if f.path is None:
        return
    record(s.options.out_dir, f.item.id, {
        "model": f.item.model, "created_at": f.item.created_at, "status": f.item.status, "why": info.get("why"),
        "matched_to": info.get("matched_to"), "sha256": f.got.sha256 if f.got else None,
        "bytes": f.got.bytes if f.got else None})


def _conclude(jobs: list[JobSpec], listing: Listing, strays: list[Fetched], window_start: float, s: Survey,
              found: Findings) -> None:
    """The jobs still without a prediction: proven never created, or unknown with the reason."""
    lifetime = s.provider.policy.output_lifetime
    if not listing.complete:
        why = "the provider's listing could not be read to its end"
    elif strays:
        why = f"{len(strays)} prediction(s) of its model in the window could not be matched (see unmatched/)"
    elif lifetime is not None and s.clock() - window_start >= lifetime:
        why = "its submit is older than the provider keeps predictions, so the listing cannot prove it absent"
    else:
        why = ""
    for job in jobs:
        if why:
            found.unknown[job.key] = why
        else:
            found.absent.append(job)
            log.info("job %s: its lost submit never reached the provider (listing read completely)", job.id)


def settle(plan: Plan, found: Findings, *, resubmit_unknown: bool) -> list[Event]:
    """Move the plan's unknown jobs where the findings put them; the events to write once confirmed."""
    events: list[Event] = []
    for a in found.adopted:
        events.append(Submitted(a.job.key, a.pid, a.model or None, reconciled=True))
        if a.status == "completed" and a.outputs:
            events.append(Completed(a.job.key, a.pid, tuple(a.outputs), a.model or None))
            (plan.adopt if a.fetched is not None else plan.download).append(a.job)
        else:
            plan.poll.append(a.job)
    for job in found.absent:
        events.append(Unsent(job.key, "reconciled", "the provider's complete listing has no task for it: "
                                                    "it was never created"))
        plan.submit.append(job)
    still = [j for j in plan.unknown if j.key in found.unknown]
    plan.resubmits = len(found.absent)
    if resubmit_unknown:
        events += [Unsent(j.key, "resubmit-unknown", "resubmitted on request (--resubmit-unknown)") for j in still]
        plan.submit += still
        plan.resubmits += len(still)
        still = []
    plan.unknown, plan.found = still, found
    return events
