"""What ``batchgen run`` takes from its environment: the provider's key and the interrupt signals."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Callable

from .errors import UsageError


def api_key_from_env(variable: str) -> str:
    """The provider's key from its own environment variable (never from a file or a flag)."""
    key = os.environ.get(variable, "").strip()
    if not key:
        raise UsageError(f"no API key: set the {variable} environment variable "
                         "(or rehearse for free with --provider local)")
    return key


def install_interrupts(loop: asyncio.AbstractEventLoop, on_first: Callable[[str], None],
                       main_task: asyncio.Task) -> None:
    """Ctrl-C once (or SIGTERM, as a service manager stops a job): stop submitting, let in-flight
    jobs finish; ``on_first`` gets the signal's name so the stop says which one arrived. Twice: quit now."""
    pressed = {"n": 0}

    def handler(sig: signal.Signals) -> None:
        pressed["n"] += 1
        if pressed["n"] == 1:
            on_first("Ctrl-C" if sig is signal.SIGINT else sig.name)
        else:
            main_task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, handler, sig)
        except (NotImplementedError, RuntimeError):
            pass
