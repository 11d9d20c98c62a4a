"""Submitting one job: pick the model (its fallback once the primary is unavailable), check the
budget, write the intent durably, POST, and record what the answer proves.

A submit is retried only on an answer that proves no task was created (``unsent``); a lost answer
makes the job ``unknown`` (or ``submitted`` when the unreadable answer still named its id). When
every answer was a refusal and the retries run out, nothing was billed: the job stays to do and
the next run submits it.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from .crashtest import kill_point
from .errors import (AmbiguousSubmitError, FatalError, ModelUnavailableError, PermanentError, RateLimitedError,
                     TransientError)
from .jobs import JobSpec
from .models import body_hash
from .pacing import WINDOW
from .providers.base import Prediction
from .retry import RETRY_DEFAULT, retrying
from .state_events import Failed, Submitted, Submitting, Unknown, Unsent
from . import events as ev

if TYPE_CHECKING:
    from .runner import Runner

log = logging.getLogger("batchgen")


#: 429s in a row (nothing accepted between) after which every submit waits, not only the refused one:
#: a per-minute limit refuses every submit, while sporadic 429s come alone or in short bursts.
STREAK = 6
#: The longest wait before sending again a submit refused with a 5xx (no Retry-After).
SUBMIT_BACKOFF_CAP = 2.0


class _Stop(Exception):
    """Raised inside an attempt to end the job's submit without a retry (budget, stop, refusal)."""


class Submitter:
    def __init__(self, runner: "Runner"):
        self.r = runner
        self.unavailable: Counter = Counter()
        #: Seconds from a job's first submit attempt to its task at the provider (moving average), for
        #: sizing the provider-queue margin: refusals' waits and a lost answer's settling included, as
        #: each delays refilling a place freed at the provider (see ``took``).
        self.latency = 0.0
        self._timed = False
        #: 429s since the last accepted submit.
        self.refused_streak = 0

    def took(self, seconds: float) -> None:
        """A job's submit reached the provider ``seconds`` after its first attempt. Counting only the POST
        that went through, 20 % refused or lost submits measured 0.00 s: the margin was sized as if a
        freed place were refilled at once, and the provider's queue ran dry while jobs waited out
        Retry-After or a lost answer's grace."""
        seconds = max(0.0, seconds)
        # The first measure is taken whole: averaged in from zero, the first sizing (the one that may lower
        # the margin) saw a fifth of it.
        self.latency = seconds if not self._timed else self.latency + (seconds - self.latency) * 0.2
        self._timed = True

    def model_for(self, job: JobSpec) -> str:
        """The model to submit to now: the job's own, or its fallback once the primary is unavailable."""
        fallback = job.fallback_model
        if not fallback or fallback == job.model or self.unavailable[job.model] < self.r.opt.fallback_after:
            return job.model
        problems = self.r.models.get(fallback).check(job.params)
        if problems:
            log.warning("job %s cannot fall back to %s (%s); it waits for %s", job.id, fallback,
                        "; ".join(problems), job.model)
            return job.model
        return fallback

    def _note(self, model: str, exc: ModelUnavailableError) -> None:
        # A model gone for good (retired, not found) needs no second opinion.
        self.unavailable[model] += 1 if exc.temporary else self.r.opt.fallback_after
        if self.unavailable[model] >= self.r.opt.fallback_after:
            log.warning("%s is unavailable (%s); jobs with a fallback_model switch to it", model, exc)

    async def submit(self, job: JobSpec) -> bool:
        """Submit durably; True when the job has a prediction id."""
        refusals = Counter()

        def decide(exc: BaseException) -> Any:
            return self._decide(job, exc, refusals)

        # Rate limits pace every submit and do not count against the job; decide() counts the refusals
        # that do (the policy's attempts), so the helper's own limit is out of the way.
        try:
            pred = await retrying(lambda: self._attempt(job), self.r.retry, decide, sleep=self._backoff,
                                  rng=self.r.rng, what=f"submit {job.id}", attempts=10 ** 6)
        except _Stop:
            return False
        except AmbiguousSubmitError as exc:
            if not exc.prediction_id:
                return False
            await self.r.slots.accepted()
            return True
        except (TransientError, ModelUnavailableError) as exc:
            # Every answer was a refusal: nothing was created or billed, so the job stays to do.
            self.r.emit(ev.Stalled(job=job, error=f"submit refused {refusals['n']} times: {exc}"))
            log.warning("job %s: submit refused %d times (%s); it stays to do for the next run",
                        job.id, refusals["n"], exc)
            return False
        self.unavailable[self.r.rec(job).submit_model] = 0
        kill_point("answered")
        self._submitted(job, pred.id, pred.model)
        await self.r.slots.accepted()
        return True

    async def _backoff(self, seconds: float) -> None:
        """A refused submit waits; with a provider that queues, without its slot: nothing of it is at
        the provider, so another job's submit goes through meanwhile (under 20 % refusals, slots held
        through backoffs left the provider a tenth idle). It takes a slot again before sending; a
        provider that answers 429 at its cap keeps the slot, which its probing counts."""
        r = self.r
        if not r.provider.policy.queues_over_limit:
            await r.sleep(seconds)
            return
        await r.slots.release()
        try:
            await r.sleep(seconds)
            if not r.stopping:
                await r.slots.acquire()
                return
        except BaseException:
            r.slots.take()  # the caller gives back the slot it holds, whatever happens
            raise
        r.slots.take()  # stopping: no wait for a slot, the attempt ends at once

    def _submitted(self, job: JobSpec, pid: str, model: str | None) -> None:
        self.r.state_log.append(Submitted(job.key, pid, model))
        rec = self.r.rec(job)
        self.r.emit(ev.Submitted(job=job, pid=pid, model=rec.submit_model or job.model, cost=rec.cost))

    def _decide(self, job: JobSpec, exc: BaseException, refusals: Counter) -> Any:
        """Whether a refused submit is sent again, and after how long (its 'unsent' line is written)."""
        if isinstance(exc, RateLimitedError):
            return self._rate_limited(job, exc)
        if isinstance(exc, ModelUnavailableError) and self.model_for(job) != (exc.model or self.r.rec(job).submit_model):
            return 0.0  # its fallback now stands in
        if not isinstance(exc, TransientError) and not (isinstance(exc, ModelUnavailableError) and exc.temporary):
            return None
        refusals["n"] += 1
        if refusals["n"] >= self.r.retry.attempts:
            return None
        retry_after = getattr(exc, "retry_after", None)
        # Backed off by this job's own refusals (counting its 429s too made a sporadic 5xx wait 30 s),
        # and briefly: the job holds an in-flight place meanwhile, and a refused POST cost nothing.
        if retry_after is None:
            return min(SUBMIT_BACKOFF_CAP, self.r.retry.backoff(refusals["n"], self.r.rng))
        return retry_after

    def _rate_limited(self, job: JobSpec, exc: RateLimitedError) -> float:
        """How long this refused submit waits; whether every submit waits too.

        A provider that queues over its cap answers 429 only for its per-minute limit, so its 429
        never shrinks the in-flight target. One without Retry-After waits for the next window (a
        growing backoff would skip windows the account could use), and so does every submit. With
        Retry-After, a lone 429 holds only its own submit (sporadic ones are common and must not
        stall the run); a streak of them holds all."""
        r = self.r
        queues = r.provider.policy.queues_over_limit
        self.refused_streak += 1
        if not queues:
            r.slots.shrink()
        if exc.retry_after is not None:
            delay = r.retry.wait(1, r.rng, exc.retry_after)
            everyone = not queues or self.refused_streak >= STREAK
        elif queues or r.bucket is not None:
            delay, everyone = r.retry.wait(1, r.rng, WINDOW), True
        else:
            delay, everyone = r.retry.wait(1, r.rng, RETRY_DEFAULT), True
        if everyone:
            if r.bucket is not None:
                r.bucket.pause(delay)
            r.pacer.pause(delay)
        log.info("submit %s: rate limited; %s wait %.1fs", job.id, "all submits" if everyone else "it will", delay)
        return delay

    async def _attempt(self, job: JobSpec) -> Prediction:
        r = self.r
        if r.stopping:
            raise _Stop()
        model = self.model_for(job)
        try:
            body = r.provider.build_body(r.models.get(model), await r.uploads.image_url(job, model), job.prompt,
                                         await r.uploads.params(job, model))
        except ModelUnavailableError as exc:
            self._note(model, exc)  # its provider cannot even take the image (unreachable): a refusal too
            raise
        cost = r.price(job, model)
        await r.deadlines.before_submit(lambda: r.stopping)
        await r.pacer.wait()
        if r.bucket is not None:
            await r.bucket.acquire()  # the per-minute limit counts submits, so a refused one takes a token too
        async with r.settler.sending():  # not while a listing settling lost submits is read
            # From this check to the intent line below there is no await: jobs submitting side by
            # side each see the others' spend, so the cap holds however many slots there are.
            if r.stopping or not r.budget.allows(job, cost, r.stop):
                raise _Stop()
            rec = r.rec(job)
            if model != job.model and rec.submit_model != model:
                log.warning("job %s goes to the fallback model %s at $%.2f (asked %s)", job.id, model, cost,
                            job.model)
            await r.state_log.append_durable(Submitting(job.key, rec.attempts + 1, body_hash(body), model, cost))
            r.emit(ev.Submitting(job=job, attempt=rec.attempts, model=model, cost=cost))
            kill_point("submitting")
            try:
                pred = await r.provider.submit(model, body, **r.hooks.submit_options())
            except BaseException as exc:
                self._answered_with(job, model, exc)
                raise
        self.refused_streak = 0
        return pred

    def _answered_with(self, job: JobSpec, model: str, exc: BaseException) -> None:
        """Record what a failed POST proves; raise _Stop when the job's submit ends here."""
        r, key = self.r, job.key
        if isinstance(exc, ModelUnavailableError):
            r.state_log.append(Unsent(key, "unavailable", str(exc)))
            self._note(model, exc)
            if not exc.temporary and self.model_for(job) == model:
                self._fail(job, "rejected", f"{model} cannot be used: {exc}")
                raise _Stop() from exc
        elif isinstance(exc, (RateLimitedError, TransientError)):
            r.state_log.append(Unsent(key, "429" if isinstance(exc, RateLimitedError) else "transient", str(exc)))
        elif isinstance(exc, AmbiguousSubmitError):
            self._ambiguous(job, exc)
        elif isinstance(exc, FatalError):
            r.state_log.append(Unsent(key, "fatal", str(exc)))
            r.stop(str(exc))
            raise _Stop() from exc
        elif isinstance(exc, PermanentError):
            self._fail(job, "rejected", str(exc))
            raise _Stop() from exc

    def _ambiguous(self, job: JobSpec, exc: AmbiguousSubmitError) -> None:
        if exc.prediction_id:
            # The answer could not be read whole, but it named the task: that is the job's task.
            log.warning("job %s: the submit answer was unreadable but named %s; following it", job.id,
                        exc.prediction_id)
            self._submitted(job, exc.prediction_id, None)
            return
        self.r.state_log.append(Unknown(job.key, str(exc)))
        self.r.emit(ev.Unknown(job=job, error=str(exc)))
        log.warning("job %s is unknown: %s", job.id, exc)

    def _fail(self, job: JobSpec, cls: str, message: str) -> None:
        self.r.state_log.append(Failed(job.key, cls, message, self.r.rec(job).attempts, 0.0))
        self.r.emit(ev.Failed(job=job, error=message, cls=cls))
        log.warning("job %s rejected: %s", job.id, message)
