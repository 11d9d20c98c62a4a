"""Keeping a provider's queue primed: with a provider that queues over its concurrency cap (and bills
at submit), a few tasks beyond the cap are kept in flight, so a slot that frees at the provider starts
the next task at once, whatever the read lag. The margin starts at its cap (the concurrency: the first
wave ends before anything can be measured), is sized from the measured read lag, submit time and
generation time once that is learned (pacing.QueueMargin), then only grows; it is announced whenever it
changes: queued tasks are paid like running ones (the budget, the spend prompt and Ctrl-C count them)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import events as ev
from .pacing import QueueMargin

if TYPE_CHECKING:
    from .jobs import JobSpec
    from .runner import Runner

log = logging.getLogger("batchgen")


class QueuePriming:
    def __init__(self, runner: "Runner"):
        self.r = runner
        opt = runner.opt
        self.margin = QueueMargin(opt.concurrency, opt.queue_margin) if runner.provider.policy.queues_over_limit \
            else None

    @property
    def in_flight(self) -> int:
        """How many tasks may be in flight at once: the cap, plus the margin for a queueing provider."""
        return self.r.opt.concurrency + (self.margin.value if self.margin else 0)

    def start(self) -> None:
        if self.margin is not None:
            self.announce("to start with" if not self.margin.fixed else "--queue-margin")

    async def resize(self, job: "JobSpec") -> None:
        """A job ended: grow the margin if the lag and the submit time measured call for it."""
        r = self.r
        if self.margin is None or not r.schedule.size_margin(self.margin, job.model, job.duration,
                                                              r.submitter.latency):
            return
        await r.slots.set_limit(self.in_flight)
        lag, generation = r.schedule.queue.lag(), r.schedule.expected(job.model, job.duration)
        self.announce(f"read lag {_seconds(lag, 1)}, submit {_seconds(r.submitter.latency, 2)}, "
                      f"generation {_seconds(generation, 1)}")

    def announce(self, why: str) -> None:
        m, concurrency = self.margin, self.r.opt.concurrency
        log.info("provider queue primed: up to %d generating + %d queued at the provider (%s; at most %d); "
                 "queued tasks are billed at submit", concurrency, m.value, why, m.cap)
        self.r.emit(ev.QueueMargin(concurrency=concurrency, margin=m.value))


def _seconds(value: float | None, digits: int) -> str:
    """A measured time for a log line; with webhooks nothing is read, so there may be no read lag yet."""
    return "not measured" if value is None else f"{value:.{digits}f}s"
