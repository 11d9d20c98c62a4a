"""Fetching a paid video: download to ``.part``, verify, set an older video aside, rename, sidecar.

A download that breaks is fetched again (a cut body looks like a damaged file to the verifier);
an expired output link is renewed by reading the result again. The state records ``downloaded``
only after the rename.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from functools import partial
from pathlib import Path
from typing import Any, Callable

from .crashtest import kill_point
from .download import Targets, part_path, set_aside, sidecar_path, write_sidecar
from .errors import DiskFullError, ExpiredLinkError, PermanentError, TransientError, VerificationError
from .fsguard import refuse_link
from .jobs import JobSpec
from .lifecycle import JobStatus
from .providers.base import Download, Prediction, PredictionStatus, Provider
from .retry import RETRY_DEFAULT, RetryPolicy, retrying
from .sidecars import same_file
from .state import JobRecord, StateLog, fsync_path
from .state_events import Downloaded
from .verifier import Verifier

log = logging.getLogger("batchgen")
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
#: The .prev-TAG of a file found at a target that no recorded job placed there (an older paid video's is its key).
UNRECORDED = "found"


class Fetcher:
    def __init__(self, provider: Provider, state_log: StateLog, verifier: Verifier, options: Any,
                 retry: RetryPolicy, *, sleep, rng, on_completed: Callable[[JobSpec, Prediction], None],
                 on_downloading: Callable[[JobSpec], None]):
        self.provider = provider
        self.state_log = state_log
        self.verifier = verifier
        self.opt = options
        self.retry = retry
        self.sleep = sleep
        self.rng = rng
        self.on_completed = on_completed
        self.on_downloading = on_downloading
        self.slots = asyncio.Semaphore(options.download_concurrency)
        self.targets = Targets(options.out_dir)
        self.root = self.targets.root

    def rec(self, job: JobSpec) -> JobRecord:
        return self.state_log.state.record(job.key)

    async def fetch(self, job: JobSpec) -> Downloaded:
        """Put the job's paid video on disk; returns the state event recorded."""
        target = self.targets(job.output)
        part = part_path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.on_downloading(job)
        try:
            got = await retrying(lambda: self._once(job, part), self.retry, self._decide, sleep=self.sleep,
                                 rng=self.rng, what=f"job {job.id}: download", attempts=self.retry.attempts + 1)
        except (PermanentError, VerificationError):
            _remove(part)
            raise
        except OSError as exc:
            _raise_if_disk_full(part, exc)
            raise
        return await self._place(job, target, part, got)

    async def adopt(self, job: JobSpec, src: Path, got: Download) -> Downloaded:
        """Place a video reconciliation already fetched (its bytes are not fetched twice): verified as
        the job's, then moved to its output."""
        target = self.targets(job.output)
        target.parent.mkdir(parents=True, exist_ok=True)
        await self.verifier.verify(str(src), job.resolution, float(job.duration), job.params.get("aspect_ratio"),
                                   self.opt.duration_tolerance, True)
        return await self._place(job, target, src, got)

    def _decide(self, exc: BaseException) -> Any:
        if isinstance(exc, ExpiredLinkError):
            return 0.0  # _once reads the result again for a fresh link
        if isinstance(exc, TransientError):
            return RETRY_DEFAULT if exc.retry_after is None else exc.retry_after
        return None

    async def _once(self, job: JobSpec, part: Path) -> Download:
        rec = self.rec(job)
        try:
            # The slot bounds transfers only: verifying, backing off and placing happen outside it.
            async with self.slots:
                got = await self.provider.download(rec.outputs[0], part, max_bytes=self.opt.max_download_bytes)
            kill_point("downloaded")
            await self._check(job, part, scan_packets=not got.length_checked)
            return got
        except ExpiredLinkError:
            await self._refresh(job, rec)
            raise

    async def _refresh(self, job: JobSpec, rec: JobRecord) -> None:
        pred = await retrying(lambda: self.provider.result(rec.pid), self.retry, sleep=self.sleep, rng=self.rng,
                              what=f"result {rec.pid}")
        if pred.status is not PredictionStatus.COMPLETED or not pred.outputs:
            raise PermanentError(f"result {rec.pid} is {pred.status.value} on re-read; cannot refresh its link",
                                 job=job.id)
        self.on_completed(job, pred)

    async def _check(self, job: JobSpec, part: Path, *, scan_packets: bool) -> None:
        """Verify a download in a worker process (see verifier.py)."""
        try:
            await self.verifier.verify(str(part), job.resolution, float(job.duration), job.params.get("aspect_ratio"),
                                       self.opt.duration_tolerance, scan_packets)
        except VerificationError as exc:
            # A body cut inside the container looks like a broken file: fetch it again first.
            raise TransientError(str(exc), job=job.id) from exc

    def _owner(self, job: JobSpec) -> JobRecord | None:
        """Another job whose paid video sits at this job's target (an edited row's older take)."""
        return next((r for r in self.state_log.state.jobs.values()
                     if r.key != job.key and r.status is JobStatus.DOWNLOADED and r.path == job.output), None)

    async def _place(self, job: JobSpec, target: Path, part: Path, got: Download) -> Downloaded:
        present = os.path.lexists(target)
        rec, owner = self.rec(job), self._owner(job) if present else None
        place = partial(_move_into_place, target, part, owner.key[:8] if owner else None, sidecar(job, rec, got))
        loop = asyncio.get_running_loop()
        try:
            if present:
                # Something is there already, which may be hashed (a video's worth of reading): the
                # whole placing runs in a thread.
                aside = await loop.run_in_executor(None, partial(place, synced=got.synced))
            else:
                # Only the fsync waits on the disk, and a download made it already as it wrote the last
                # byte. The renames and the sidecar are a dozen quick calls, made here: in a thread, each
                # of them handed the interpreter's lock back and forth with the event loop (most of a
                # Gold batch's system time).
                if not got.synced:
                    await loop.run_in_executor(None, fsync_path, part)
                aside = place(synced=True)
        except OSError as exc:
            _remove(part)
            _raise_if_disk_full(target, exc)
            raise
        if aside is not None:
            rel = aside.relative_to(self.root).as_posix()
            if owner is not None:
                self.state_log.append(Downloaded(owner.key, rel, owner.bytes, owner.sha256, owner.model_used))
                log.warning("kept the older video of %s as %s", owner.id, rel)
            else:
                log.warning("job %s: %s held a file no job in the state had placed there; it is kept as %s",
                            job.id, job.output, rel)
        event = Downloaded(job.key, job.output, got.bytes, got.sha256, rec.model_used)
        self.state_log.append(event)
        return event


def sidecar(job: JobSpec, rec: JobRecord, got: Download) -> dict[str, Any]:
    return {
        "id": job.id, "key": job.key, "prompt": job.prompt, "image": job.image, "model_asked": job.model,
        "model_submitted": rec.submit_model or job.model, "model_used": rec.model_used or rec.submit_model or job.model,
        "fell_back": rec.fell_back, "switched_to_fallback": rec.switched, "params": dict(job.params),
        "take": job.take, "prediction_id": rec.pid, "inference_ms": rec.inference_ms, "cost_usd": rec.cost,
        "bytes": got.bytes, "sha256": got.sha256, "manifest": str(job.where),
    }


def _raise_if_disk_full(path: Path, exc: OSError) -> None:
    """A full disk halts the run and keeps the job completed: its paid video is fetched by the next run."""
    if exc.errno in _DISK_FULL:
        _remove(part_path(path) if not path.name.endswith(".part") else path)
        raise DiskFullError(f"cannot write {path}: {exc.strerror}; free some space, then run the same "
                            "command again to fetch the videos already paid for") from exc


def _move_into_place(target: Path, part: Path, aside_tag: str | None, data: dict[str, Any], *,
                     synced: bool = False) -> Path | None:
    """Make a verified .part durable (unless ``synced``: it is) and rename it into place, then write its
    sidecar. Whatever else is at the target (an older paid video; a file of unknown origin, or one
    altered since its sidecar) is set aside first: only a file of exactly the same bytes is replaced."""
    if not synced:
        fsync_path(part)
    # Links planted at the video's or its sidecar's name are refused before the video is moved in.
    refuse_link(target)
    refuse_link(sidecar_path(target))
    if aside_tag is None and target.exists() and not same_file(target, data["bytes"], data["sha256"]):
        aside_tag = UNRECORDED
    aside = set_aside(target, aside_tag) if aside_tag else None
    os.replace(part, target)
    kill_point("placed")
    write_sidecar(target, data)
    return aside


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass

