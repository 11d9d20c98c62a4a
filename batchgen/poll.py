"""Reading a submitted job's result on the learned schedule until the task ends."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import events as ev
from .errors import FatalError, PermanentError
from .jobs import JobSpec
from .lifecycle import JobStatus
from .providers.base import Prediction, PredictionStatus
from .providers.multi import member
from .retry import retry_transient, retrying
from .schedule import Watch
from .state_events import Completed, Failed

if TYPE_CHECKING:
    from .runner import Runner

log = logging.getLogger("batchgen")


class Poller:
    def __init__(self, runner: "Runner"):
        self.r = runner
        #: The watch of each job being polled, by job key: a delivery wakes it.
        self.watches: dict[str, Watch] = {}

    async def poll(self, job: JobSpec, just_submitted: bool = False) -> bool:
        """Read the result on the learned schedule until it ends (or a delivery says it did);
        True when completed."""
        rec = self.r.rec(job)
        # The provider's generation time starts when it answered the submit, not when the intent was
        # written: under load the fsync and POST take long enough to make every first read early.
        elapsed = 0.0 if just_submitted or not rec.submitted_at else self.r.clock() - rec.submitted_at
        watch = self.watches[job.key] = self.r.schedule.watch(job.model, job.duration, elapsed)
        took = None
        try:
            await self.r.schedule.until_read(watch, self.r.sleep)
            while not watch.delivered.is_set():
                pred = await retrying(lambda: self._read(watch, rec.pid), self.r.retry, self._read_decide,
                                      sleep=self.r.sleep, rng=self.r.rng, what=f"result {rec.pid}",
                                      attempts=self.r.retry.attempts * 3)
                if pred.status is not PredictionStatus.CREATED and pred.status is not PredictionStatus.PROCESSING:
                    took = pred.inference_ms / 1000 if pred.inference_ms else None
                    return self.ended(job, pred)
                watch.missed()
                self.r.emit(ev.Generating(job=job, pid=rec.pid))
                await self.r.schedule.until_read(watch, self.r.sleep)
            took = watch.took
            return self.r.rec(job).status is JobStatus.COMPLETED
        finally:
            # Also when reading gave up or the run halted: a watch left open would count as a running
            # job in the schedule's estimate and horizon for the rest of the run.
            del self.watches[job.key]
            watch.close(took)
            await self.r.priming.resize(job)

    async def _read(self, watch: Watch, pid: str) -> Prediction:
        watch.asking()  # the read floor counts from here
        return await self.r.provider.result(pid)

    def delivered(self, job: JobSpec, pred: Prediction) -> None:
        """A verified delivery says the job's task ended: record it as a read would, wake its poll."""
        self.ended(job, pred)
        watch = self.watches.get(job.key)
        if watch is not None:
            watch.took = pred.inference_ms / 1000 if pred.inference_ms else None
            watch.delivered.set()

    def _read_decide(self, exc: BaseException) -> Any:
        if isinstance(exc, FatalError):
            self.r.stop(str(exc))
        return retry_transient(exc)

    def ended(self, job: JobSpec, pred: Prediction) -> bool:
        """Record a task's end as read (or delivered); True when it completed."""
        rec = self.r.rec(job)
        if pred.status is PredictionStatus.COMPLETED:
            if not pred.outputs:
                raise PermanentError(f"result {rec.pid}: completed without an output URL", job=job.id)
            self.completed(job, pred)
            return True
        billed = member(self.r.provider, rec.submit_model or job.model).policy.failed_tasks_billed
        cost = rec.cost if billed else 0.0
        message = pred.error or "the provider reported the task failed without a reason"
        self.r.state_log.append(Failed(job.key, "task", message, rec.attempts, cost))
        self.r.emit(ev.Failed(job=job, error=message, cls="task"))
        log.warning("job %s failed (task): %s", job.id, message)
        return False

    def completed(self, job: JobSpec, pred: Prediction) -> None:
        rec = self.r.rec(job)
        first = rec.status is not JobStatus.COMPLETED
        self.r.state_log.append(Completed(job.key, pred.id, tuple(pred.outputs), pred.model, pred.inference_ms))
        if first:
            took = pred.inference_ms / 1000 if pred.inference_ms else self.r.clock() - (rec.submitted_at or self.r.clock())
            watch = self.watches.get(job.key)
            if watch is not None:
                took = self.r.schedule.queue.generation(watch, took)
            self.r.schedule.observe(job.model, job.duration, took)
            if pred.model and pred.model != (rec.submit_model or job.model):
                log.warning("job %s asked for %s but the provider answered with %s", job.id, job.model, pred.model)
            self.r.emit(ev.Completed(job=job, model_used=pred.model, inference_ms=pred.inference_ms,
                                   fell_back=rec.fell_back))
