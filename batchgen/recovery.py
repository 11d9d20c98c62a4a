"""The run's side of lost submits: settle the plan's ``unknown`` jobs with the provider's listing
(reconcile.py decides; this reads it before the spend is confirmed, since listing costs nothing) and
put the videos it fetched for matched jobs in their places, so their bytes are not fetched again."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import events as ev
from .candidates import CandidateFetcher
from .errors import BatchgenError
from .planner import Plan
from .reconcile import Survey, settle, survey
from .state_events import Event
from .unmatched import forget, kept_copy

if TYPE_CHECKING:
    from .runner import Runner

log = logging.getLogger("batchgen")


def surveyor(r: "Runner") -> Survey:
    """What reading the listing and matching its items needs, from the runner."""
    poll, opt = r.opt.poll, r.opt
    fetcher = CandidateFetcher(r.provider, opt.out_dir.resolve(), r.retry, sleep=r.sleep, rng=r.rng, clock=r.clock,
                               wait_max=opt.candidate_wait, max_bytes=opt.max_download_bytes,
                               read_every=lambda model: max(poll.min_interval, poll.floor(model)))
    return Survey(r.provider, r.state, fetcher, opt, r.sleep, r.clock)


async def reconcile(r: "Runner", plan: Plan) -> list[Event]:
    """Move the plan's lost submits where the listing settles them; returns the events, writing none."""
    if not plan.unknown or plan.found is not None:
        return []
    found = await survey(list(plan.unknown), surveyor(r))
    return settle(plan, found, resubmit_unknown=r.opt.resubmit_unknown)


async def adopt(r: "Runner", plan: Plan) -> None:
    """Place the videos reconciliation fetched (also those a stopped run left in unmatched/ after
    recording the match)."""
    out = r.opt.out_dir
    found = {a.job.key: (a.fetched.path, a.fetched.got) for a in (plan.found.adopted if plan.found else ())
             if a.fetched is not None}
    for job in list(plan.download):
        copy = kept_copy(out, r.rec(job).pid)
        if copy is not None:
            found[job.key] = copy
            plan.download.remove(job)
            plan.adopt.append(job)
    for job in plan.adopt:
        path, got = found[job.key]
        try:
            placed = await r.fetcher.adopt(job, path, got)
        except (BatchgenError, OSError) as exc:
            log.warning("job %s: the video found for it cannot be placed (%s); it is downloaded", job.id, exc)
            plan.download.append(job)
            continue
        forget(out, r.rec(job).pid)
        r.emit(ev.Downloaded(job=job, path=placed.path, bytes=placed.bytes, sha256=placed.sha256))
