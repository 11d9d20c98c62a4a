"""One retry policy and one helper (stamina's shape): the caller says what is worth another try.

``decide(exc)`` answers ``None`` (do not retry: the error goes up), ``RETRY_DEFAULT`` (retry after
the policy's jittered backoff) or a number of seconds (retry after exactly that long: how a
server's Retry-After fits). Every wait is capped by ``RetryPolicy.max_wait`` so no answer can make
batchgen sleep for hours. ``zero_sleeps()`` turns every wait into zero for tests.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterator

from .errors import TransientError

log = logging.getLogger("batchgen")


class _RetryDefault:
    def __repr__(self) -> str:
        return "RETRY_DEFAULT"


#: ``decide`` returns this to retry after the policy's own backoff.
RETRY_DEFAULT: Any = _RetryDefault()
_zeroed = False


@dataclass(frozen=True)
class RetryPolicy:
    """Jittered exponential backoff: base * factor**(attempt-1), capped, times (1 ± jitter)."""

    attempts: int = 8
    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.3
    #: The longest any single wait may be, whatever a server advised (Retry-After: inf included).
    max_wait: float = 300.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        raw = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        return max(0.0, raw * (1 + rng.uniform(-self.jitter, self.jitter)))

    def wait(self, attempt: int, rng: random.Random, advice: Any) -> float:
        """The wait before retry number ``attempt`` given ``decide``'s answer, capped."""
        delay = self.backoff(attempt, rng) if advice is RETRY_DEFAULT else float(advice)
        if math.isnan(delay):
            delay = self.backoff(attempt, rng)
        return 0.0 if _zeroed else min(max(0.0, delay), self.max_wait)


@contextmanager
def zero_sleeps() -> Iterator[None]:
    """Within this block every retry wait is zero (tests)."""
    global _zeroed
    before, _zeroed = _zeroed, True
    try:
        yield
    finally:
        _zeroed = before


def retry_transient(exc: BaseException) -> Any:
    """The predicate for idempotent calls: retry transient errors, after their Retry-After when given."""
    if not isinstance(exc, TransientError):
        return None
    return RETRY_DEFAULT if exc.retry_after is None else exc.retry_after


async def retrying(call: Callable[[], Awaitable[Any]], policy: RetryPolicy,
                   decide: Callable[[BaseException], Any] = retry_transient, *,
                   sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep, rng: random.Random | None = None,
                   what: str = "", attempts: int | None = None) -> Any:
    """``await call()`` until it succeeds, ``decide`` says no, or the attempts are used up (then the
    last error goes up)."""
    rng = rng or random.Random()
    limit = attempts or policy.attempts
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:  # noqa: BLE001 - decide() says which ones are retried
            advice = decide(exc)
            attempt += 1
            if advice is None or attempt >= limit:
                raise
            delay = policy.wait(attempt, rng, advice)
            log.info("%s: %s; retry in %.1fs", what or "request", exc, delay)
            await sleep(delay)

