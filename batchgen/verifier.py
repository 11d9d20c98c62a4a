"""Download verification in worker processes, batched.

PyAV holds the GIL while it demuxes, so probing on threads starves the event loop; a spawned
worker process does it instead. Each call to a process pool costs the runner ~0.2 ms of its own
CPU (pickling, the pool's queue threads), so downloads that finish while a worker is busy are
sent to it together on its next call: under load one call verifies dozens of files.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .download import verify
from .errors import BatchgenError, TransientError
from .probe import VideoInfo

#: Most files one worker call verifies.
BATCH = 32


def verify_many(calls: list[tuple[Any, ...]]) -> list[VideoInfo | BaseException]:
    """``verify`` over several files in one worker call; each gets its result or its error."""
    results: list[VideoInfo | BaseException] = []
    for args in calls:
        try:
            results.append(verify(*args))
        except (BatchgenError, OSError, ValueError) as exc:
            # As raised, so the runner classes them as it always has (an OSError is a download failure,
            # which --retry-failed fetches again rather than paying for the video a second time).
            results.append(exc)
        except Exception as exc:  # noqa: BLE001 - reported per file; anything may not pickle
            results.append(RuntimeError(f"{type(exc).__name__}: {exc}"))
    return results


class Verifier:
    """Queues verifications and runs them in up to ``workers`` worker processes, a batch per call."""

    def __init__(self, workers: int | None = None, batch: int = BATCH):
        self.workers = workers or max(1, (os.cpu_count() or 2) - 1)
        self.batch = batch
        self._pool: ProcessPoolExecutor | None = None
        self._queue: deque[tuple[tuple[Any, ...], asyncio.Future]] = deque()
        self._drains: set[asyncio.Task] = set()
        #: Worker calls made (each verifies up to ``batch`` files).
        self.calls = 0

    async def verify(self, *args: Any) -> VideoInfo:
        """``download.verify(*args)`` in a worker; raises what it raises."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((args, future))
        # Counted by done(), not by set membership: a drain that just ended is only removed by a
        # callback that may run after this caller, and its queue would then wait forever.
        if sum(1 for task in self._drains if not task.done()) < self.workers:
            task = asyncio.ensure_future(self._drain())
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            items = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
            items = [(args, future) for args, future in items if not future.done()]
            if not items:
                continue
            self.calls += 1
            pool = self._executor()
            try:
                results = await loop.run_in_executor(pool, verify_many, [args for args, _ in items])
            except BrokenProcessPool:
                # A worker died (killed, out of memory): a fresh pool serves the next batch (only if no
                # other drain has already replaced this one), and these files count as a transient
                # failure, so their downloads are tried again.
                if self._pool is pool:
                    self._pool = None
                results = [TransientError("the verification worker died; trying the download again")] * len(items)
            except asyncio.CancelledError:
                for _, future in items:
                    future.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - whatever stops the call reaches every caller
                results = [exc] * len(items)
            for (_, future), result in zip(items, results):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_worker_init, initargs=(os.getpid(),))
        return self._pool

    def shutdown(self) -> None:
        for task in list(self._drains):
            task.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _worker_init(runner_pid: int) -> None:
    """Set up a verification worker: deaf to Ctrl-C, and gone when its runner is."""
    # Ctrl-C reaches the whole process group; the runner decides what it means, not its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        # A SIGKILLed runner cannot shut its pool down, and the pool's queue never reports it.
        while os.getppid() == runner_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="batchgen-parent-watch", daemon=True).start()
