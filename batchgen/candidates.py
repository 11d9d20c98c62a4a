"""Fetching a listed prediction that may be a lost submit, to see what it really is.

Its output goes straight to ``<out>/unmatched/<id>.mp4`` (``.part`` first, probed, then renamed):
matched, it moves to its job's place (its bytes are not fetched twice); unmatched, it stays there,
paid for and on disk. A video kept there by an earlier run is reused, never fetched again. A
candidate still generating is read until it ends (a bounded wait): only a finished output can tell
whose it is.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .download import part_path
from .errors import BatchgenError, ExpiredLinkError, PermanentError, VerificationError
from .matching import Clip, clip_of
from .probe import probe_video
from .providers.base import Download, ListedPrediction, Prediction, PredictionStatus, Provider
from .retry import RetryPolicy, retry_transient, retrying
from .state import fsync_path
from .unmatched import video_path

log = logging.getLogger("batchgen")


@dataclass(frozen=True)
class Fetched:
    """A candidate as far as it could be seen: its finished prediction, and its video and clip
    when they are on disk; otherwise ``why`` not."""

    item: ListedPrediction
    pred: Prediction | None = None
    path: Path | None = None
    got: Download | None = None
    clip: Clip | None = None
    why: str = ""

    @property
    def failed(self) -> bool:
        """The task failed: there is no video, and (unbilled) nothing to recover."""
        return self.pred is not None and self.pred.status is PredictionStatus.FAILED


class CandidateFetcher:
    def __init__(self, provider: Provider, out_dir: Path, retry: RetryPolicy, *, sleep, rng,
                 clock: Callable[[], float], read_every: Callable[[str], float], wait_max: float, max_bytes: int):
        self.provider, self.out_dir, self.retry = provider, out_dir, retry
        self.sleep, self.rng, self.clock = sleep, rng, clock
        self.read_every, self.wait_max, self.max_bytes = read_every, wait_max, max_bytes

    async def fetch(self, item: ListedPrediction) -> Fetched:
        """The candidate's finished video on disk and what it is; never raises for one candidate."""
        try:
            pred = await self._finished(item)
            if pred.status is not PredictionStatus.COMPLETED or not pred.outputs:
                why = "the task failed" if pred.status is PredictionStatus.FAILED else (
                    f"it was still generating after {self.wait_max:g} s")
                return Fetched(item, pred, why=why)
            path = video_path(self.out_dir, item.id)
            got = await self._local(path) or await self._download(pred, path)
            info = await asyncio.to_thread(probe_video, path)
            clip = await asyncio.to_thread(clip_of, path, info)
        except (BatchgenError, OSError, ValueError) as exc:
            log.warning("prediction %s: cannot see its output (%s)", item.id, exc)
            return Fetched(item, why=f"its output could not be fetched or read ({exc})")
        return Fetched(item, pred, path, got, clip)

    async def _finished(self, item: ListedPrediction) -> Prediction:
        if item.status == "completed" and item.outputs:
            return Prediction(item.id, item.model, PredictionStatus.COMPLETED, item.outputs)
        started = self.clock()
        while True:
            pred = await retrying(lambda: self.provider.result(item.id), self.retry, sleep=self.sleep,
                                  rng=self.rng, what=f"result {item.id}")
            ended = pred.status in (PredictionStatus.COMPLETED, PredictionStatus.FAILED)
            if ended or self.clock() - started >= self.wait_max:
                return pred
            await self.sleep(self.read_every(item.model))  # the model's read floor holds here too

    async def _local(self, path: Path) -> Download | None:
        """A video an earlier run kept here: hashed, not fetched again."""
        if not path.is_file():
            return None
        data = await asyncio.to_thread(path.read_bytes)
        return Download(len(data), hashlib.sha256(data).hexdigest(), "video/mp4", length_checked=False)

    async def _download(self, pred: Prediction, path: Path) -> Download:
        path.parent.mkdir(parents=True, exist_ok=True)
        part = part_path(path)
        outputs = list(pred.outputs)

        async def once() -> Download:
            try:
                return await self.provider.download(outputs[0], part, max_bytes=self.max_bytes)
            except ExpiredLinkError:
                fresh = await self.provider.result(pred.id)
                outputs[:] = fresh.outputs or outputs
                raise

        try:
            got = await retrying(once, self.retry, _download_decide, sleep=self.sleep, rng=self.rng,
                                 what=f"download {pred.id}")
            await asyncio.to_thread(probe_video, part)
        except BaseException:
            _remove(part)
            raise
        await asyncio.to_thread(_into_place, part, path)
        return got


def _download_decide(exc: BaseException) -> Any:
    if isinstance(exc, ExpiredLinkError):
        return 0.0  # the link was renewed: fetch again at once
    if isinstance(exc, (PermanentError, VerificationError)):
        return None
    return retry_transient(exc)


def _into_place(part: Path, path: Path) -> None:
    fsync_path(part)
    os.replace(part, path)
    fsync_path(path.parent)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
