"""The simulated WaveSpeed v3 service: routes, auth, limits, fault injection and the task table.

Faithful to shared/API.md v2: every /api/v3 answer is a ``{"code", "message", "data"}`` envelope whose
code equals the HTTP status. Test hooks live under /_sim/ (ledger, reset, runtime config, clock).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import random
import time
from collections import Counter
from typing import Any, Iterator

from aiohttp import web

from ..models import ModelSpec
from .account import AccountHandlers, quote
from .admission import Admission
from .base import Dropped, SimulatorBase
from .config import SimConfig
from .hooks import Hooks
from .hostile import Hostile
from .ledger import Ledger
from .limits import SimClock, Slots, SubmitWindow
from .listing import ListingHandler
from .tasks import FAILED, Task, decode_data_uri, fetch_image, run_task
from .uploads import UploadHandlers
from .webhook_out import WebhookSender
from .wire import ApiError, envelope, json_object

#: Route names that are WaveSpeed API calls: bearer auth and the per-request faults apply.
API_KINDS = frozenset({"submit", "result", "result_alias", "list", "upload_binary", "upload_alias", "upload_ticket",
                       "balance", "models", "price", "webhook_secret"})
#: Digest of the caller's bearer key, set by the auth gate for API routes.
KEY_ID = web.RequestKey("key_id", str)


class Simulator(SimulatorBase):
    """All simulator state; ``app()`` is the aiohttp application that serves it."""

    key_id_key = KEY_ID
    api_kinds = API_KINDS
    auth = (("bearer",), "missing API key: send the header 'Authorization: Bearer <key>' (set WAVESPEED_API_KEY)",
            "invalid API key: this key is not accepted; check WAVESPEED_API_KEY")

    def __init__(self, config: SimConfig | None = None, clock: SimClock | None = None):
        self.config = config or SimConfig()
        super().__init__(self.config, "sim-render")
        self.clock = clock or SimClock()
        self.uploads = UploadHandlers(self)
        self.hostile = Hostile()
        self._secret = hashlib.sha256(f"batchgen-simulator:{self.config.seed}".encode()).digest()
        self.webhooks = WebhookSender(self._secret, self._client, self.clock.time)
        self._clear()

    def _clear(self) -> None:
        self.rng = random.Random(self.config.seed)
        self.ledger = Ledger()
        self.tasks: dict[str, Task] = {}
        self.active: Counter = Counter()
        self.admission = Admission(self)
        self.submits = SubmitWindow()
        self.slots = Slots(lambda: self.config.concurrency_cap)
        self.balance = float(self.config.balance)
        self.webhooks.attempts.clear()

    async def reset(self) -> None:
        """Forget every task and count, and re-seed the RNG (uploaded files stay servable)."""
        await self._cancel_jobs()
        self._clear()

    def ledger_snapshot(self) -> dict[str, Any]:
        snapshot = self.ledger.snapshot(self.tasks.values(), self.config.charge_failed)
        snapshot["balance"] = round(self.balance, 2)
        snapshot["webhook_attempts"] = list(self.webhooks.attempts)
        return snapshot

    def new_hex(self, length: int) -> str:
        return f"{self.rng.getrandbits(length * 4):0{length}x}"

    @staticmethod
    def origin(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    json_body = staticmethod(json_object)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware],
                              client_max_size=int(self.config.max_upload_mb * 1.5 * 1048576))
        add, up, hooks = app.router, self.uploads, Hooks(self)
        account = AccountHandlers(self)
        # The specific /api/v3 routes come before the catch-all submit route, which would match them too.
        add.add_post("/api/v3/media/upload/binary", up.binary, name="upload_binary")
        add.add_post("/api/v3/upload", up.alias, name="upload_alias")
        add.add_post("/api/v3/media/uploads", up.ticket, name="upload_ticket")
        add.add_get("/api/v3/predictions/{id}/result", self.result, name="result")
        add.add_get("/api/v3/predictions/{id}", self.result, name="result_alias")
        add.add_post("/api/v3/predictions", ListingHandler(self).listing, name="list")
        add.add_get("/api/v3/balance", account.balance, name="balance")
        add.add_get("/api/v3/models", account.models, name="models")
        add.add_post("/api/v3/model/price", account.price, name="price")
        add.add_get("/api/v3/webhook/secret", account.webhook_secret, name="webhook_secret")
        add.add_post("/api/v3/{model:.+}", self.submit, name="submit")
        add.add_put("/_sim/put/{ticket}", up.put, name="upload_put")
        add.add_get("/_sim/uploads/{file_id}/{name:.*}", up.download, name="upload_get")
        add.add_get("/_sim/outputs/{id}/{token}/{name}", hooks.output, name="output")
        add.add_get("/_sim/ledger", hooks.ledger_view, name="ledger")
        add.add_post("/_sim/reset", hooks.reset_view, name="reset")
        add.add_post("/_sim/config", hooks.config_view, name="config")
        add.add_post("/_sim/hostile", hooks.hostile_view, name="hostile")
        add.add_post("/_sim/clock", hooks.clock_view, name="clock")
        app.on_cleanup.append(lambda _app: self.close())
        return app

    # -- request pipeline ------------------------------------------------------------------

    def _answer(self, exc: ApiError) -> web.Response:
        return envelope(exc.status, exc.message, headers=exc.headers)

    def _no_route(self, request: web.Request, exc: web.HTTPException) -> web.Response:
        """No such route (or method) answers 404 like an unknown path, e.g. v1's ``GET /api/v3/predictions``."""
        status = 404 if exc.status == 405 else exc.status
        return envelope(status, f"{request.method} {request.path}: {'Not Found' if status == 404 else exc.reason}")

    async def _request_faults(self) -> None:
        """Dropped, slow or 5xx: the faults any API request may meet (the per-minute limit counts submits only)."""
        faults = self.config.faults
        if self.roll("drop-before", faults.rate_drop_before):
            raise Dropped
        if self.roll("slow", faults.rate_slow):
            await asyncio.sleep(faults.slow_seconds)
        self._roll_5xx("the request was not processed, retry later")

    # -- submit ----------------------------------------------------------------------------

    async def submit(self, request: web.Request) -> web.Response:
        received = await self.json_body(request)
        self.admission.check_burst()
        spec = self.admission.submittable(request.match_info["model"])
        body = {k: v for k, v in received.items() if k != "enable_sync_mode"}
        task = self._accept(request, spec, body)
        if self.roll("drop-after", self.config.faults.rate_drop_after):
            raise Dropped
        if self.roll("slow-after", self.config.faults.rate_slow_after):
            await asyncio.sleep(self.config.faults.slow_seconds)
        data = self.task_data(task)
        hostile = self.hostile.submit_answer(data)
        if hostile is not None:
            return hostile
        if received.get("enable_sync_mode") is True:
            data = await self._hold(task)
        return envelope(200, "success", data)

    def _accept(self, request: web.Request, spec: ModelSpec, body: dict[str, Any]) -> Task:
        _check_image(body.get("image"))
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ApiError(400, "prompt is required: describe the motion, camera and audio")
        price = quote(spec, body)
        key_id = request[KEY_ID]
        self.admission.check_limits(key_id, price)
        task = self.admission.new_task(request, spec, body, price)
        self.tasks[task.id] = task
        self.balance -= price
        self.submits.record(key_id)
        self.active[key_id] += 1
        self._spawn(task)
        return task

    def _spawn(self, task: Task) -> None:
        active = self.active

        def finished(done: asyncio.Task) -> None:
            # A reset swaps in a new counter; only the one this task was counted in is decremented.
            active[task.key_id] -= 1
            if not done.cancelled() and active is self.active:
                self._ended(task)

        self._background(self._life(task)).add_done_callback(finished)

    async def _life(self, task: Task) -> None:
        """Wait for a slot (queued in ``created``), then generate; the slot is freed however it ends."""
        slots = self.slots
        await slots.acquire(task.key_id)
        try:
            task.begin(time.monotonic())
            self.ledger.max_concurrent = max(self.ledger.max_concurrent, sum(slots.running.values()))
            await run_task(task, self.config.seed, self._get_image, self._render)
        finally:
            slots.release(task.key_id)

    def _ended(self, task: Task) -> None:
        """Refund a failed task (unless failures are charged) and send its webhook."""
        if task.status() == FAILED and not self.config.charge_failed:
            self.balance += task.price
        if task.webhook:
            self._background(self._notify(task))

    async def _notify(self, task: Task) -> None:
        cfg = self.config
        payload = {**self.task_data(task), "input": dict(task.body)}
        copies = 2 if self.roll("webhook-duplicate", cfg.faults.rate_webhook_duplicate) else 1
        delivery_id = f"msg_{task.id}"
        for _ in range(copies):
            await self.webhooks.deliver(task.webhook, task.key_id, payload, delivery_id=delivery_id,
                                        attempts=cfg.webhook_attempts, backoff=cfg.webhook_backoff)

    async def _get_image(self, url: str) -> bytes:
        return await fetch_image(url, self.uploads.store.lookup_path, self._client())

    async def _hold(self, task: Task) -> dict[str, Any]:
        """Sync mode: answer when the task ends, or say the sync wait timed out (data.code 5004)."""
        try:
            await asyncio.wait_for(task.finished.wait(), self.config.sync_timeout)
        except asyncio.TimeoutError:
            data = self.task_data(task)
            data["code"] = 5004
            data["error"] = (f"Sync mode timed out after {self.config.sync_timeout:g} s; the task is still "
                             f"running, query {data['urls']['get']}")
            return data
        return self.task_data(task)

    # -- reading tasks -----------------------------------------------------------------------

    def live_tasks(self) -> Iterator[Task]:
        """Tasks not yet deleted by the 7-day retention, oldest first."""
        oldest = self.clock.time() - self.config.retention
        return (t for t in self.tasks.values() if t.created_epoch >= oldest)

    def live_task(self, task_id: str) -> Task | None:
        task = self.tasks.get(task_id)
        if task is None or task.created_epoch < self.clock.time() - self.config.retention:
            return None
        return task

    async def result(self, request: web.Request) -> web.Response:
        task_id = request.match_info["id"]
        task = self.live_task(task_id)
        if task is None or task.key_id != request[KEY_ID]:
            raise ApiError(404, f"prediction {task_id} not found for this API key (predictions are deleted "
                                "after 7 days)")
        self.ledger.polls_by_id[task.id] += 1
        data = self.task_data(task)
        return self.hostile.result_answer(data) or envelope(200, "success", data)

    def task_data(self, task: Task) -> dict[str, Any]:
        """The wire ``data`` of a task; ``urls.get`` is the documented ``/predictions/{id}`` form."""
        output = None
        if task.video is not None:
            ttl = self.config.url_ttl
            expires = 0 if ttl is None else int((time.time() + ttl) * 1000)
            origin = self.hostile.output_base_url or task.origin
            output = f"{origin}/_sim/outputs/{task.id}/{expires}-{self.sign(task.id, expires)}/video.mp4"
        return task.data(f"{task.origin}/api/v3/predictions/{task.id}", output)

    def sign(self, task_id: str, expires: int) -> str:
        return hmac.new(self._secret, f"{task_id}:{expires}".encode(), "sha256").hexdigest()[:24]

    def config_snapshot(self) -> dict[str, Any]:
        cfg = self.config
        plain = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                 if f.name not in {"api_key", "models", "faults"}}
        faults = dataclasses.asdict(cfg.faults)
        faults["unavailable_models"] = sorted(faults["unavailable_models"])
        return {**plain, "api_key_required": cfg.api_key is not None, "models": cfg.models.ids(), "faults": faults}


def _check_image(image: Any) -> None:
    if not isinstance(image, str) or not image:
        raise ApiError(400, "image is required: the URL of the source picture (upload it first, "
                            "or send a data: URI)")
    if image.startswith("data:"):
        try:
            decode_data_uri(image)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from exc
    elif not image.startswith(("http://", "https://")):
        raise ApiError(400, f"image must be an http(s) URL or a data: URI, got {image[:60]!r}")
