"""Timing decisions: retry backoff, the learned poll schedule, submit pacing and the
adaptive in-flight target. Pure functions and small classes; time is always a parameter."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Backoff:
    """Jittered exponential backoff: base * factor**attempt, capped, times (1 ± jitter)."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.3
    attempts: int = 8

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        raw = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        raw *= 1 + rng.uniform(-self.jitter, self.jitter)
        if retry_after is not None:
            # The server's advice is a floor, never shortened by jitter.
            raw = max(raw, retry_after)
        return max(0.0, raw)


@dataclass(frozen=True)
class PollPolicy:
    """How to read results: first near the expected finish, then a short growing backoff."""

    #: Expected generation time before anything has finished; None: probe from min_interval up.
    prior: float | None = None
    min_interval: float = 1.0
    max_interval: float = 30.0
    growth: float = 1.5
    after_fraction: float = 0.08  # first re-poll after this fraction of the expected time
    jitter: float = 0.1


class PollSchedule:
    """Learns generation time per (model, duration) from finished jobs of this batch."""

    def __init__(self, policy: PollPolicy, rng: random.Random, window: int = 50):
        self.policy = policy
        self._rng = rng
        self._seen: dict[tuple[str, int], deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self._per_second: deque[float] = deque(maxlen=window)

    def observe(self, model: str, duration: int, seconds: float) -> None:
        if seconds > 0:
            self._seen[(model, duration)].append(seconds)
            self._per_second.append(seconds / max(1, duration))

    def expected(self, model: str, duration: int) -> float | None:
        seen = self._seen.get((model, duration))
        if seen:
            return statistics.median(seen)
        if self._per_second:
            return statistics.median(self._per_second) * duration
        return self.policy.prior

    def first_delay(self, model: str, duration: int, elapsed: float = 0.0) -> float:
        """Seconds until the first read of a job submitted ``elapsed`` seconds ago."""
        exp = self.expected(model, duration)
        if exp is None:
            return self.policy.min_interval * self._wiggle()
        return max(self.policy.min_interval * 0.25, exp - elapsed) * self._wiggle()

    def next_delay(self, model: str, duration: int, misses: int) -> float:
        """Seconds until the next read after ``misses`` reads that found it unfinished."""
        exp = self.expected(model, duration)
        step = self.policy.min_interval if exp is None else max(self.policy.min_interval, exp * self.policy.after_fraction)
        step *= self.policy.growth ** max(0, misses - 1)
        return min(self.policy.max_interval, step) * self._wiggle()

    def _wiggle(self) -> float:
        return 1 + self._rng.uniform(-self.policy.jitter, self.policy.jitter)


class Pacer:
    """Spaces submits (no start burst) and holds them all while a 429's Retry-After runs."""

    def __init__(self, interval: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], "asyncio.Future"] = asyncio.sleep):
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._paused_until = 0.0

    async def wait(self) -> None:
        while True:
            now = self._clock()
            start = max(self._next, self._paused_until)
            if start <= now:
                self._next = now + self.interval
                return
            await self._sleep(start - now)

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)


class Slots:
    """Jobs in flight at the provider, with a target that shrinks on 429s and probes back up."""

    def __init__(self, limit: int, *, probe_every: int = 4):
        self.limit = limit
        self.target = limit
        self.in_flight = 0
        self._probe_every = probe_every
        self._ok_since_shrink = 0
        self._cond = asyncio.Condition()

    async def acquire(self) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < self.target)
            self.in_flight += 1

    def take(self) -> None:
        """Count a job that is already running at the provider (resumed), even over target."""
        self.in_flight += 1

    async def release(self) -> None:
        async with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    def shrink(self) -> None:
        """The account said 429: aim just under what is running now."""
        self.target = max(1, min(self.target, self.in_flight - 1) if self.in_flight > 1 else 1)
        self._ok_since_shrink = 0

    async def accepted(self) -> None:
        """A submit went through: after a few, probe one slot higher again."""
        if self.target >= self.limit:
            return
        self._ok_since_shrink += 1
        if self._ok_since_shrink >= self._probe_every:
            self._ok_since_shrink = 0
            async with self._cond:
                self.target += 1
                self._cond.notify_all()
