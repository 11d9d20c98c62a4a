"""The account limits as the simulator plays them (shared/API.md "Account limits").

Videos started per minute count accepted submits only, never reads. Tasks over the concurrency
cap wait in ``created`` for a slot (WaveSpeed queues; the "429" mode refuses them in the server).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict, deque
from typing import Callable


class SubmitWindow:
    """Accepted submits per key over a sliding window."""

    def __init__(self) -> None:
        self._starts: defaultdict[str, deque] = defaultdict(deque)

    def wait_needed(self, key_id: str, limit: int | None, span: float, now: float | None = None) -> float:
        """Seconds until one more submit fits (0 when it fits now)."""
        if not limit:
            return 0.0
        now = time.monotonic() if now is None else now
        starts = self._starts[key_id]
        while starts and starts[0] <= now - span:
            starts.popleft()
        return starts[0] + span - now if len(starts) >= limit else 0.0

    def record(self, key_id: str, now: float | None = None) -> None:
        self._starts[key_id].append(time.monotonic() if now is None else now)


class Slots:
    """Generation slots per key; ``cap()`` is read on every change, so the live config applies."""

    def __init__(self, cap: Callable[[], int | None]) -> None:
        self._cap = cap
        self.running: Counter = Counter()
        self._waiting: defaultdict[str, deque] = defaultdict(deque)

    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    async def acquire(self, key_id: str) -> None:
        """Return once this key has a free slot; first come, first served."""
        if not self._waiting[key_id] and self._fits(key_id):
            self.running[key_id] += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting[key_id].append(turn)
        await turn

    def release(self, key_id: str) -> None:
        self.running[key_id] -= 1
        queue = self._waiting[key_id]
        while queue and self._fits(key_id):
            turn = queue.popleft()
            if not turn.done():  # a waiter cancelled by a reset is skipped
                self.running[key_id] += 1
                turn.set_result(None)

    def _fits(self, key_id: str) -> bool:
        cap = self._cap()
        return cap is None or self.running[key_id] < cap


class SimClock:
    """Wall-clock time the simulator stamps and ages predictions by; tests move it forward."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self.offset = 0.0

    def time(self) -> float:
        return self._now() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
