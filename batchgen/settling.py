"""Lost submits settled in the run that lost them.

A submit whose answer was lost (a 500 after sending, a dropped connection) makes its job ``unknown``;
the provider may or may not have created (and billed) its task. Reconciliation (reconcile.py) settles
such jobs from the provider's listing at the start of the next run; here it also runs inside the run
that lost them, so one flaky answer does not leave a job for a second run: the job keeps its slot,
waits for the same grace, and joins the other jobs lost meanwhile in one survey. A job found on the
provider is followed from there (polled, or downloaded), one proven never created is submitted again
(it was never billed), and one the listing cannot settle stays unknown for the next run, as before.

The listing is read while no submit is on the wire (``quiet``): a submit sent but not yet answered
would show there as a task nobody in the state knows, which no survey can tell from a lost one. So
submits wait at ``sending`` while the listing is read (a page or a few; submits resume at once after).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from . import events as ev, reconcile, recovery
from .jobs import JobSpec
from .lifecycle import JobStatus
from .planner import Plan
from .retry import retrying

if TYPE_CHECKING:
    from .runner import Runner

log = logging.getLogger("batchgen")

#: How many times one job's submit is settled and sent again in a run, at most: a provider that loses
#: every answer leaves the job to the next run rather than looping.
MAX_ROUNDS = 6


class Settler:
    def __init__(self, runner: "Runner"):
        self.r = runner
        self._pending: dict[str, JobSpec] = {}
        #: Job key -> what the job does next, once its round settled it (see ``settle``).
        self._next: dict[str, str | None] = {}
        self._surveying: asyncio.Event | None = None
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._sending = 0

    async def submit(self, job: JobSpec) -> str | None:
        """Submit ``job`` in the slot the runner took for it, settling a lost answer here; then 'poll'
        (its task generates: the slot stays taken), 'download' (its video is ready) or None (placed
        already, refused, stopped or still unknown); the slot is released unless 'poll'."""
        began = self.r.clock()
        try:
            after = await self._submit(job)
        except BaseException:
            await self.r.slots.release()
            raise
        if after == "poll":
            self.r.submitter.took(self.r.clock() - began)  # for the queue margin (Submitter.took)
        else:
            await self.r.slots.release()  # a slot held with nothing generating would leak
        return after

    async def _submit(self, job: JobSpec) -> str | None:
        r = self.r
        submitted = await r.submitter.submit(job)
        for _ in range(MAX_ROUNDS):
            if submitted or r.stopping or r.rec(job).status is not JobStatus.UNKNOWN:
                break
            after = await self.settle(job)
            if after != "submit":
                return after
            submitted = await r.submitter.submit(job)
        return "poll" if submitted else None

    async def settle(self, job: JobSpec) -> str | None:
        """Settle ``job``'s lost submit with every other one lost by then: one survey at a time, the
        next one takes the jobs lost while it ran. What the job does next (as ``submit`` says, or
        'submit': it was never created)."""
        self._pending[job.key] = job
        while job.key in self._pending and not self.r.stopping:
            running = self._surveying
            if running is not None:
                await running.wait()
                continue
            self._surveying = asyncio.Event()
            try:
                await self._survey()
            finally:
                self._surveying.set()
                self._surveying = None
        self._pending.pop(job.key, None)
        return self._next.pop(job.key, None)

    async def _survey(self) -> None:
        r, s = self.r, recovery.surveyor(self.r)
        try:
            await reconcile.wait_grace(list(self._pending.values()), s)
            jobs, read_at, listings = await self._read_quietly(s)
            plan = Plan(unknown=list(jobs))
            found = await reconcile.match(jobs, listings, s, read_at)
            # --resubmit-unknown is for jobs the user was shown unknown, never for answers lost just now.
            r.commit(reconcile.settle(plan, found, resubmit_unknown=False))
            await recovery.adopt(r, plan)
        except Exception as exc:  # noqa: BLE001 - settling is a shortcut: the next run's reconciliation stays
            log.warning("could not settle %d lost submit(s) in this run (%s: %s); the next run does",
                        len(self._pending), type(exc).__name__, exc)
            jobs, plan = list(self._pending.values()), Plan(unknown=list(self._pending.values()))
        placed = {j.key for j in plan.adopt} - {j.key for j in plan.download}
        again = {key for key, why in (plan.found.unknown.items() if plan.found else ()) if why == reconcile.TOO_RECENT}
        following = {j.key: "poll" for j in plan.poll} | {j.key: "download" for j in plan.download}
        resent = {j.key for j in plan.submit}
        for job in jobs:
            if job.key in again or job.key not in self._pending:
                # Lost too recently for the listing read: the next survey reads it again. Not waiting here
                # (unknown since earlier): what the survey found is in the state, for the next run.
                continue
            self._pending.pop(job.key, None)
            self._next[job.key] = following.get(job.key) or ("submit" if job.key in resent else None)
            if job.key in following:
                rec = r.rec(job)
                r.emit(ev.Submitted(job=job, pid=rec.pid, model=rec.submit_model or job.model, cost=rec.cost))
        still = len(plan.unknown) - len(again)
        (log.warning if still else log.info)(
            "lost submit(s) settled from the provider's listing: %d found there (not paid again), %d never "
            "created (sent again), %d still unknown (the next run settles them)", len(following) + len(placed),
            len(resent), still)

    async def _read_quietly(self, s: reconcile.Survey) -> tuple[list[JobSpec], float, reconcile.Listings]:
        """The listings, read while no submit is on the wire, for every job unknown then; and when the
        read began. A transient error is retried after a backoff spent with the gate open: retried
        behind the shut gate, it stopped every submit of the run (under 20 % 5xx a survey's backoffs of
        5-7 s in a row stalled the whole batch). The listing is then read again whole, for the jobs
        unknown by then."""
        r = self.r

        async def once() -> tuple[list[JobSpec], float, reconcile.Listings]:
            async with self.quiet():
                # No answer can be lost meanwhile: every job lost by now is in this survey, and so is every
                # other job still unknown (left so by an earlier survey or the run's start): a task that fits
                # two of them stays unclaimed, never given to whichever is surveyed alone later.
                jobs, read_at = self._unknown(), r.clock()
                return jobs, read_at, await reconcile.read_listings(jobs, s, retry=False)

        return await retrying(once, r.retry, sleep=r.sleep, rng=r.rng, what="list (submits go on meanwhile)")

    def _unknown(self) -> list[JobSpec]:
        """The jobs waiting here, then the run's other jobs the state holds unknown."""
        r = self.r
        return list(self._pending.values()) + [job for job in r.jobs if job.key not in self._pending
                                               and r.rec(job).status is JobStatus.UNKNOWN]

    @asynccontextmanager
    async def sending(self) -> AsyncIterator[None]:
        """Around a submit's POST: it waits while the listing is read, and is counted on the wire."""
        while not self._open.is_set():
            await self._open.wait()
        self._sending += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._sending -= 1
            if not self._sending:
                self._idle.set()

    @asynccontextmanager
    async def quiet(self) -> AsyncIterator[None]:
        """Hold new submits back and wait for those on the wire to be answered."""
        self._open.clear()
        try:
            await self._idle.wait()
            yield
        finally:
            self._open.set()
