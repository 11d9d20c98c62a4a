"""Reads in step at the end of a batch.

Once every job has been submitted, only the batch's end matters: the moment the last job to finish
is noticed. Read each on its own phase, a job is noticed up to one read floor (F, 5 s for video)
after it ends, and over the hundreds of jobs that end in a Gold batch's last seconds the latest of
those notices comes nearly F after the last end. Read on one common grid of times F apart, every job
is noticed at the first grid time after its end, so the batch's end is noticed at the first grid
time after the last end: on average F/2 after it. In the poll model (bench/poll_model.py, 10,000
jobs on 2,000 slots, 12 seeds) the last end was noticed 2.1 s after it instead of 3.5 s.

Where the grid's times fall matters as much: the batch's end lands anywhere between two of them, and
just after one it is noticed nearly F late. Once every job has left the provider's queue, the batch's
end is the latest of the running jobs' ends, each its (estimated) start plus a generation time drawn
from those this batch measured, past the last read that found it unfinished. Over hundreds of jobs
that latest end is known to within a second or two, well ahead: the grid is then moved so that a grid
time falls just after it (``aim``). Those starts are only as good as the provider's queue model
(server_queue.py keeps them rising in submit order). In the poll model, 10,000 jobs on 2,000 slots
over 12 seeds, the last end was then noticed 0.7 s after it on average and 2.0 s at worst (1.96 s and
4.85 s with the grid where the drain began it); 2,000 jobs on 400 slots over 30 seeds, 1.2 s and 4.8 s
(3.4 s and 5.0 s). With fewer jobs (q20: 128 on 32 slots) the end is never predicted that sharply
and the grid stays put.

Only jobs whose reads the floor spaces (their window's own step is shorter than F) are read in step:
a 3-minute job read every 8 s across its window would be pushed to the grid's 5 s multiples, off
the times its window asks for, and so few of them end together that nothing is gained. Each job
keeps its read floor: a read is moved to a grid time the floor allows.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Sequence

#: How far past a grid time a read's floor may end and the read still be made there (late by what is
#: left of the floor) rather than a whole step later: reads sent late in a burst of hundreds, or
#: planned before the grid moved (``aim``), would otherwise skip a grid time.
SLACK = 0.5
#: Aim only while the batch's end is predicted at least this many steps ahead: a move delays each
#: job's next read by up to a step (its floor still counts from the read before), so jobs must have
#: been read on the moved grid before the end can come. (Two steps ahead, the prediction was too
#: early to trust: the poll model's worst case went back to 4.7 s.)
LEAD = 1
#: The resolution, in seconds, of the predicted distribution of the batch's end (``aim``).
RESOLUTION = 0.1
#: Aim only when the batch's end is predicted within this share of a step (5 % to 95 %): a wider
#: prediction says little about where in a step the end falls, and every move costs some jobs a read
#: up to a step late.
SHARP = 0.5


class ReadGrid:
    """Grid times ``anchor + k * step``; no grid until ``begin``."""

    def __init__(self) -> None:
        self.anchor: float | None = None

    def begin(self, now: float) -> None:
        """Draining began: read in step from now on."""
        if self.anchor is None:
            self.anchor = now

    def aim(self, now: float, step: float, jobs: Iterable[tuple[float, float | None, Sequence[float]]]) -> bool:
        """Move the grid so that its times fall where the batch's end is noticed soonest, if that end
        is predicted sharply enough; True when it moved.

        ``jobs``: each running job's start, when a read last found it unfinished (None: never) and the
        sorted generation times measured for its kind. The batch ends at the latest job's end, so
        P(end <= m) is the product over jobs of P(its end <= m given it ran past its last read); the
        grid's offset is the one that minimises the expected wait from that end to the next grid time."""
        if self.anchor is None or step < 10 * RESOLUTION:
            return False  # a floor under a second: where its grid falls costs little
        kinds: Counter[tuple[float, float, int]] = Counter()
        gens_of: dict[int, Sequence[float]] = {}
        for start, unfinished, gens in jobs:
            low = max(start + gens[0], unfinished or start)
            if low - start >= gens[-1]:
                return False  # running past every time measured: its end is anyone's guess
            gens_of[id(gens)] = gens
            kinds[(round(start, 1), round(low, 1), id(gens))] += 1
        if not kinds:
            return False
        first = max(now - step, min(low for _, low, _ in kinds))
        last = max(start + gens_of[g][-1] for start, _, g in kinds)
        times = [first + i * RESOLUTION for i in range(int((last - first) / RESOLUTION) + 3)]
        cdf = _latest_of(times, kinds, gens_of)
        p05 = next((m for m, p in zip(times, cdf) if p >= 0.05), None)
        p95 = next((m for m, p in zip(times, cdf) if p >= 0.95), None)
        if p05 is None or p95 is None or p95 - p05 > SHARP * step or p05 < now + LEAD * step:
            return False
        mass = [(m, p - q) for m, p, q in zip(times, cdf, [0.0] + cdf) if p > q]
        # The grid time after an end m that lies in the past is the next one from now.
        offsets = [now + i * RESOLUTION for i in range(int(step / RESOLUTION))]
        self.anchor = min(offsets, key=lambda a: sum(p * ((a - max(m, now)) % step + max(0.0, now - m))
                                                      for m, p in mass))
        return True

    def align(self, now: float, planned: float, floor: float, step: float) -> float:
        """The delay to the grid time nearest ``planned`` seconds from now, but not before ``floor``
        seconds from now (the read floor, rounded up to the grid).

        A read sent late in a burst at one grid time has a floor that ends a little after the next
        one: that grid time still counts as allowed (within ``SLACK`` of a step), or the job would skip
        it and be read a whole step later. The caller still sleeps out what is left of the floor
        before reading (PollSchedule.until_read), so the floor holds to the millisecond. So does a grid
        time just past (a job woken a little late, or planned before the grid moved): it reads now."""
        if self.anchor is None or step <= 0:
            return max(planned, floor)
        nearest = self.anchor + round((now + planned - self.anchor) / step) * step
        earliest = self.anchor + math.ceil((now + floor - self.anchor) / step - SLACK) * step
        return max(nearest, earliest, now) - now


def _latest_of(times: list[float], kinds: Counter[tuple[float, float, int]],
               gens_of: dict[int, Sequence[float]]) -> list[float]:
    """P(every job has ended by m) for each m in ``times``: the product over jobs of the share of
    their kind's measured generation times that end by m, among those that end after ``low``."""
    logs = [0.0] * len(times)
    for (start, low, g), count in kinds.items():
        gens = gens_of[g]
        n = len(gens)
        before = bisect.bisect_right(gens, low - start)
        for i, m in enumerate(times):
            if logs[i] == -math.inf:
                continue
            ended = bisect.bisect_right(gens, m - start) - before
            logs[i] = logs[i] + count * math.log(ended / (n - before)) if ended > 0 else -math.inf
    return [math.exp(x) for x in logs]
