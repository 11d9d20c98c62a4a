"""Which jobs in flight the provider is generating and which wait in its queue.

A provider that queues over the account's concurrency (WaveSpeed, API.md v2 "Account limits")
starts a queued task the moment a slot frees, oldest first. A queued job cannot finish before it
starts, so its reads wait until a job ahead of it ends; it then starts when that job ended at the
provider (its reported generation time after its own start), not when a read noticed: counting
from the read would push every later job's window back by the read lag, wave after wave.

Ends are noticed in another order than they happen (reads answer in bursts, in any order), so the
start handed to a job is only provisional: oldest first, the k-th job to leave the queue started at
the k-th slot to free. The starts of the jobs that left the queue are kept rising in submit order,
and an end noticed late moves the later ones back (``_settle``).
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
        #: Whether the provider's reported generation times count the wait in its queue (None: not
        #: known yet); see ``_learn_wait``.
        self.wait_counted: bool | None = None
        #: The running jobs that left the queue for a slot, oldest first (at most ``capacity``): a dict
        #: for its order and its O(1) removal (a list's remove scanned 2,000 of them per job on Gold).
        self._heirs: dict["Watch", None] = {}
        #: Seconds from a job's end at the provider to the run noticing it (the read lag).
        self._lags: deque[float] = deque(maxlen=lags)
        #: ``lag()`` until a lag is added (None: to compute): asked a few times per job, it sorted them each time.
        self._lag: tuple[float | None] | None = None

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
            self._lag = None
        self.serving -= 1
        if watch.heir:
            watch.heir = False
            del self._heirs[watch]
        heir = None
        if self.waiting:
            heir = self.waiting.popleft()
            heir.queued = False
            heir.heir = True
            self.serving += 1
        if heir is not None or took is not None:
            self._settle(ended, heir)
        if heir is not None:
            heir.handed.set()

    def _settle(self, ended: float, heir: "Watch | None") -> None:
        """A slot freed at ``ended``: ``heir`` took it, or nobody waited as far as this run knows.

        The queue starts its oldest job first, so the starts of the jobs that left it rise in the order
        they left; each took a slot that freed no later than the one it is credited with. A job thought
        to start after ``ended`` took that slot instead, and each one after it the slot of the one
        before it; ``heir`` takes the last slot, or, with no heir, the latest start is dropped (that slot
        freed when nobody waited)."""
        later: list["Watch"] = []
        for w in reversed(self._heirs):
            if w.started <= ended:
                break
            later.append(w)
        later.reverse()
        if heir is not None:
            self._heirs[heir] = None
            later.append(heir)
        starts = [ended] + [w.started for w in later[:-1]]
        for w, start in zip(later, starts):
            w.started = start

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
        if self.wait_counted is None and watch.started > watch.submitted:
            self._learn_wait(watch, took, now)
        if self.wait_counted or (self.wait_counted is None and watch.started + took > now + (self.lag() or 0.0)):
            return min(now, watch.submitted + took)
        # It was still running when last read unfinished: a start estimated too early (a job ahead of
        # it noticed late, or out of order) would hand that error on to the next job, wave after wave.
        return min(now, max(watch.started + took, watch.last_miss or 0.0))

    def _learn_wait(self, watch: "Watch", took: float, now: float) -> None:
        """Whether the provider's reported times count the wait in its queue, once a job that waited
        says so beyond doubt: counted from its (estimated, never early) start it would end well after
        it was noticed, or counted from its submit it would end before a read found it running. Until
        then each job is judged alone (``end_of``), which a short wait leaves in doubt: a wait of a
        second or two, counted twice, credits the next job with a start that much late."""
        if watch.started + took > now + 2 * (self.lag() or 0.0) + 1.0 >= watch.submitted + took + 1.0:
            self.wait_counted = True
        elif watch.last_miss is not None and watch.submitted + took < watch.last_miss:
            self.wait_counted = False

    def generation(self, watch: "Watch", took: float | None) -> float | None:
        """The job's own generation time (without its wait in the queue), for learning the window."""
        if took is None or watch.started == watch.submitted:
            return took
        return max(0.0, self.end_of(watch, took) - watch.started)

    def lag(self) -> float | None:
        """The typical read lag so far (its upper quartile: the queue must outlast most lags)."""
        if self._lag is None:
            lags = self._lags
            self._lag = (None if not lags else max(lags) if len(lags) < 4 else statistics.quantiles(lags, n=4)[2],)
        return self._lag[0]
