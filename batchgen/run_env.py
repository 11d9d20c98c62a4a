"""What ``batchgen run`` takes from its environment: the interrupt signals and the spend prompt's answer
(keys: run_providers.py)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import sys
from typing import Callable


log = logging.getLogger("batchgen")


def install_interrupts(loop: asyncio.AbstractEventLoop, on_first: Callable[..., None],
                       main_task: asyncio.Task) -> None:
    """Ctrl-C or SIGTERM once: stop submitting, let in-flight jobs finish. A second one: quit now.

    ``on_first`` receives the signal's name ("SIGINT" or "SIGTERM") when it takes an argument; a
    callback without parameters is called without it. Either way the signal is logged by name.
    """
    pressed: list[str] = []
    with_name = _takes_an_argument(on_first)

    def handler(name: str) -> None:
        pressed.append(name)
        if len(pressed) == 1:
            log.warning("%s received: no new submits; jobs in flight finish (send it again to quit now)", name)
            on_first(name) if with_name else on_first()
        else:
            log.warning("%s received again: quitting now; the state is consistent", name)
            # The cancel message is how the CLI says which signals stopped the run (quit_reason).
            main_task.cancel(_twice(pressed[0], name))

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, handler, sig.name)
        except (NotImplementedError, RuntimeError):
            pass


def _twice(first: str, second: str) -> str:
    if first == second:
        return "Ctrl-C twice" if first == "SIGINT" else f"{first} twice"
    return f"{first}, then {second}"


def quit_reason(exc: BaseException) -> str:
    """Which signals made the run quit at once, from the CancelledError that ended it."""
    return str(exc) or "Ctrl-C twice"


def _takes_an_argument(callback: Callable[..., None]) -> bool:
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: assume the new, one-argument form
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                  inspect.Parameter.VAR_POSITIONAL)
    return any(p.kind in positional for p in params)


async def ask(question: str) -> str:
    """The line typed at the terminal after ``question``; Ctrl-C there raises KeyboardInterrupt at once.

    Read through the event loop, not input(): a blocking read in the main thread misses a SIGINT that lands
    just before it starts or on another thread (asyncio.run's own handler only cancels a task, which the
    read never notices), and the run would go on waiting for an answer. The loop's signal handler cannot
    miss one. Ctrl-D (end of input) is an empty answer."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bytes] = loop.create_future()
    fd = sys.stdin.fileno()

    def settle(result: bytes | None = None, exc: BaseException | None = None) -> None:
        if not answer.done():
            answer.set_exception(exc) if exc else answer.set_result(result or b"")

    previous = signal.getsignal(signal.SIGINT)
    loop.add_reader(fd, lambda: settle(os.read(fd, 4096)))
    loop.add_signal_handler(signal.SIGINT, lambda: settle(exc=KeyboardInterrupt()))
    try:
        sys.stdout.write(question)  # only now: a Ctrl-C as soon as the question shows is this prompt's
        sys.stdout.flush()
        return (await answer).decode(errors="replace")
    finally:
        loop.remove_reader(fd)
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, previous)  # asyncio.run's own handler, until the run installs its own
