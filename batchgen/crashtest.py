"""Crash-test hook: ``BATCHGEN_TEST_KILL_AT=stage:N`` SIGKILLs this process the Nth time it passes
that stage's kill point (the torture suite uses it to prove every promise survives a kill there)."""

from __future__ import annotations

import os
import signal
from collections import Counter

_KILL_AT = os.environ.get("BATCHGEN_TEST_KILL_AT", "")
_passes: Counter = Counter()


def kill_point(stage: str) -> None:
    if not _KILL_AT:
        return
    want, _, nth = _KILL_AT.partition(":")
    if want == stage:
        _passes[stage] += 1
        if _passes[stage] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
