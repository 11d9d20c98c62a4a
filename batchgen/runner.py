"""The batch runner: plan from the state, then submit, poll and download with bounds.

Promises, in order: never pay twice (an intent line is durable before every POST, a POST
is retried only when the server said it did not take it, a lost answer makes the job
``unknown`` instead of resubmitting it); never lose a finished video (``.part`` files,
verify, rename, older videos set aside); resume is the same command again.

The runner decides; the provider talks; the StateLog remembers; observers show.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import random
import signal
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .download import part_path, safe_target, set_aside, write_sidecar
from .errors import (
    AmbiguousSubmitError,
    BatchgenError,
    ExpiredLinkError,
    FatalError,
    ModelUnavailableError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from .images import ImageInfo, image_info
from .jobs import JobSpec, JobStatus
from .models import ModelTable, body_hash
from .providers.base import Prediction, PredictionStatus, Provider
from .schedule import Backoff, Pacer, PollPolicy, PollSchedule, Slots
from .state import JobRecord, StateLog, fsync_path
from .verifier import Verifier

log = logging.getLogger("batchgen")

#: Crash-test hook, "stage:N": SIGKILL this process the Nth time it passes that stage's kill point.
_KILL_AT = os.environ.get("BATCHGEN_TEST_KILL_AT", "")
_kill_passes: Counter = Counter()
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def _kill_point(stage: str) -> None:
    if not _KILL_AT:
        return
    want, _, nth = _KILL_AT.partition(":")
    if want == stage:
        _kill_passes[stage] += 1
        if _kill_passes[stage] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)


_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif",
         "BMP": "image/bmp", "TIFF": "image/tiff"}


@dataclass
class RunOptions:
    out_dir: Path
    concurrency: int = 4
    download_concurrency: int = 4
    retry_failed: bool = False
    resubmit_unknown: bool = False
    max_cost: float | None = None
    submit_interval: float = 0.2
    max_download_bytes: int = 4 << 30
    duration_tolerance: float = 0.6
    unknown_grace: float = 3.0
    #: Seconds added on both sides of the listing window (clock skew between us and the provider).
    listing_margin: float = 600.0
    #: WaveSpeed keeps uploaded files 7 days (its docs); an older cached URL is uploaded again.
    upload_max_age: float = 6 * 86400.0
    #: Consecutive "unavailable" submit answers from a model before its jobs go to their fallback.
    fallback_after: int = 3
    poll: PollPolicy = field(default_factory=PollPolicy)
    backoff: Backoff = field(default_factory=Backoff)
    seed: int | None = None


@dataclass
class Plan:
    """What this run will do, decided from the manifest and the state before any request."""

    submit: list[JobSpec] = field(default_factory=list)
    poll: list[JobSpec] = field(default_factory=list)
    download: list[JobSpec] = field(default_factory=list)
    unknown: list[JobSpec] = field(default_factory=list)
    done: list[JobSpec] = field(default_factory=list)
    failed: list[JobSpec] = field(default_factory=list)
    new: int = 0
    changed: int = 0
    removed: int = 0
    missing_files: int = 0


@dataclass
class RunResult:
    plan: Plan
    counts: Counter
    committed: float
    halted: str = ""
    fallbacks: list[str] = field(default_factory=list)
    wall: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.halted:
            return 3
        if self.counts[JobStatus.FAILED] or self.counts[JobStatus.UNKNOWN] or self.counts["pending"]:
            return 1
        return 0


Observer = Callable[[str, dict[str, Any]], None]

class Runner:
    def __init__(self, jobs: list[JobSpec], provider: Provider, state_log: StateLog, models: ModelTable,
                 options: RunOptions, *, observer: Observer | None = None, sleep=asyncio.sleep):
        self.jobs = jobs
        self.provider = provider
        self.log = state_log
        self.models = models
        self.opt = options
        self.observer = observer or (lambda kind, info: None)
        self.sleep = sleep
        self.rng = random.Random(options.seed)
        self.schedule = PollSchedule(options.poll, self.rng)
        self._awaiting_slot = 0
        self._images: dict[str, ImageInfo] = {}
        self._out_root: Path | None = None
        self.pacer = Pacer(options.submit_interval, sleep=sleep)
        self.slots = Slots(options.concurrency)
        self.downloads = asyncio.Semaphore(options.download_concurrency)
        self.halted = ""
        self.stopping = False
        self._uploads: dict[str, asyncio.Task] = {}
        self._unavailable: Counter = Counter()
        self.verifier = Verifier()

    # -- bookkeeping ------------------------------------------------------------------
    @property
    def state(self):
        return self.log.state

    def rec(self, job: JobSpec) -> JobRecord:
        return self.state.record(job.key)

    def emit(self, job: JobSpec | None, kind: str, **info: Any) -> None:
        try:
            self.observer(kind, {"job": job, **info})
        except Exception as exc:  # noqa: BLE001 - e.g. stderr piped into a closed `head`
            # Showing progress is optional; a paid job must never fail because its display did.
            self.observer = lambda kind, info: None
            log.warning("progress display stopped (%s: %s); the run goes on", type(exc).__name__, exc)

    def stop(self, reason: str = "", *, halt: bool = True) -> None:
        """No new submits; what is in flight is polled and downloaded.

        ``halt`` marks a stop the user must act on (bad key, balance, budget: exit 3); an
        interrupt is not one, the same command simply resumes.
        """
        if halt and reason and not self.halted:
            self.halted = reason
        if not self.stopping:
            self.stopping = True
            self.schedule.drain()
            self.emit(None, "stopping", reason=reason or "interrupted")

    def price(self, job: JobSpec, model: str | None = None) -> float:
        return self.models.get(model or job.model).price(job.resolution, job.duration)

    def model_for(self, job: JobSpec) -> str:
        """The model to submit to now: the job's own, or its fallback once the primary is unavailable."""
        fallback = job.fallback_model
        if not fallback or fallback == job.model or self._unavailable[job.model] < self.opt.fallback_after:
            return job.model
        problems = self.models.get(fallback).check(job.params)
        if problems:
            log.warning("job %s cannot fall back to %s (%s); it waits for %s", job.id, fallback,
                        "; ".join(problems), job.model)
            return job.model
        return fallback

    def _note_availability(self, model: str, exc: Exception | None) -> None:
        if exc is None:
            self._unavailable[model] = 0
        elif isinstance(exc, ModelUnavailableError):
            # A model gone for good (retired, not found) needs no second opinion.
            self._unavailable[model] += 1 if exc.temporary else self.opt.fallback_after
            if self._unavailable[model] >= self.opt.fallback_after:
                log.warning("%s is unavailable (%s); jobs with a fallback_model switch to it", model, exc)

    # -- planning ---------------------------------------------------------------------
    def plan(self) -> Plan:
        plan = Plan()
        keys = {j.key for j in self.jobs}
        ids_before = {r.id: r.key for r in self.state.jobs.values() if r.id}
        for job in self.jobs:
            rec = self.state.jobs.get(job.key)
            if rec is None or not rec.id:
                old_key = ids_before.get(job.id)
                if old_key and old_key != job.key:
                    plan.changed += 1
                    self.log.append({"ev": "superseded", "key": old_key, "by": job.key})
                else:
                    plan.new += 1
            self._describe(job, rec)
            rec = self.rec(job)
            status = rec.status
            if status is JobStatus.DOWNLOADED and not self._file_intact(rec):
                plan.missing_files += 1
                self.log.append({"ev": "missing", "key": job.key})
                status = rec.status
            if status is JobStatus.DOWNLOADED:
                plan.done.append(job)
            elif status is JobStatus.SUBMITTED:
                plan.poll.append(job)
            elif status is JobStatus.COMPLETED:
                plan.download.append(job)
            elif status is JobStatus.UNKNOWN:
                plan.unknown.append(job)
            elif status is JobStatus.FAILED and not self.opt.retry_failed:
                plan.failed.append(job)
            elif status is JobStatus.FAILED and rec.error_class in ("download", "internal") and rec.outputs:
                plan.download.append(job)  # the video was paid for: fetch it again, do not regenerate
            elif status is JobStatus.FAILED and rec.error_class == "poll" and rec.pid:
                plan.poll.append(job)  # the task exists; only reading its result went wrong
            else:
                plan.submit.append(job)
        ids = {j.id for j in self.jobs}
        plan.removed = sum(1 for k, r in self.state.jobs.items() if k not in keys and r.id not in ids)
        return plan

    def _describe(self, job: JobSpec, rec: JobRecord | None) -> None:
        desc = {"id": job.id, "output": job.output, "model": job.model, "params": dict(job.params),
                "prompt": job.prompt, "image": job.image, "where": str(job.where), "cost": self.price(job)}
        if rec is None or rec.superseded_by or any(getattr(rec, k) != v for k, v in desc.items() if k != "cost") or (
                rec.status is JobStatus.NEW and rec.cost != desc["cost"]):
            if rec is not None and rec.status is not JobStatus.NEW:
                desc.pop("cost")  # a paid job keeps the price it was submitted at
            self.log.append({"ev": "job", "key": job.key, **desc})

    def _state_file_lost(self) -> bool:
        """Deleted or cut short by someone else during this run: rewrite it from memory, or paid jobs
        would look new to the next run."""
        try:
            lines = self.log.path.read_bytes().count(b"\n")
        except FileNotFoundError:
            lines = -1
        if lines >= self.log.lines:
            return False
        log.warning("the state file %s was deleted or cut short during the run; it is written again from memory",
                    self.log.path)
        return True

    def _file_intact(self, rec: JobRecord) -> bool:
        try:
            return (self.opt.out_dir / rec.path).stat().st_size == rec.bytes
        except OSError:
            return False

    # -- the run ----------------------------------------------------------------------
    def cost_to_pay(self, plan: Plan) -> float:
        """Dollars this run would commit if every planned submit goes through."""
        return round(sum(self.price(j) for j in plan.submit), 2)

    async def run(self, plan: Plan | None = None) -> RunResult:
        started = time.monotonic()
        plan = plan or self.plan()
        self._learn_from_earlier_runs()
        self.emit(None, "plan", plan=plan)
        self.log.append({"ev": "run", "phase": "start", "jobs": len(self.jobs), "new": plan.new,
                         "changed": plan.changed, "removed": plan.removed})
        self.log.flush()
        if plan.unknown:
            await self._reconcile(plan)
        tasks = []
        for job in plan.poll:
            self.slots.take()
            tasks.append(self._job(job, "poll"))
        tasks += [self._job(job, "download") for job in plan.download]
        tasks += [self._job(job, "submit") for job in plan.submit]
        self._awaiting_slot = len(plan.submit)
        if not plan.submit:
            self.schedule.drain()
        try:
            await asyncio.gather(*(asyncio.ensure_future(t) for t in tasks))
        finally:
            self.verifier.shutdown()
        counts = Counter(self.rec(j).status for j in self.jobs)
        counts["pending"] = sum(counts[s] for s in (JobStatus.NEW, JobStatus.SUBMITTED, JobStatus.COMPLETED))
        self.log.append({"ev": "run", "phase": "end", "counts": {str(getattr(k, "value", k)): v for k, v in counts.items()},
                         "halted": self.halted})
        self.log.flush()
        if self.log.should_compact() or self._state_file_lost():
            self.log.compact()
        records = [self.rec(j) for j in self.jobs]
        return RunResult(
            plan=plan, counts=counts,
            committed=round(self.state.committed, 2), halted=self.halted,
            fallbacks=[r.id for r in records if r.fell_back or r.switched], wall=time.monotonic() - started,
        )

    def _learn_from_earlier_runs(self) -> None:
        """A resumed batch starts with the generation times its earlier runs saw: no blind
        probing of the first wave, whose reads grow with how long the jobs take."""
        for job in self.jobs:
            rec = self.state.jobs.get(job.key)
            if rec is not None and rec.inference_ms:
                self.schedule.observe(job.model, job.duration, rec.inference_ms / 1000)

    async def _job(self, job: JobSpec, action: str) -> None:
        """One job from wherever it stands to a file on disk; failures end as data, not exceptions."""
        stage = action
        try:
            if action == "submit":
                await self.slots.acquire()
                self._awaiting_slot -= 1
                if not self._awaiting_slot:
                    self.schedule.drain()  # the last job is in: only the batch's end matters now
                try:
                    submitted = await self._submit(job)
                except BaseException:
                    await self.slots.release()
                    raise
                if not submitted:
                    # Unknown, rejected or stopped: holding the slot would leak it, and with the target
                    # shrunk by 429s a few leaks stall the whole run.
                    await self.slots.release()
                    return
                stage = "poll"
            if stage == "poll":
                try:
                    done = await self._poll(job, just_submitted=action == "submit")
                finally:
                    await self.slots.release()
                if not done:
                    return
            stage = "download"
            await self._download(job)
        except FatalError as exc:
            self.stop(str(exc))
            log.error("run halted: %s", exc)
        except TransientError as exc:
            # The job keeps its place (submitted or completed): the next run picks it up.
            self.emit(job, "stalled", error=str(exc))
            log.warning("job %s: %s kept failing (%s); it stays %s for the next run",
                        job.id, stage, exc, self.rec(job).status.value)
        except BatchgenError as exc:
            self._fail(job, stage, str(exc))
        except (OSError, ValueError) as exc:
            self._fail(job, stage, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a bug in one job must not cancel the batch
            log.exception("job %s: unexpected error during %s", job.id, stage)
            self._fail(job, "internal", f"unexpected {type(exc).__name__} during {stage}: {exc}; please report it")

    def _fail(self, job: JobSpec, cls: str, message: str, **extra: Any) -> None:
        self.log.append({"ev": "failed", "key": job.key, "class": cls, "message": message,
                         "attempt": self.rec(job).attempts, **extra})
        self.emit(job, "failed", error=message, cls=cls)
        log.warning("job %s failed (%s): %s", job.id, cls, message)

    # -- unknown submits ----------------------------------------------------------------
    async def _list_window(self, unknown: list[JobSpec]) -> tuple[list | None, bool]:
        """The provider's predictions of the unknown jobs' models over a window that surely holds their
        submits (earliest intent to now, with clock-skew margins), and whether it was read completely."""
        after = min((self.rec(j).submitted_at or 0) for j in unknown) - self.opt.listing_margin
        listed: list = []
        complete = True
        try:
            for model in sorted({j.model for j in unknown}):
                listing = await self.provider.list_predictions(
                    model=model, created_after=after, created_before=time.time() + self.opt.listing_margin)
                if listing is None:
                    return None, False
                listed += listing.items
                complete = complete and listing.complete
        except BatchgenError as exc:
            log.warning("cannot list recent predictions to reconcile unknown jobs: %s", exc)
            return None, False
        return listed, complete

    async def _reconcile(self, plan: Plan) -> None:
        """Match jobs whose submit answer was lost against the provider's recent tasks."""
        newest = max((self.rec(j).submitted_at or 0) for j in plan.unknown)
        wait = newest + self.opt.unknown_grace - time.time()
        if wait > 0:
            await self.sleep(wait)  # a request sent just before a crash may still be in the server's hands
        listed, complete = await self._list_window(plan.unknown)
        still = []
        if listed is not None:
            # Every task a job ever had, its earlier failed ones too, belongs to that attempt, never to a lost answer.
            known_pids = {pid for r in self.state.jobs.values() for pid in (r.pid, *r.past_pids) if pid}
            free: dict[str, list[str]] = defaultdict(list)
            for item in reversed(listed):  # oldest first, so takes pair up in submit order
                if item.id not in known_pids:
                    free[item.body_hash].append(item.id)
            # An unmatched item without its input may be a lost submit: never conclude "never created" then.
            complete = complete and not free.get("")
            for job in plan.unknown:
                rec = self.rec(job)
                if free.get(rec.body_hash):
                    pid = free[rec.body_hash].pop(0)
                    self.log.append({"ev": "submitted", "key": job.key, "pid": pid, "reconciled": True})
                    log.info("job %s: found its lost submit on the provider as %s", job.id, pid)
                    plan.poll.append(job)
                elif complete:
                    self.log.append({"ev": "unsent", "key": job.key, "class": "reconciled",
                                     "message": "the provider has no task for it: it was never created"})
                    log.info("job %s: its lost submit never reached the provider; submitting it", job.id)
                    plan.submit.append(job)
                else:
                    still.append(job)
        else:
            still = list(plan.unknown)
        for job in still:
            if self.opt.resubmit_unknown:
                self.log.append({"ev": "unsent", "key": job.key, "class": "resubmit-unknown",
                                 "message": "resubmitted on request (--resubmit-unknown)"})
                plan.submit.append(job)
        plan.unknown = [j for j in still if not self.opt.resubmit_unknown]

    # -- submit -----------------------------------------------------------------------
    async def _image_url(self, job: JobSpec) -> str:
        if job.image_url:
            return job.image_url
        return await self._uploaded(job.image_path, job)

    async def _params(self, job: JobSpec) -> dict[str, Any]:
        """The job's body parameters, with a local ``last_image`` (Seedance) uploaded like the image."""
        params = dict(job.params)
        last = params.get("last_image")
        if isinstance(last, str) and last and not last.startswith(("http://", "https://")):
            params["last_image"] = await self._uploaded(last, job)
        return params

    async def _uploaded(self, path: str, job: JobSpec) -> str:
        """Upload a local image once per content hash, ever (the URL is kept in the state)."""
        # The manifest read every image before the run; per submit only the hash is needed, and
        # a stat, isfile and realpath per job added up at 10,000 jobs.
        info = self._images.get(path)
        if info is None:
            info = self._images[path] = image_info(path)
        keyed = job.image_sha256 if path == job.image_path else (
            job.paid_params.get("last_image") if path == job.params.get("last_image") else None)
        if keyed and info.sha256 != keyed:
            # The job's key (what is paid for) names the picture as it was read; never send another.
            raise PermanentError(f"{path} changed after the manifest was read; run again to submit the picture "
                                 "it holds now")
        url = self.state.uploads.get(info.sha256)
        if url and time.time() - self.state.uploaded_at.get(info.sha256, 0.0) < self.opt.upload_max_age:
            return url
        task = self._uploads.get(info.sha256)
        if task is None or (task.done() and task.exception() is not None):
            task = self._uploads[info.sha256] = asyncio.ensure_future(self._upload(path, info, job))
        return await asyncio.shield(task)

    async def _upload(self, path: str, info, job: JobSpec) -> str:
        data = await asyncio.get_running_loop().run_in_executor(None, Path(path).read_bytes)
        if len(data) != info.size_bytes or hashlib.sha256(data).hexdigest() != info.sha256:
            raise PermanentError(f"{path} changed while the run was reading it; run again")
        name = Path(path).name
        url = await self._retrying(lambda: self.provider.upload(data, name, _MIME.get(info.format, "application/octet-stream")),
                                   f"upload {name}")
        _kill_point("uploaded")
        self.log.append({"ev": "upload", "sha256": info.sha256, "url": url})
        self.emit(job, "uploaded", url=url)
        return url

    async def _submit(self, job: JobSpec) -> bool:
        """Submit once, durably; True when the job has a prediction id."""
        transient = 0
        while True:
            if self.stopping:
                return False
            model = self.model_for(job)
            image = await self._image_url(job)
            body = self.provider.build_body(self.models.get(model), image, job.prompt, await self._params(job))
            cost = self.price(job, model)
            await self.pacer.wait()
            if self.stopping:
                return False
            # From this check to the intent line below there is no await: jobs submitting side by
            # side each see the others' spend, so the cap holds however many slots there are.
            if self.opt.max_cost is not None:
                committed = round(self.state.committed, 2)
                if committed + cost > self.opt.max_cost + 1e-9:
                    self.stop(f"budget: ${committed:.2f} committed + ${cost:.2f} for {job.id} would pass "
                              f"--max-cost ${self.opt.max_cost:.2f}; raise the cap and run again to continue")
                    return False
            rec = self.rec(job)
            if model != job.model and rec.submit_model != model:
                log.warning("job %s goes to the fallback model %s at $%.2f (asked %s)", job.id, model, cost, job.model)
            await self.log.append_durable({"ev": "submitting", "key": job.key, "attempt": rec.attempts + 1,
                                           "body_hash": body_hash(body), "model": model, "cost": cost})
            self.emit(job, "submitting")
            _kill_point("submitting")
            try:
                pred = await self.provider.submit(model, body)
            except RateLimitedError as exc:
                self.log.append({"ev": "unsent", "key": job.key, "class": "429", "message": str(exc)})
                self.slots.shrink()
                delay = self.opt.backoff.delay(1, self.rng, exc.retry_after)
                self.pacer.pause(delay)
                log.info("submit %s: rate limited; all submits wait %.1fs", job.id, delay)
                continue
            except ModelUnavailableError as exc:
                self.log.append({"ev": "unsent", "key": job.key, "class": "unavailable", "message": str(exc)})
                self._note_availability(model, exc)
                if self.model_for(job) != model:
                    continue
                if not exc.temporary:
                    self._fail(job, "rejected", f"{model} cannot be used: {exc}", cost=0.0)
                    return False
                transient += 1
                if transient >= self.opt.backoff.attempts:
                    self._fail(job, "transient", f"submit gave up after {transient} tries: {exc}")
                    return False
                await self.sleep(self.opt.backoff.delay(transient, self.rng, exc.retry_after))
                continue
            except TransientError as exc:
                self.log.append({"ev": "unsent", "key": job.key, "class": "transient", "message": str(exc)})
                self._note_availability(model, exc)
                transient += 1
                if transient >= self.opt.backoff.attempts:
                    self._fail(job, "transient", f"submit gave up after {transient} tries: {exc}")
                    return False
                delay = self.opt.backoff.delay(transient, self.rng, exc.retry_after)
                log.info("submit %s: %s; retry in %.1fs", job.id, exc, delay)
                await self.sleep(delay)
                continue
            except AmbiguousSubmitError as exc:
                self.log.append({"ev": "unknown", "key": job.key, "message": str(exc)})
                self.emit(job, "unknown", error=str(exc))
                log.warning("job %s is unknown: %s", job.id, exc)
                return False
            except FatalError as exc:
                self.log.append({"ev": "unsent", "key": job.key, "class": "fatal", "message": str(exc)})
                self.stop(str(exc))
                log.error("run halted: %s", exc)
                return False
            except PermanentError as exc:
                self.log.append({"ev": "failed", "key": job.key, "class": "rejected", "message": str(exc),
                                 "attempt": rec.attempts, "cost": 0.0})
                self.emit(job, "failed", error=str(exc), cls="rejected")
                log.warning("job %s rejected: %s", job.id, exc)
                return False
            self._note_availability(model, None)
            _kill_point("answered")
            self.log.append({"ev": "submitted", "key": job.key, "pid": pred.id, "model": pred.model})
            self.emit(job, "submitted", pid=pred.id)
            await self.slots.accepted()
            return True

    # -- poll -------------------------------------------------------------------------
    async def _poll(self, job: JobSpec, just_submitted: bool = False) -> bool:
        """Read the result on the learned schedule until it ends; True when completed."""
        rec = self.rec(job)
        # The provider's generation time starts when it answered the submit, not when the intent was
        # written: under load the fsync and POST take long enough to make every first read early.
        elapsed = 0.0 if just_submitted or not rec.submitted_at else time.time() - rec.submitted_at
        watch = self.schedule.watch(job.model, job.duration, elapsed)
        try:
            await self.schedule.until_read(watch, self.sleep)
            transient = 0
            while True:
                try:
                    pred = await self.provider.result(rec.pid)
                except FatalError as exc:
                    self.stop(str(exc))
                    raise
                except TransientError as exc:
                    transient += 1
                    if transient >= self.opt.backoff.attempts * 3:
                        raise
                    await self.sleep(self.opt.backoff.delay(transient, self.rng, exc.retry_after))
                    continue
                transient = 0
                if pred.status is PredictionStatus.COMPLETED:
                    if not pred.outputs:
                        raise PermanentError(f"result {rec.pid}: completed without an output URL")
                    self._completed(job, pred)
                    return True
                if pred.status is PredictionStatus.FAILED:
                    # WaveSpeed does not bill a task that ends failed (the simulator follows it): cost 0.
                    self._fail(job, "task", pred.error or "the provider reported the task failed without a reason",
                               cost=0.0)
                    return False
                watch.missed()
                self.emit(job, "generating", pid=rec.pid)
                await self.schedule.until_read(watch, self.sleep)
        finally:
            # Also when reading gave up or the run halted: a watch left open would count as a running
            # job in the schedule's estimate and horizon for the rest of the run.
            watch.close()

    def _completed(self, job: JobSpec, pred: Prediction) -> None:
        rec = self.rec(job)
        first = rec.status is not JobStatus.COMPLETED
        self.log.append({"ev": "completed", "key": job.key, "pid": pred.id, "outputs": list(pred.outputs),
                         "model_used": pred.model, "inference_ms": pred.inference_ms})
        if first:
            took = pred.inference_ms / 1000 if pred.inference_ms else time.time() - (rec.submitted_at or time.time())
            self.schedule.observe(job.model, job.duration, took)
            if pred.model and pred.model != (rec.submit_model or job.model):
                log.warning("job %s asked for %s but the provider answered with %s", job.id, job.model, pred.model)
            self.emit(job, "completed", model_used=pred.model)

    # -- download ---------------------------------------------------------------------
    async def _download(self, job: JobSpec) -> None:
        if self._out_root is None:
            self._out_root = self.opt.out_dir.resolve()
        target = safe_target(self._out_root, job.output, resolved=True)
        part = part_path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tries = 0
        while True:
            rec = self.rec(job)
            try:
                # The slot bounds transfers only: verifying, backing off and placing happen outside it.
                async with self.downloads:
                    if not tries:
                        self.emit(job, "downloading")
                    got = await self.provider.download(rec.outputs[0], part, max_bytes=self.opt.max_download_bytes)
                _kill_point("downloaded")
                await self._check(job, part, scan_packets=not got.length_checked)
                break
            except ExpiredLinkError:
                tries += 1
                if tries > self.opt.backoff.attempts:
                    raise
                log.info("job %s: output link expired; reading the result again for a fresh one", job.id)
                pred = await self._retrying(lambda: self.provider.result(rec.pid), f"result {rec.pid}")
                if pred.status is not PredictionStatus.COMPLETED or not pred.outputs:
                    raise PermanentError(f"result {rec.pid} is {pred.status.value} on re-read; cannot refresh its link")
                self._completed(job, pred)
            except TransientError as exc:
                tries += 1
                if tries > self.opt.backoff.attempts:
                    raise
                log.info("job %s: download: %s; retrying", job.id, exc)
                await self.sleep(self.opt.backoff.delay(tries, self.rng, exc.retry_after))
            except PermanentError:
                _remove(part)
                raise
            except OSError as exc:
                if exc.errno not in _DISK_FULL:
                    raise
                _remove(part)
                raise _disk_full(part, exc) from None
        await self._place(job, target, part, got)

    async def _check(self, job: JobSpec, part: Path, *, scan_packets: bool) -> None:
        """Verify a download in a worker process (see verifier.py)."""
        try:
            await self.verifier.verify(str(part), job.resolution, float(job.duration), job.params.get("aspect_ratio"),
                                       self.opt.duration_tolerance, scan_packets)
        except PermanentError as exc:
            # A body cut inside the container looks like a broken file: fetch it again first.
            raise TransientError(str(exc)) from None

    async def _place(self, job: JobSpec, target: Path, part: Path, got: Any) -> None:
        rec = self.rec(job)
        owner = None
        if target.exists():
            owner = next((r for r in self.state.jobs.values()
                          if r.key != job.key and r.status is JobStatus.DOWNLOADED and r.path == job.output), None)
        sidecar = {
            "id": job.id, "key": job.key, "prompt": job.prompt, "image": job.image, "model_asked": job.model,
            "model_submitted": rec.submit_model or job.model, "model_used": rec.model_used or rec.submit_model or job.model,
            "fell_back": rec.fell_back, "switched_to_fallback": rec.switched, "params": dict(job.params),
            "take": job.take, "prediction_id": rec.pid, "inference_ms": rec.inference_ms, "cost_usd": rec.cost,
            "bytes": got.bytes, "sha256": got.sha256, "manifest": str(job.where),
        }
        # The fsync, renames and sidecar are a few ms of file-system work per job: off the event
        # loop, in one hop to a thread rather than one each.
        try:
            aside = await asyncio.get_running_loop().run_in_executor(
                None, _move_into_place, target, part, owner.key[:8] if owner else None, sidecar)
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise
            _remove(part)
            raise _disk_full(target, exc) from None
        if owner is not None and aside is not None:
            rel = aside.relative_to(self.opt.out_dir.resolve()).as_posix()
            self.log.append({"ev": "downloaded", "key": owner.key, "path": rel, "bytes": owner.bytes,
                             "sha256": owner.sha256, "model_used": owner.model_used})
            log.warning("kept the older video of %s as %s", owner.id, rel)
        self.log.append({"ev": "downloaded", "key": job.key, "path": job.output, "bytes": got.bytes,
                         "sha256": got.sha256, "model_used": rec.model_used})
        self.emit(job, "downloaded", path=job.output)

    async def _retrying(self, call, what: str):
        """Retry an idempotent call on transient errors with backoff (never used for submits)."""
        attempt = 0
        while True:
            try:
                return await call()
            except TransientError as exc:
                attempt += 1
                if attempt >= self.opt.backoff.attempts:
                    raise
                delay = self.opt.backoff.delay(attempt, self.rng, exc.retry_after)
                log.info("%s: %s; retry in %.1fs", what, exc, delay)
                await self.sleep(delay)


def _disk_full(path: Path, exc: OSError) -> FatalError:
    # Halting keeps the job completed: its paid video is fetched by the next run.
    return FatalError(f"cannot write {path}: {exc.strerror}; free some space, then run the same "
                      "command again to fetch the videos already paid for")


def _move_into_place(target: Path, part: Path, aside_tag: str | None, sidecar: dict[str, Any]) -> Path | None:
    """Make a verified .part durable and rename it into place (an older paid video there is set
    aside first), then write its sidecar."""
    fsync_path(part)
    aside = set_aside(target, aside_tag) if aside_tag else None
    os.replace(part, target)
    _kill_point("placed")
    write_sidecar(target, sidecar)
    return aside


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
