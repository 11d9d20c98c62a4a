"""Output deadlines: a provider that deletes finished outputs (Replicate: about an hour after a
prediction ends, ``ProviderPolicy.output_lifetime``) makes every paid, not yet downloaded video a
deadline. The run downloads before it submits when one nears, says loudly on resume which have
passed, and a video lost anyway is a failed job of class ``expired`` (paid, gone on the provider's
side), reported per job: never silent.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Mapping

from . import events as ev
from .jobs import JobSpec
from .lifecycle import JobRecord, JobStatus
from .providers.base import Provider
from .providers.multi import member

log = logging.getLogger("batchgen")

#: Seconds before a deadline from which new submits wait for the downloads (a 4k video downloads in
#: well under a minute; ten give a slow link and a long queue of them room).
DOWNLOAD_FIRST = 600.0
#: How often a held submit looks again.
HOLD_STEP = 1.0
#: The failure class of a paid video the provider deleted before batchgen could fetch it (one of
#: lifecycle.VERDICTS: --retry-failed submits such a job again).
EXPIRED = "expired"
#: Events after which a job no longer waits to be downloaded in this run.
_SETTLED = (ev.Downloaded, ev.Failed, ev.Stalled, ev.Unknown)


def deadline(rec: JobRecord, provider: Provider, model: str) -> float | None:
    """Epoch seconds after which the job's finished outputs may be gone; None when they stay."""
    lifetime = member(provider, rec.submit_model or model).policy.output_lifetime
    if lifetime is None or rec.completed_at is None:
        return None
    return rec.completed_at + lifetime


def expired_message(job: JobSpec, exc: Exception) -> str:
    return (f"{exc}; job {job.id} ({job.where}) was paid but its video is lost; --retry-failed submits "
            "it again (and pays again)")


class Deadlines:
    """The completed, not yet downloaded jobs of this run whose outputs will be deleted."""

    def __init__(self, provider: Provider, clock: Callable[[], float], sleep):
        self.provider, self.clock, self.sleep = provider, clock, sleep
        self.pending: dict[str, float] = {}

    def add(self, job: JobSpec, rec: JobRecord) -> float | None:
        due = deadline(rec, self.provider, job.model)
        if due is not None:
            self.pending[job.key] = due
        return due

    def see(self, event: ev.RunEvent, rec_of: Callable[[JobSpec], JobRecord]) -> None:
        """Follow the run's events: a completion starts a deadline, a download (or giving up) ends it."""
        if isinstance(event, ev.Completed):
            self.add(event.job, rec_of(event.job))
        elif isinstance(event, _SETTLED):
            self.pending.pop(event.job.key, None)

    def near(self) -> bool:
        soonest = min(self.pending.values(), default=None)
        return soonest is not None and soonest - self.clock() < DOWNLOAD_FIRST

    async def before_submit(self, stopping: Callable[[], bool]) -> None:
        """Hold a new submit while a paid video's deadline is near and it is not on disk yet."""
        if self.near():
            log.info("a finished video's download deadline is near: new submits wait for it")
        while self.near() and not stopping():
            await self.sleep(HOLD_STEP)

    def first(self, jobs: Iterable[JobSpec], rec_of: Callable[[JobSpec], JobRecord]) -> list[JobSpec]:
        """Jobs to download, soonest deadline first, each one loudly named when it has passed."""
        now, dated = self.clock(), []
        for job in jobs:
            due = self.add(job, rec_of(job))
            if due is not None and due <= now:
                log.warning("job %s (%s): its video finished %.0f min ago and the provider deletes outputs "
                            "after %.0f min: it is probably lost (it was paid); trying anyway", job.id, job.where,
                            (now - rec_of(job).completed_at) / 60, (due - rec_of(job).completed_at) / 60)
            dated.append((due if due is not None else float("inf"), job))
        return [job for _, job in sorted(dated, key=lambda pair: pair[0])]



def expired_summary(jobs: Iterable[JobSpec], records: Mapping[str, JobRecord]) -> str:
    """The end-of-run line naming every paid video the provider deleted first ("" when none was)."""
    ids = [job.id for job in jobs if (rec := records.get(job.key)) is not None
           and rec.status is JobStatus.FAILED and rec.error_class == EXPIRED]
    if not ids:
        return ""
    shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
    return (f"  LOST: {len(ids)} paid video(s) were deleted by the provider before they were downloaded "
            f"(expired): {shown}; 'batchgen status' lists them, --retry-failed submits them again")


__all__ = ["DOWNLOAD_FIRST", "EXPIRED", "Deadlines", "deadline", "expired_message", "expired_summary"]
