"""Reads in step at the end of a batch.

Once every job has been submitted, only the batch's end matters: the moment the last job to finish
is noticed. Read each on its own phase, a job is noticed up to one read floor (F, 5 s for video)
after it ends, and over the hundreds of jobs that end in a Gold batch's last seconds the latest of
those notices comes nearly F after the last end. Read on one common grid of times F apart, every job
is noticed at the first grid time after its end, so the batch's end is noticed at the first grid
time after the last end: on average F/2 after it. In the poll model (bench/poll_model.py, 10,000
jobs on 2,000 slots, 12 seeds) the last end was noticed 2.1 s after it instead of 3.5 s.

Only jobs whose reads the floor spaces (their window's own step is shorter than F) are read in step:
a 3-minute job read every 8 s across its window would be pushed to the grid's 5 s multiples, off
the times its window asks for, and so few of them end together that nothing is gained. Each job
keeps its read floor: a read is moved to a grid time the floor allows.
"""

from __future__ import annotations

import math

#: How much of a step a read's own duration may take before the next grid time counts as too early.
SLACK = 0.1


class ReadGrid:
    """Grid times ``anchor + k * step``; no grid until ``begin``."""

    def __init__(self) -> None:
        self.anchor: float | None = None

    def begin(self, now: float) -> None:
        """Draining began: read in step from now on."""
        if self.anchor is None:
            self.anchor = now

    def align(self, now: float, planned: float, floor: float, step: float) -> float:
        """The delay to the grid time nearest ``planned`` seconds from now, but not before ``floor``
        seconds from now (the read floor, rounded up to the grid).

        A read made at a grid time ends a little after it, and its floor counts from then: the grid
        time one step later counts as allowed (within ``SLACK`` of a step), or every job would skip
        one. The caller still sleeps out what is left of the floor before reading
        (PollSchedule.until_read), so the floor holds to the millisecond."""
        if self.anchor is None or step <= 0:
            return max(planned, floor)
        nearest = self.anchor + round((now + planned - self.anchor) / step) * step
        earliest = self.anchor + math.ceil((now + floor - self.anchor) / step - SLACK) * step
        return max(nearest, earliest, now) - now
