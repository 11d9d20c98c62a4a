"""The retry policy, the helper and each caller's predicate, without a network."""

from __future__ import annotations

import random

import pytest

from batchgen.errors import (AmbiguousSubmitError, ExpiredLinkError, FatalError, ModelUnavailableError,
                             PermanentError, RateLimitedError, TransientError)
from batchgen.retry import RETRY_DEFAULT, RetryPolicy, retry_transient, retrying, zero_sleeps
from conftest import run


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def _failing(errors: list[BaseException], result: str = "ok"):
    calls = {"n": 0}

    async def call():
        calls["n"] += 1
        if errors:
            raise errors.pop(0)
        return result

    return call, calls


def test_backoff_grows_is_capped_and_jittered():
    policy = RetryPolicy(base=0.5, factor=2.0, cap=4.0, jitter=0.3)
    rng = random.Random(1)
    for attempt, nominal in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)):
        assert nominal * 0.7 <= policy.backoff(attempt, rng) <= nominal * 1.3


def test_a_retry_after_answer_is_the_wait_and_every_wait_is_capped():
    """Issue 15 item 11: 'Retry-After: inf' must not hang a run."""
    policy = RetryPolicy(max_wait=300.0)
    rng = random.Random(1)
    assert policy.wait(1, rng, 7.0) == 7.0
    assert policy.wait(1, rng, float("inf")) == 300.0
    assert policy.wait(1, rng, 1e12) == 300.0
    assert policy.wait(1, rng, -5.0) == 0.0
    assert 0 < policy.wait(1, rng, float("nan")) <= 0.5 * 1.3


def test_zero_sleeps_turns_every_wait_into_zero():
    with zero_sleeps():
        assert RetryPolicy().wait(5, random.Random(1), 120.0) == 0.0
    assert RetryPolicy().wait(5, random.Random(1), 120.0) == 120.0


def test_retrying_retries_what_the_predicate_allows_then_gives_up_with_the_last_error():
    sleeps = Sleeps()
    call, calls = _failing([TransientError("a", retry_after=2.0), TransientError("b")])
    assert run(retrying(call, RetryPolicy(), sleep=sleeps, rng=random.Random(1))) == "ok"
    assert calls["n"] == 3 and sleeps.waits[0] == 2.0

    call, calls = _failing([TransientError(str(i)) for i in range(5)])
    with pytest.raises(TransientError, match="2"):
        run(retrying(call, RetryPolicy(attempts=3), sleep=sleeps, rng=random.Random(1)))
    assert calls["n"] == 3

    call, calls = _failing([PermanentError("no")])
    with pytest.raises(PermanentError):
        run(retrying(call, RetryPolicy(), sleep=sleeps))
    assert calls["n"] == 1


def test_a_predicate_may_return_its_own_delay():
    sleeps = Sleeps()
    call, _ = _failing([ValueError("x")])
    assert run(retrying(call, RetryPolicy(), lambda exc: 0.25, sleep=sleeps)) == "ok"
    assert sleeps.waits == [0.25]


@pytest.mark.parametrize(("exc", "answer"), [
    (TransientError("503"), RETRY_DEFAULT),
    (RateLimitedError("429", retry_after=3.0), 3.0),
    (ExpiredLinkError("403"), RETRY_DEFAULT),
    (PermanentError("400"), None),
    (FatalError("401"), None),
    (AmbiguousSubmitError("lost"), None),
    (ModelUnavailableError("gone", temporary=False), None),
    (OSError("disk"), None),
])
def test_the_idempotent_call_predicate(exc, answer):
    assert retry_transient(exc) == answer if answer is not RETRY_DEFAULT else retry_transient(exc) is RETRY_DEFAULT


def test_the_download_predicate_renews_an_expired_link_at_once():
    from batchgen.fetch import Fetcher
    decide = Fetcher._decide
    assert decide(None, ExpiredLinkError("403")) == 0.0
    assert decide(None, TransientError("cut", retry_after=1e9)) == 1e9  # capped by the policy's wait
    assert decide(None, TransientError("cut")) is RETRY_DEFAULT
    assert decide(None, PermanentError("not a video")) is None
