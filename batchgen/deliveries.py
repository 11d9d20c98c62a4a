"""Webhook deliveries wired into a run: submits ask for a callback, a listener in this process
verifies each delivery (webhooks.py) and records the task's end exactly as a read would, then
wakes the job's poll. Reads go on as a slow safety net, so a lost delivery costs minutes.

The public URL is the user's (a reverse proxy or a tunnel in front of ``listen``); the key never
goes to the listener's clients: the listener only answers 204, 401, 404 or 500.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import BatchgenError, PermanentError, UsageError
from .lifecycle import JobStatus
from .providers.base import PredictionStatus
from .webhooks import Delivery, WebhookListener

if TYPE_CHECKING:
    from .jobs import JobSpec
    from .runner import Runner

log = logging.getLogger("batchgen")


def check_webhook_url(url: str) -> str:
    """The URL submits name for callbacks: https, or http to this machine (a local test)."""
    parts = urlsplit(url)
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if not parts.hostname or (parts.scheme != "https" and not (parts.scheme == "http" and local)):
        raise UsageError(f"--webhook-url {url!r} must be a public https:// URL (http:// only for localhost); "
                         "put a reverse proxy or a tunnel in front of --listen")
    return url


class Deliveries:
    """The run's webhook side: off unless a URL was given and the provider can sign deliveries."""

    def __init__(self, runner: "Runner"):
        self.r = runner
        self.url = runner.opt.webhook_url
        self.listener: WebhookListener | None = None
        #: Job ends recorded from deliveries (not from reads).
        self.recorded = 0
        self._by_pid: dict[str, "JobSpec"] = {}

    def job_by_pid(self, pid: str) -> "JobSpec | None":
        r = self.r
        if pid not in self._by_pid:
            self._by_pid = {r.rec(j).pid: j for j in r.jobs if r.rec(j).pid}
        return self._by_pid.get(pid)

    def submit_options(self) -> dict[str, Any]:
        """What a submit adds to ask for a callback."""
        return {"webhook": self.url} if self.listener is not None else {}

    async def start(self) -> None:
        if not self.url:
            return
        scheme = self.r.provider.policy.webhook_scheme
        if scheme is None:
            log.warning("%s does not sign webhook deliveries; --webhook-url is ignored and results are polled",
                        self.r.provider.policy.name)
            return
        try:
            secret = await self.r.provider.webhook_secret()
        except BatchgenError as exc:
            log.warning("cannot fetch the webhook signing secret (%s); results are polled instead", exc)
            return
        host, port = self.r.opt.listen
        self.listener = WebhookListener(scheme, secret, self._handle, host=host, port=port,
                                        path=urlsplit(self.url).path or "/")
        try:
            local = await self.listener.start()
        except OSError as exc:
            self.listener = None
            raise UsageError(f"cannot listen for webhooks on {host}:{port} ({exc.strerror}); "
                             "pick another --listen") from exc
        self.r.schedule.webhooks = True
        log.info("webhooks: submits ask for %s; listening on %s (reads only as a safety net)", self.url, local)

    async def close(self) -> None:
        if self.listener is not None:
            log.info("webhooks: %d job end(s) recorded from deliveries", self.recorded)
            if self.listener.rejected:
                log.warning("webhooks: %d delivery(ies) refused (bad signature or too old); nothing changed",
                            self.listener.rejected)
            await self.listener.close()
            self.listener = None

    async def _handle(self, delivery: Delivery) -> None:
        """Record one verified delivery; returning lets the listener answer 2xx, raising answers 500."""
        try:
            pred = self.r.provider.parse_webhook(delivery.body)
        except PermanentError as exc:
            log.warning("webhook %s: the body is not a prediction (%s); ignored", delivery.id, exc)
            return
        job = self.job_by_pid(pred.id)
        if job is None:
            if any(self.r.rec(j).status is JobStatus.SUBMITTING for j in self.r.jobs):
                # Possibly a task whose submit answer is still on its way: the provider delivers again.
                raise LookupError(f"no job has prediction {pred.id} yet")
            log.info("webhook %s: prediction %s is not a task of this batch; ignored", delivery.id, pred.id)
            return
        if pred.status in (PredictionStatus.CREATED, PredictionStatus.PROCESSING):
            return  # an earlier state, late or out of order: only an end is recorded
        if self.r.rec(job).status is not JobStatus.SUBMITTED:
            return  # already recorded (a read or an earlier copy of this delivery got there first)
        try:
            self.r.poller.delivered(job, pred)
        except PermanentError as exc:
            log.warning("webhook %s for job %s: %s; the job's reads will see the same", delivery.id, job.id, exc)
            return
        self.r.state_log.flush()  # the answer is 2xx only once the line is on disk
        self.recorded += 1
