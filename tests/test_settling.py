"""The gate that keeps submits off the wire while a listing settling lost submits is read (settling.py);
the settling itself runs end to end against the simulator in tests/test_reconcile.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from batchgen.settling import Settler


def test_the_listing_waits_for_submits_on_the_wire_and_new_submits_wait_for_the_listing():
    async def scenario() -> list[str]:
        settler, seen = Settler(SimpleNamespace()), []
        answered = asyncio.Event()

        async def submit(name: str, answer: asyncio.Event | None = None) -> None:
            async with settler.sending():
                seen.append(f"{name} sent")
                if answer is not None:
                    await answer.wait()
                seen.append(f"{name} answered")

        async def read_listing() -> None:
            async with settler.quiet():
                seen.append("listing read")
                await asyncio.sleep(0)
                seen.append("listing done")

        first = asyncio.create_task(submit("first", answered))
        await asyncio.sleep(0)
        listing = asyncio.create_task(read_listing())
        await asyncio.sleep(0)
        second = asyncio.create_task(submit("second"))
        for _ in range(3):
            await asyncio.sleep(0)
        assert seen == ["first sent"], "the listing waits for the first answer; the second submit waits too"
        answered.set()
        await asyncio.gather(first, listing, second)
        return seen

    assert asyncio.run(scenario()) == ["first sent", "first answered", "listing read", "listing done",
                                       "second sent", "second answered"]


def test_a_submit_that_fails_on_the_wire_still_lets_the_listing_through():
    async def scenario() -> bool:
        settler = Settler(SimpleNamespace())

        async def failing() -> None:
            async with settler.sending():
                await asyncio.sleep(0)
                raise ConnectionResetError

        task = asyncio.create_task(failing())
        await asyncio.sleep(0)
        async with asyncio.timeout(1):
            async with settler.quiet():
                pass
        return isinstance(task.exception(), ConnectionResetError)

    assert asyncio.run(scenario())
