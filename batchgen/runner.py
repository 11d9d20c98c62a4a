"""The batch runner: orchestration only. Bounds (slots, pacing, budget), one task per job driving it
through its lifecycle, typed run events out.

Promises, in order: never pay twice (an intent line is durable before every POST, a POST is retried
only when the answer proves no task was created, a lost answer makes the job ``unknown``); never
lose a finished video (``.part`` files, verify, rename, older videos set aside); resume is the same
command again. Deciding is planner.py's, submitting submit.py's, fetching fetch.py's, settling lost
submits reconcile.py's (settling.py's in the run that lost them); the provider talks; the StateLog
remembers; observers show.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from . import events as ev, recovery
from .api_origin import identity
from .budget import Budget
from .deadlines import EXPIRED, Deadlines, expired_message
from .deliveries import Deliveries
from .errors import BatchgenError, DiskFullError, FatalError, OutputExpiredError, TransientError
from .fetch import Fetcher
from .heap import frozen_heap
from .jobs import JobSpec
from .lifecycle import JobStatus, is_unfinished
from .models import ModelTable
from .planner import Plan, PlanOptions, files_present, plan
from .providers.base import Provider
from .retry import RetryPolicy
from .pacing import Pacer, Slots, TokenBucket
from .priming import QueuePriming
from .poll_policy import PollPolicy
from .schedule import PollSchedule
from .settling import Settler
from .sidecars import videos_on_disk
from .state import JobRecord, StateLog
from .state_events import Event, Failed, Run, Unknown
from .poll import Poller
from .submit import Submitter
from .uploads import Uploads
from .verifier import Verifier

log = logging.getLogger("batchgen")


@dataclass
class RunOptions:
    out_dir: Path
    concurrency: int = 4
    download_concurrency: int = 4
    retry_failed: bool = False
    resubmit_unknown: bool = False
    max_cost: float | None = None
    submit_interval: float = 0.2
    max_download_bytes: int = 4 << 30
    duration_tolerance: float = 0.6
    unknown_grace: float = 3.0
    #: Seconds added on both sides of the listing window around lost submits (clock skew with the provider).
    listing_margin: float = 600.0
    #: Longest wait for a still-generating prediction that may be a lost submit (only its output can tell).
    candidate_wait: float = 600.0
    #: Consecutive "unavailable" submit answers from a model before its jobs go to their fallback.
    fallback_after: int = 3
    #: Submits per minute the account allows (its videos/min); None: no bucket, 429s pace.
    videos_per_minute: float | None = None
    #: Tasks queued at the provider beyond ``concurrency`` (a provider that queues); None: sized
    #: from the read lag and the submit time (pacing.QueueMargin).
    queue_margin: int | None = None
    #: The public URL deliveries come to, and where the listener binds (deliveries.py).
    webhook_url: str | None = None
    listen: tuple[str, int] = ("127.0.0.1", 8787)
    poll: PollPolicy = field(default_factory=PollPolicy)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    seed: int | None = None


@dataclass
class RunResult:
    plan: Plan
    #: Jobs of the manifest by status at the end of the run.
    counts: Counter
    committed: float
    halted: str = ""
    fallbacks: list[str] = field(default_factory=list)
    wall: float = 0.0

    @property
    def unfinished(self) -> int:
        return sum(n for status, n in self.counts.items() if is_unfinished(status))

    @property
    def exit_code(self) -> int:
        if self.halted:
            return 3
        return 1 if self.counts[JobStatus.FAILED] or self.counts[JobStatus.UNKNOWN] or self.unfinished else 0


class Runner:
    def __init__(self, jobs: list[JobSpec], provider: Provider, state_log: StateLog, models: ModelTable,
                 options: RunOptions, *, verifier: Verifier, observer: ev.Observer | None = None,
                 sleep=asyncio.sleep, clock: Callable[[], float] = time.time):
        self.jobs, self.provider, self.state_log, self.models, self.opt = jobs, provider, state_log, models, options
        self.observer = observer or (lambda event: None)
        self.sleep, self.clock = sleep, clock
        self.rng = random.Random(options.seed)
        self.retry = options.retry
        queues = provider.policy.queues_over_limit
        self.schedule = PollSchedule(options.poll, self.rng, capacity=options.concurrency if queues else None,
                                     downloads=options.download_concurrency)
        self.pacer = Pacer(options.submit_interval, sleep=sleep)
        self.bucket = (TokenBucket(options.videos_per_minute, clock=clock, sleep=sleep)
                       if options.videos_per_minute else None)
        self.priming = QueuePriming(self)
        self.slots = Slots(self.priming.in_flight)
        self.budget = Budget(options.max_cost, lambda: self.state_log.state)
        self.deadlines = Deadlines(provider, clock, sleep)
        self.uploads = Uploads(provider, state_log, self.retry, clock=clock, sleep=sleep, rng=self.rng,
                               on_upload=lambda job, url: self.emit(ev.Uploaded(job=job, url=url)))
        self.fetcher = Fetcher(provider, state_log, verifier, options, self.retry, sleep=sleep, rng=self.rng,
                               on_completed=lambda job, pred: self.poller.completed(job, pred),
                               on_downloading=lambda job: self.emit(ev.Downloading(job=job)))
        self.submitter = Submitter(self)
        self.settler = Settler(self)
        self.poller = Poller(self)
        self.hooks = Deliveries(self)
        self.halted, self.stopping = "", False

    # -- bookkeeping ------------------------------------------------------------------
    @property
    def state(self):
        return self.state_log.state

    def rec(self, job: JobSpec) -> JobRecord:
        return self.state.record(job.key)

    def emit(self, event: ev.RunEvent) -> None:
        self.deadlines.see(event, self.rec)
        try:
            self.observer(replace(event, committed=round(self.state.committed, 2)))
        except Exception as exc:  # noqa: BLE001 - e.g. stderr piped into a closed `head`
            # Showing progress is optional; a paid job must never fail because its display did.
            self.observer = lambda event: None
            log.warning("progress display stopped (%s: %s); the run goes on", type(exc).__name__, exc)

    def stop(self, reason: str = "", *, halt: bool = True) -> None:
        """No new submits; what is in flight is polled and downloaded. ``halt`` marks a stop the user
        must act on (bad key, balance, budget: exit 3); after an interrupt the same command resumes."""
        if halt and reason and not self.halted:
            self.halted = reason
        if not self.stopping:
            self.stopping = True
            self.schedule.drain()
            self.emit(ev.Stopping(reason=reason or "interrupted", halt=halt and bool(reason)))

    def price(self, job: JobSpec, model: str | None = None) -> float:
        return self.models.get(model or job.model).price(job.resolution, job.duration)

    # -- planning ---------------------------------------------------------------------
    async def prepare(self) -> tuple[Plan, list[Event]]:
        """The plan and the events recording it; nothing is written (see commit)."""
        # Every recorded job, not just the manifest's keys: a whitespace-only edit keeps its recorded one.
        present = files_present(self.state.jobs.values(), self.opt.out_dir)
        # Hashing the videos a lost state left behind reads whole files: off the event loop.
        found = await asyncio.to_thread(videos_on_disk, self.jobs, self.state.jobs, self.opt.out_dir,
                                        retry_failed=self.opt.retry_failed)
        return plan(self.jobs, self.state, present, PlanOptions(self.price, self.opt.retry_failed), found)

    def commit(self, events: list[Event]) -> None:
        for event in events:
            self.state_log.append(event)

    async def plan(self) -> Plan:
        """Plan and record it at once (for callers that ask nobody first)."""
        result, events = await self.prepare()
        self.commit(events)
        return result

    async def reconcile(self, plan: Plan) -> list[Event]:
        """Settle the plan's lost submits (recovery.py); the events are returned, none written."""
        return await recovery.reconcile(self, plan)

    # -- the run ----------------------------------------------------------------------
    async def run(self, plan: Plan | None = None) -> RunResult:
        started = self.clock()
        plan = plan or await self.plan()
        self.jobs = plan.jobs or self.jobs  # a whitespace-only prompt edit runs as its recorded job
        self._learn_from_earlier_runs()
        self.emit(ev.Planned(plan=plan))
        self.state_log.append(Run({"phase": "start", "jobs": len(self.jobs), "new": plan.new,
                                   "changed": plan.changed, "removed": plan.removed,
                                   **identity(self.provider.policy.name, self.provider.base_url)}))
        self.state_log.flush()
        self.commit(await self.reconcile(plan))
        await recovery.adopt(self, plan)
        await self.hooks.start()
        try:
            await self._drive(plan)
        finally:
            await self.hooks.close()
        counts = Counter(self.rec(j).status for j in self.jobs)
        self.state_log.append(Run({"phase": "end", "counts": {k.value: v for k, v in counts.items()},
                                   "halted": self.halted}))
        self.state_log.flush()
        if self.state_log.should_compact() or self.state_log.file_lost():
            self.state_log.compact()
        records = [self.rec(j) for j in self.jobs]
        return RunResult(plan=plan, counts=counts, committed=round(self.state.committed, 2), halted=self.halted,
                         fallbacks=[r.id for r in records if r.fell_back or r.switched],
                         wall=self.clock() - started)

    async def _drive(self, plan: Plan) -> None:
        with frozen_heap():
            async with asyncio.TaskGroup() as group:
                for left in plan.leftovers:
                    polled = self.rec(left).status is JobStatus.SUBMITTED
                    if polled:
                        self.slots.take()  # it generates at the provider like any job in flight
                    group.create_task(self._job(left, "poll" if polled else "download"))
                for job in plan.poll:
                    self.slots.take()
                    group.create_task(self._job(job, "poll"))
                for job in self.deadlines.first(plan.download, self.rec):
                    group.create_task(self._job(job, "download"))
                if not plan.submit:
                    self.schedule.drain()
                else:
                    self.priming.start()
                # A submit's task starts once it holds a slot: 10,000 waiting up front were a heap for the GC.
                for n, job in enumerate(plan.submit, 1):
                    await self.slots.acquire()
                    if n == len(plan.submit):
                        self.schedule.drain()  # the last job has its slot: only the batch's end matters now
                    group.create_task(self._job(job, "submit"))

    def _learn_from_earlier_runs(self) -> None:
        """A resumed batch starts with the generation times its earlier runs saw: no blind
        probing of the first wave, whose reads grow with how long the jobs take."""
        for job in self.jobs:
            rec = self.state.jobs.get(job.key)
            if rec is not None and rec.inference_ms:
                self.schedule.observe(job.model, job.duration, rec.inference_ms / 1000)

    async def _job(self, job: JobSpec, action: str) -> None:
        """One job from wherever it stands to a file on disk; failures end as data, not exceptions."""
        stage = [action]
        try:
            await self._advance(job, action, stage)
        except (FatalError, DiskFullError) as exc:
            self.stop(str(exc))
        except OutputExpiredError as exc:
            self._fail(job, EXPIRED, expired_message(job, exc))
        except TransientError as exc:
            # The job keeps its place (submitted or completed): the next run picks it up.
            self.emit(ev.Stalled(job=job, error=str(exc)))
            log.warning("job %s: %s kept failing (%s); it stays %s for the next run",
                        job.id, stage[0], exc, self.rec(job).status.value)
        except (BatchgenError, OSError, ValueError) as exc:
            message = str(exc) if isinstance(exc, BatchgenError) else f"{type(exc).__name__}: {exc}"
            self._fail(job, stage[0], message)
        except Exception as exc:  # noqa: BLE001 - a bug in one job must not cancel the batch
            log.exception("job %s: unexpected error during %s", job.id, stage[0])
            self._fail(job, "internal", f"unexpected {type(exc).__name__} during {stage[0]}: {exc}; please report it")

    async def _advance(self, job: JobSpec, action: str, stage: list[str]) -> None:
        if action == "submit":
            after = await self.settler.submit(job)  # in the slot _drive took, kept while a task generates
            if after is None:
                return
            stage[0] = after
        if stage[0] == "poll":
            try:
                done = await self.poller.poll(job, just_submitted=action == "submit")
            finally:
                await self.slots.release()
            if not done:
                return
        stage[0] = "download"
        got = await self.fetcher.fetch(job)
        self.emit(ev.Downloaded(job=job, path=got.path, bytes=got.bytes, sha256=got.sha256))

    def _fail(self, job: JobSpec, cls: str, message: str) -> None:
        rec = self.rec(job)
        if rec.status is JobStatus.SUBMITTING:
            # The POST may have gone out: only reconciliation can say whether it was paid.
            self.state_log.append(Unknown(job.key, message))
            self.emit(ev.Unknown(job=job, error=message))
            log.warning("job %s is unknown after an error while submitting: %s", job.id, message)
            return
        self.state_log.append(Failed(job.key, cls, message, rec.attempts))
        self.emit(ev.Failed(job=job, error=message, cls=cls))
        log.warning("job %s failed (%s): %s", job.id, cls, message)
