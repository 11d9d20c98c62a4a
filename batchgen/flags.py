"""Flags a sleeper can wait on, several at once, without a task per flag (PollSchedule.nap)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from .pacing import Sleep


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Flag:
    """An asyncio.Event's set, clear and is_set, waited on by futures a waiter owns: PollSchedule.nap
    waits for any of three flags or a timeout with one future, where Event.wait needs a task each."""

    __slots__ = ("_set", "waiters")

    def __init__(self) -> None:
        self._set = False
        #: The futures of the naps waiting for this flag; set() resolves them.
        self.waiters: set[asyncio.Future] = set()

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        for waiter in self.waiters:
            _wake(waiter)

    def clear(self) -> None:
        self._set = False


async def wait_any(flags: Iterable[Flag], seconds: float, sleep: Sleep = asyncio.sleep) -> None:
    """Return when any of ``flags`` is set or ``seconds`` have passed (through ``sleep``).

    One future that any flag or the timeout resolves: a large batch naps tens of thousands of
    times, and each nap used to start (and cancel) a task per event and one for the sleep."""
    flags = tuple(flags)
    if any(flag.is_set() for flag in flags):
        return
    loop = asyncio.get_running_loop()
    woken = loop.create_future()
    timer: asyncio.TimerHandle | asyncio.Future
    if sleep is asyncio.sleep:
        timer = loop.call_later(seconds, _wake, woken)
    else:  # an injected sleep (a test's virtual time) is the only clock that may end the wait
        timer = asyncio.ensure_future(sleep(seconds))
        timer.add_done_callback(lambda _: _wake(woken))
    for flag in flags:
        flag.waiters.add(woken)
    try:
        await woken
    finally:
        timer.cancel()
        for flag in flags:
            flag.waiters.discard(woken)
