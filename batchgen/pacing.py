"""Submit pacing and the in-flight target: spacing after a 429, a per-minute token bucket, the
slots that bound how many jobs run, and the account levels that set both. Small classes; time is
always a parameter."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: A provider's per-minute limit resets every minute (API.md v2, "Account limits").
WINDOW = 60.0


@dataclass(frozen=True)
class AccountLevel:
    """What an account may do: videos started per minute, tasks generating at once."""

    videos_per_minute: int
    concurrency: int


#: API.md v2 "Account limits" (docs "Account Levels & Rate Limits"); the page's numbers change
#: between versions, so these are data a user overrides with --videos-per-minute/--concurrency.
ACCOUNT_LEVELS: dict[str, AccountLevel] = {
    "bronze": AccountLevel(5, 3),
    "silver": AccountLevel(60, 100),
    "gold": AccountLevel(600, 2000),
    "ultra": AccountLevel(5000, 5000),
}


class Pacer:
    """Spaces submits after a 429: holds them all while its Retry-After runs, then starts gently at
    ``interval`` and ramps back toward ``floor`` with each grant.

    Until the provider has refused something, submits go out at ``floor``: the slots already cap
    how many run, and spacing the first wave would delay the start of every slot's chain of jobs
    (0.2 s ramping by 0.7 is 0.67 s for the last of them)."""

    def __init__(self, interval: float, *, floor: float = 0.0, ramp: float = 0.7, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep):
        self.interval = interval
        self.floor = min(floor, interval)
        self.ramp = ramp
        self.current = self.floor
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._paused_until = 0.0

    async def wait(self) -> None:
        while True:
            now = self._clock()
            start = max(self._next, self._paused_until)
            if start <= now:
                self._next = now + self.current
                self.current = max(self.floor, self.current * self.ramp)
                return
            await self._sleep(start - now)

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)
        self.current = self.interval


class TokenBucket:
    """Submits paced by a per-minute limit (videos started per minute): ``per_minute`` tokens a
    minute, at most ``burst`` saved up, one taken per submit; waiters are served in turn.

    ``burst`` 1 spaces submits evenly, so no 60 s span holds more than the limit. A larger burst
    starts faster but can exceed a limit counted per calendar minute, and the 429s cost more than
    the head start: the limit caps how many start in a minute either way. A refused submit
    acquires again like any other."""

    def __init__(self, per_minute: float, burst: float = 1.0, *, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep):
        if not (math.isfinite(per_minute) and per_minute > 0):
            raise ValueError(f"TokenBucket.per_minute must be a finite number > 0, got {per_minute!r}")
        if not (math.isfinite(burst) and burst >= 1):
            raise ValueError(f"TokenBucket.burst must be a finite number >= 1, got {burst!r}")
        self.rate = per_minute / WINDOW
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = clock()
        self._paused_until = -math.inf
        self._turn = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until a submit may go out and count it."""
        async with self._turn:
            while (wait := self._wait()) > 0:
                await self._sleep(wait)  # re-checked: a 429 meanwhile may have paused the bucket
            self._tokens -= 1

    def pause(self, seconds: float) -> None:
        """A 429 with Retry-After: nothing goes out for ``seconds``, and tokens saved before the
        refusal are void (the provider counted more than this bucket did)."""
        self._refill()
        self._tokens = 0.0
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def pause_until_window(self) -> None:
        """A 429 without Retry-After: the limit resets every minute, at a moment not known here, so
        one whole window is the shortest wait sure to reach a fresh one. It does not grow with
        more 429s: a backoff would wait out several windows the account could have used."""
        self.pause(WINDOW)

    def _wait(self) -> float:
        self._refill()
        if self._stamp < self._paused_until:
            return self._paused_until - self._stamp
        # A hair under 1 counts as 1: float rounding must not cost an extra sleep.
        return 0.0 if self._tokens >= 1 - 1e-9 else (1 - self._tokens) / self.rate

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now


class Slots:
    """Jobs in flight at the provider, with a target that shrinks on 429s and probes back up.

    Each shrink doubles how many accepted submits it takes before probing one slot higher, so a
    --concurrency far above the account's cap costs a few 429s, not one every few submits. A 429
    while fewer jobs run than have run before (``proven``) is not the cap: it is sporadic (a
    burst, an overloaded gateway) and leaves the target alone, or 20 % injected 429s would walk
    the target down to one job at a time."""

    def __init__(self, limit: int, *, probe_every: int = 4, max_probe_every: int = 64):
        self.limit = limit
        self.target = limit
        self.in_flight = 0
        self.probe_every = probe_every
        #: The most jobs seen in flight when a submit was accepted.
        self.proven = 0
        self._max_probe_every = max_probe_every
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
            # One slot freed wakes one waiter: notify_all made every release cost O(jobs waiting).
            self._cond.notify(1)

    async def set_limit(self, limit: int) -> None:
        """A new ceiling (the queue margin changed): the target follows unless a 429 holds it lower."""
        async with self._cond:
            held = self.target < self.limit
            self.limit = limit
            self.target = min(self.target, limit) if held else limit
            self._cond.notify(max(0, self.target - self.in_flight))

    def shrink(self) -> bool:
        """The account said 429 to a submit: aim just under what is running now (the refused one
        included), unless fewer run than were accepted before. True when the target moved."""
        if self.in_flight <= self.proven:
            return False
        self.target = max(1, self.proven, min(self.target, self.in_flight - 1))
        self.probe_every = min(self._max_probe_every, self.probe_every * 2)
        self._ok_since_shrink = 0
        return True

    async def accepted(self) -> None:
        """A submit went through: after a few, probe one slot higher again."""
        self.proven = max(self.proven, self.in_flight)
        if self.target >= self.limit:
            return
        self._ok_since_shrink += 1
        if self._ok_since_shrink >= self.probe_every:
            self._ok_since_shrink = 0
            async with self._cond:
                self.target += 1
                self._cond.notify(1)


class QueueMargin:
    """How many submits beyond the account's concurrency wait in the provider's queue, for a
    provider that queues over its cap (and bills at submit).

    A slot that frees at the provider is refilled only after a read notices the end and a new submit
    arrives; meanwhile about ``concurrency * (lag + submit) / generation`` more slots free. Jobs that
    started together end bunched: ``share`` of them within the learned window's ``spread``, so slots
    free faster than that while they end. That many queued tasks (plus one for the spread) keep
    every freed slot busy.

    Nothing is known before the first jobs end, and the first wave (every slot started at once) ends
    the most bunched of all, before any read can notice it: sized from nothing, the margin was too
    small by the time it could grow, and a Gold account's slots stood idle for 1-2 s of full
    capacity while its first wave ended. So the margin starts at ``cap`` and is sized from
    measurements once the generation time is learned (``fit`` with ``learned``): that first sizing
    may bring it down (long jobs need few queued), later ones only grow it (a flapping target would
    stall submits for nothing). ``cap`` is the concurrency (at least 3), since each queued task is
    paid before it starts; 20 s jobs read at a 5 s floor need about that many."""

    def __init__(self, concurrency: int, fixed: int | None = None):
        self.concurrency = concurrency
        self.cap = max(3, concurrency) if fixed is None else fixed
        self.fixed = fixed is not None
        self.value = self.cap
        #: Sized from a learned generation time at least once (a fixed margin never is).
        self.sized = self.fixed

    def fit(self, lag: float, submit: float, generation: float | None, spread: float | None = None,
            share: float = 0.55, learned: bool = True) -> bool:
        """Size the margin for what was measured (``learned``: the generation time comes from enough
        finished jobs to trust); True when it changed."""
        if self.fixed or not learned or not generation or generation <= 0:
            return False
        rate = self.concurrency / generation
        if spread is not None and spread > 0:
            rate = max(rate, share * self.concurrency / spread)
        want = min(self.cap, math.ceil(rate * (lag + submit)) + 1)
        first, self.sized = not self.sized, True
        if want == self.value or (want < self.value and not first):
            return False
        self.value = want
        return True
