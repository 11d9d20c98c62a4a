"""Settling jobs whose submit answer was lost (``unknown``) against the provider's recent tasks.

A listed task no job knows, with the same request body, is the lost submit: the job becomes
submitted with it. When the listing is complete and holds no such task, the submit never reached
the provider and the job is submitted again. Otherwise the job stays unknown (or is sent again on
``--resubmit-unknown``, the user's explicit choice).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, Callable

from .errors import BatchgenError
from .jobs import JobSpec
from .planner import Plan
from .providers.base import ListedPrediction, Provider
from .state import StateLog
from .state_events import Submitted, Unsent

log = logging.getLogger("batchgen")

#: Never wait longer than this for a request sent just before a crash (an intent stamped in the future
#: by a wrong clock must not make a run sleep for a day).
MAX_GRACE_WAIT = 60.0


async def reconcile(result: Plan, provider: Provider, state_log: StateLog, options: Any, *,
                    sleep, clock: Callable[[], float]) -> None:
    """Move ``result.unknown`` jobs to poll or submit where the listing settles them."""
    state = state_log.state
    newest = max((state.record(j.key).submitted_at or 0) for j in result.unknown)
    wait = min(newest + options.unknown_grace - clock(), MAX_GRACE_WAIT)
    if wait > 0:
        await sleep(wait)  # a request sent just before a crash may still be in the server's hands
    listed, complete = await _list_window(result.unknown, provider, state_log, options.listing_margin, clock)
    still = list(result.unknown) if listed is None else _match(result, listed, complete, state_log)
    for job in still:
        if options.resubmit_unknown:
            state_log.append(Unsent(job.key, "resubmit-unknown", "resubmitted on request (--resubmit-unknown)"))
            result.submit.append(job)
    result.unknown = [] if options.resubmit_unknown else still


async def _list_window(unknown: list[JobSpec], provider: Provider, state_log: StateLog, margin: float,
                       clock: Callable[[], float]) -> tuple[list[ListedPrediction] | None, bool]:
    """The provider's predictions of the unknown jobs' models over a window that surely holds their
    submits (earliest intent to now, with clock-skew margins), and whether it was read completely."""
    after = min((state_log.state.record(j.key).submitted_at or 0) for j in unknown) - margin
    listed: list[ListedPrediction] = []
    complete = True
    try:
        for model in sorted({j.model for j in unknown}):
            listing = await provider.list_predictions(model=model, created_after=after, created_before=clock() + margin)
            if listing is None:
                return None, False
            listed += listing.items
            complete = complete and listing.complete
    except BatchgenError as exc:
        log.warning("cannot list recent predictions to reconcile unknown jobs: %s", exc)
        return None, False
    return listed, complete


def _match(result: Plan, listed: list[ListedPrediction], complete: bool, state_log: StateLog) -> list[JobSpec]:
    state = state_log.state
    # Every task a job ever had, its earlier failed ones too, belongs to that attempt, never to a lost answer.
    known_pids = {pid for r in state.jobs.values() for pid in (r.pid, *r.past_pids) if pid}
    free: dict[str, list[str]] = defaultdict(list)
    for item in reversed(listed):  # oldest first, so takes pair up in submit order
        if item.id not in known_pids:
            free[item.body_hash].append(item.id)
    # An unmatched item without its input may be a lost submit: never conclude "never created" then.
    complete = complete and not free.get("")
    still = []
    for job in result.unknown:
        rec = state.record(job.key)
        if free.get(rec.body_hash):
            pid = free[rec.body_hash].pop(0)
            state_log.append(Submitted(job.key, pid, reconciled=True))
            log.info("job %s: found its lost submit on the provider as %s", job.id, pid)
            result.poll.append(job)
        elif complete:
            state_log.append(Unsent(job.key, "reconciled", "the provider has no task for it: it was never created"))
            log.info("job %s: its lost submit never reached the provider; submitting it", job.id)
            result.submit.append(job)
        else:
            still.append(job)
    return still
