"""Which jobs in flight the provider is generating and which wait in its queue.

A provider that queues over the account's concurrency (WaveSpeed, API.md v2 "Account limits")
starts a queued task the moment a slot frees, oldest first. A queued job cannot finish before it
starts, so its reads wait until a job ahead of it ends; it then starts when that job ended at the
provider (its reported generation time after its own start), not when a read noticed: counting
from the read would push every later job's window back by the read lag, wave after wave.
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import TYPE_CHECKING

from .pacing import Clock

if TYPE_CHECKING:
    from .schedule import Watch


class ServerQueue:
    """The provider's slots as far as this run can tell; ``capacity`` None: every job starts at once."""

    def __init__(self, capacity: int | None, clock: Clock, lags: int = 64):
        self.capacity = capacity
        self._clock = clock
        self.serving = 0
        self.waiting: deque["Watch"] = deque()
        #: Seconds from a job's end at the provider to the run noticing it (the read lag).
        self._lags: deque[float] = deque(maxlen=lags)

    def admit(self, watch: "Watch") -> None:
        if self.capacity is None or self.serving < self.capacity:
            self.serving += 1
        else:
            watch.queued = True
            self.waiting.append(watch)

    def leave(self, watch: "Watch", took: float | None) -> None:
        """``watch``'s job ended (``took``: the time it reported) or was given up: the oldest waiting
        job starts when it ended at the provider."""
        if watch.queued:
            # It ended while thought queued (a delivery, a safety read): it had a slot after all.
            watch.queued = False
            self.waiting.remove(watch)
            return
        ended = self.end_of(watch, took)
        if took is not None and ended < self._clock():
            self._lags.append(self._clock() - ended)
        self.serving -= 1
        if self.waiting:
            heir = self.waiting.popleft()
            heir.queued = False
            heir.started = ended
            self.serving += 1
            heir.handed.set()

    def end_of(self, watch: "Watch", took: float | None) -> float:
        """When ``watch``'s job ended at the provider, from the time it reported.

        Counted from its start, or now when that lies ahead: the job may have started before its
        estimate (jobs ahead end in another order than they are noticed). But a queued job whose
        time, counted from its start, ends later than the read lag can explain counted its wait in
        the provider's queue (the simulator's timings.inference does; upstream it is undocumented):
        its end is its submit plus that time. Taking now instead would push the next job's start,
        and every later wave's, back by the read lag."""
        now = self._clock()
        if took is None:
            return now
        if watch.started + took > now + (self.lag() or 0.0):
            return min(now, watch.submitted + took)
        # It was still running when last read unfinished: a start estimated too early (a job ahead of
        # it noticed late, or out of order) would hand that error on to the next job, wave after wave.
        return min(now, max(watch.started + took, watch.last_miss or 0.0))

    def generation(self, watch: "Watch", took: float | None) -> float | None:
        """The job's own generation time (without its wait in the queue), for learning the window."""
        if took is None or watch.started == watch.submitted:
            return took
        return max(0.0, self.end_of(watch, took) - watch.started)

    def lag(self) -> float | None:
        """The typical read lag so far (its upper quartile: the queue must outlast most lags)."""
        if not self._lags:
            return None
        if len(self._lags) < 4:
            return max(self._lags)
        return statistics.quantiles(self._lags, n=4)[2]
