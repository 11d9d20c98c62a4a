"""Timing decisions: the learned poll schedule (its settings are poll_policy.py's; retry backoff is
retry.py's; submit pacing and the in-flight target are in pacing.py; the provider's queue is modelled in
server_queue.py; reads in step at a batch's end are read_grid.py's). Small classes; time is always a
parameter."""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time
from collections import defaultdict, deque

from .flags import Flag, wait_any
from .pacing import Clock, QueueMargin, Sleep
from .poll_policy import PollPolicy
from .read_grid import ReadGrid
from .server_queue import ServerQueue


class PollSchedule:
    """Learns generation time per (model, duration) from finished jobs of this batch."""

    def __init__(self, policy: PollPolicy, rng: random.Random, window: int = 256, *, clock: Clock = time.monotonic,
                 capacity: int | None = None, downloads: int | None = None):
        self.policy = policy
        #: How many downloads run at once (None: no limit); see ``horizon``.
        self.downloads = downloads
        #: How many of the jobs in flight the provider generates at once; the rest wait in its queue.
        self.queue = ServerQueue(capacity, clock)
        #: Deliveries tell when a job ends: reads are only a safety net for a lost one.
        self.webhooks = False
        self._rng = rng
        self._clock = clock
        self._seen: dict[tuple[str, int], deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self._per_second: deque[float] = deque(maxlen=window)
        self._probing: dict[tuple[str, int], int] = defaultdict(int)
        self._running: dict[tuple[str, int], set[Watch]] = defaultdict(set)
        self._cached: dict[tuple[str, int], tuple[float, int, tuple[float, float] | None]] = {}
        self._learned = Flag()
        self._draining = False
        self._horizon: tuple[float, float] | None = None
        #: While draining, reads spaced by the floor are made in step (read_grid.py).
        self.grid = ReadGrid()
        self._aimed: float | None = None

    def drain(self) -> None:
        """Nothing waits for a slot any more: from now on only the last job to finish sets the
        batch's end, so reads that could not change it are put off (see ``horizon``), and reads that
        the floor spaces are made in step (read_grid.py)."""
        self._draining = True
        self.grid.begin(self._clock())

    def in_step(self, planned: float, floor: float, model: str, step: float | None) -> float:
        """The wait before a read planned in ``planned`` seconds that the floor allows in ``floor``: while
        draining, moved to the batch's common read times if the floor, not the window's ``step``, is
        what spaces this job's reads (read_grid.py)."""
        gap = self.policy.floor(model)
        if self._draining and step is not None and step <= gap:
            self._aim(gap)
            return self.grid.align(self._clock(), planned, floor, gap)
        return max(planned, floor)

    def _aim(self, step: float) -> None:
        """Every half step while draining: once no job is thought to wait in the provider's queue (their
        starts are known then), move the read grid to where the batch's end is predicted
        (ReadGrid.aim), if every running kind of job has learned its generation times."""
        now = self._clock()
        if self.queue.waiting or (self._aimed is not None and now - self._aimed < step / 2):
            return
        self._aimed = now
        jobs = []
        for key, watches in self._running.items():
            seen = self._seen.get(key)
            if watches and (not seen or len(seen) < self.policy.min_samples):
                return
            if watches:
                gens = sorted(seen)
                jobs += [(w.started, w.last_miss, gens) for w in watches]
        self.grid.aim(now, step, jobs)

    def horizon(self) -> float | None:
        """While draining: the clock time before which the batch cannot end, as far as is known.

        Every running job ends at or after its submit plus the fastest time seen for its kind, so the
        batch ends no sooner than the latest of those. Reading another job earlier finds it done
        sooner, but frees nothing that waits and moves the end not at all: those reads are waste,
        as long as the videos read at the horizon are downloaded in one parallel round."""
        if not self._draining:
            return None
        now = self._clock()
        if self._horizon is not None and now - self._horizon[0] < 0.25:
            return self._horizon[1]
        latest = None
        if self.queue.waiting or (self.downloads is not None
                                  and sum(map(len, self._running.values())) > self.downloads):
            # Jobs thought to wait in the provider's queue start when a read notices a job ahead of
            # them end: a read put off would start them late, and their reads later still. And more
            # jobs than one round of parallel downloads would all be read at the horizon and then
            # downloaded in rounds after it, each round adding to the batch's end.
            self._horizon = (now, None)
            return None
        for key, watches in self._running.items():
            seen = self._seen.get(key)
            if not watches or not seen or len(seen) < self.policy.min_samples:
                continue
            # From each job's submit, not its start: a job that waited in the provider's queue has
            # only an estimated start, late by up to the read lag when the wait in its predecessor's
            # reported time went unrecognised (ServerQueue.end_of), and a horizon from it is no bound:
            # it would put reads off past the real end.
            end = max(w.submitted for w in watches) + min(seen)
            latest = end if latest is None else max(latest, end)
        self._horizon = (now, latest)
        return latest

    def observe(self, model: str, duration: int, seconds: float) -> None:
        if seconds > 0:
            self._seen[(model, duration)].append(seconds)
            self._per_second.append(seconds / max(1, duration))
            self._learned.set()

    def size_margin(self, margin: QueueMargin, model: str, duration: int, submit: float) -> bool:
        """Size ``margin`` for what this batch has measured of ``model`` at ``duration``: the read lag, the
        submit time, the generation time and how bunched jobs end (the learned window holds the share of
        them between its quantiles), once enough of them finished to trust; True when it changed."""
        window, p = self.window(model, duration), self.policy
        seen = self._seen.get((model, duration))
        return margin.fit(self.queue.lag() or 0.0, submit, self.expected(model, duration),
                          window[1] - window[0] if window else None, p.high_quantile - p.low_quantile,
                          learned=bool(seen) and len(seen) >= p.min_samples)

    def expected(self, model: str, duration: int) -> float | None:
        seen = self._seen.get((model, duration))
        if seen:
            return statistics.median(seen)
        if self._per_second:
            return statistics.median(self._per_second) * duration
        return self.policy.prior

    def window(self, model: str, duration: int) -> tuple[float, float] | None:
        """When this kind of job is expected to finish: (early, late) seconds after submit.

        Learned from finished jobs and from running ones read unfinished (see _estimate).
        Cached briefly, as hundreds of jobs ask at once."""
        key = (model, duration)
        now = self._clock()
        seen = self._seen.get(key)
        cached = self._cached.get(key)
        if cached is not None and now - cached[0] < 0.25 and cached[1] == (len(seen) if seen else 0):
            return cached[2]
        result = self._estimate(key, now)
        self._cached[key] = (now, len(seen) if seen else 0, result)
        return result

    def _estimate(self, key: tuple[str, int], now: float) -> tuple[float, float] | None:
        p = self.policy
        seen = self._seen.get(key)
        if seen and len(seen) >= p.min_samples:
            # A running job read unfinished at time r is "longer than r" (Kaplan-Meier): otherwise
            # the fastest jobs, which finish first, would drag the window early. Only a read is
            # evidence: a job not read for a while may long be done, and counting it as running
            # until now would drag the window late, then later (it is read later, so it runs longer).
            points = sorted([(t, 1) for t in seen]
                            + [(w._last_read - w.started, 0) for w in self._running.get(key, ()) if w._last_read])
            floor = low = high = None
            survival = 1.0
            for i, (t, finished) in enumerate(points):
                if finished:
                    survival *= 1 - 1 / (len(points) - i)
                    if floor is None and 1 - survival >= p.floor_quantile:
                        floor = t
                    if low is None and 1 - survival >= p.low_quantile:
                        low = t
                    if 1 - survival >= p.high_quantile:
                        high = t
                        break
            if low is not None:
                high = high if high is not None else max(max(seen), low * (1 + 2 * p.spread))
                if high - low < p.min_interval <= high - floor:
                    # Narrower than one read interval: one read at its end would leave the early
                    # finishers waiting for up to the whole spread; reach back so two reads fit.
                    low = high - p.min_interval
                return low, high
        mid = self.expected(*key)
        if mid is None:
            return None
        return mid * (1 - p.spread), mid * (1 + p.spread)

    def watch(self, model: str, duration: int, elapsed: float = 0.0) -> "Watch":
        """The read schedule of one job submitted ``elapsed`` seconds ago."""
        watch = Watch(self, model, duration, self._clock() - elapsed)
        self._running[watch.key].add(watch)
        self.queue.admit(watch)
        return watch

    async def until_read(self, watch: "Watch", sleep: Sleep = asyncio.sleep) -> None:
        """Sleep until ``watch``'s next read is due, re-planning long waits before the window."""
        while not watch.delivered.is_set():
            delay = watch.delay()
            if not watch.before_window or delay <= self.policy.recheck:
                await self.nap(delay, sleep, watch)
                rest = watch.floor_wait()
                if rest > 0 and not watch.delivered.is_set():
                    await sleep(rest)  # woken early, but the read floor holds all the same
                return
            await self.nap(self.policy.recheck, sleep, watch)

    async def nap(self, seconds: float, sleep: Sleep = asyncio.sleep, watch: "Watch | None" = None) -> None:
        """Sleep, but wake early the first time anything is learned, when ``watch`` is handed the
        probing place of a prober that failed (a job that was waiting blind then reads at once) or
        a server slot (it left the provider's queue), or when a delivery said its job ended."""
        flags = [] if self._learned.is_set() else [self._learned]
        if watch is not None:
            watch.handed.clear()  # a place handed before this nap is already in the delay it sleeps
            flags += (watch.handed, watch.delivered)
        if not flags:
            await sleep(seconds)
            return
        await wait_any(flags, seconds, sleep)

    def jitter(self, scale: float) -> float:
        return scale * self._rng.uniform(-self.policy.jitter, self.policy.jitter)


class Watch:
    """One job's reads: blind probing until the batch has learned something, then the window."""

    def __init__(self, schedule: PollSchedule, model: str, duration: int, started: float):
        self.schedule = schedule
        self.key = (model, duration)
        self.started = self.submitted = started
        self.misses = 0
        self._last_read: float | None = None
        self._past_window = 0
        self._read_past_window = False
        self._prober = False
        #: Set when a prober that failed hands this waiting job its place (see close), or when it
        #: leaves the provider's queue for a server slot (ServerQueue).
        self.handed = Flag()
        #: Set when a webhook delivery recorded the job's end: no read is needed.
        self.delivered = Flag()
        #: Waiting in the provider's queue (not generating yet): ``started`` is provisional.
        self.queued = False
        #: Left the provider's queue for a slot: ``started`` may still move back (ServerQueue._settle).
        self.heir = False
        #: The generation time a delivery reported (see Poller.delivered).
        self.took: float | None = None
        self.before_window = False
        #: The spacing of this job's reads across its window, as last planned (None: not reading it).
        self._step: float | None = None
        #: When the read in progress was sent (see ``asking``).
        self._asked: float | None = None

    @property
    def last_miss(self) -> float | None:
        """When a read last found the job unfinished (None: never)."""
        return self._last_read

    def delay(self) -> float:
        """Seconds until the next read, as of now: never sooner than the model's read floor allows."""
        planned = self._planned()  # first: it sets the step the window spaces reads by
        return self.schedule.in_step(planned, self.floor_wait(), self.key[0], self._step)

    def floor_wait(self) -> float:
        """Seconds until the read floor allows reading this job again (from its submit, if never read)."""
        s = self.schedule
        since = s._clock() - (self.started if self._last_read is None else self._last_read)
        return max(0.0, s.policy.floor(self.key[0]) - since)

    def _planned(self) -> float:
        s, p = self.schedule, self.schedule.policy
        window = s.window(*self.key)
        self.before_window = False
        self._read_past_window = False
        self._step = None
        if self.queued or s.webhooks:
            # Nothing to read yet: a server slot or a delivery wakes it (PollSchedule.nap).
            self._leave_probing()
            return self._safety_net(window)
        if window is None:
            return self._blind()
        self._leave_probing()
        low, high = window
        step = self._step = max(p.min_interval, (high - low) / p.reads_in_window)
        elapsed = s._clock() - self.started
        # Reads spaced by step end at the window's end; a window narrower than a step gets one read, late.
        first = high - math.floor((high - low) / step + 1e-9) * step
        if elapsed < first - step / 2:
            delay = first - elapsed
            self.before_window = True
        elif elapsed < high:
            # Counted from the last read, so a job woken from a blind wait reads at once.
            since = elapsed if self._last_read is None else s._clock() - self._last_read
            delay = step - since
        else:
            # Grows per unfinished read past the window (in missed), not per call: a read put off
            # to the horizon is re-planned every few seconds and must not age meanwhile.
            delay = min(p.max_interval, step * p.growth ** self._past_window)
            self._read_past_window = True
        # Jitter scaled to the window, not the step: a narrow window read once would be missed.
        delay = max(p.min_interval * 0.25, delay + s.jitter(min(step, high - low)))
        horizon = s.horizon()
        if horizon is not None and horizon > s._clock() + delay:
            # The batch is draining and cannot end before the horizon: a read now changes nothing.
            self.before_window = True
            delay = horizon - s._clock() + s.jitter(p.min_interval)
        return delay

    def _safety_net(self, window: tuple[float, float] | None) -> float:
        """The wait before a read that only guards against a lost delivery or a wrong guess about the
        provider's queue: well past the latest expected end, then ever more rarely."""
        s, p = self.schedule, self.schedule.policy
        late = 2 * (window[1] if window else p.max_interval) + 2 * p.recheck
        elapsed = s._clock() - self.started
        # A wait, re-planned every few seconds (PollSchedule.until_read): what wakes it early (the
        # first job learned, a server slot) changes the plan, and must not set off a read by itself.
        # A queue primed with a whole wave of 3-minute jobs was read three times a job while it waited.
        self.before_window = True
        if elapsed < late:
            return late - elapsed
        return max(p.max_interval, elapsed if window is None else elapsed / 2)

    def asking(self) -> None:
        """A read of the job is being sent now (a retry sends it again)."""
        self._asked = self.schedule._clock()

    def missed(self) -> None:
        """A read just found the job unfinished: the floor counts from when it was sent (``asking``).
        Counted from its answer instead, a read made in a burst of hundreds at one grid time
        (read_grid.py) answered late enough to skip the next grid time, a whole floor later."""
        self.misses += 1
        self._last_read = self._asked if self._asked is not None else self.schedule._clock()
        self._asked = None
        if self._read_past_window:
            self._past_window += 1

    def close(self, took: float | None = None) -> None:
        """The job stopped being read (finished, failed or gave up): free its probing place and its
        server slot (``took``: the generation time the provider reported, when it finished).

        A prober that taught nothing (its job failed) hands its place at once to the job that has
        waited longest: left to its next blind read, that job would sleep up to max_interval."""
        s = self.schedule
        s._running[self.key].discard(self)
        s.queue.leave(self, took)
        if self._prober and s.expected(*self.key) is None:
            waiters = [w for w in s._running[self.key] if not w._prober]
            if waiters:
                heir = min(waiters, key=lambda w: w.started)
                heir._prober, self._prober = True, False
                heir.handed.set()
        self._leave_probing()

    def _blind(self) -> float:
        s, p = self.schedule, self.schedule.policy
        if not self._prober and s._probing[self.key] < p.probers:
            # Also later: a place freed while no job was waiting blind goes to the next job to ask.
            self._prober = True
            s._probing[self.key] += 1
        elapsed = s._clock() - self.started
        if not self._prober:
            # Cut short by PollSchedule.nap as soon as a prober's job ends (see close). Reading at all is
            # only insurance against probers unlike the rest, so the wait doubles: 30, 60, 120 s...
            return max(p.max_interval, elapsed)
        cap = max(p.probe_cap, p.probe_fraction * elapsed)
        step = min(cap, p.max_interval, p.min_interval * p.growth ** max(0, self.misses - 1))
        return max(p.min_interval * 0.25, step + s.jitter(step))

    def _leave_probing(self) -> None:
        if self._prober:
            self.schedule._probing[self.key] -= 1
        self._prober = False
