"""The simulated Replicate API (docs/replicate.md): predictions, cursor listing, cancel, webhooks, expiry.

Generation, rendering and the ledger are the WaveSpeed simulator's (``Task``/``run_task``,
``RenderCache``, ``Ledger``); only the wire differs. Test hooks live under /_sim/.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import math
import random
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
from aiohttp import web

from ...models import body_hash
from ..ledger import Ledger
from ..render import RenderCache
from ..tasks import Task, fetch_image, iso_at, run_task
from ..wire import ApiError, retry_after_headers
from .config import ReplicateConfig, apply_changes
from .files import FileStore, file_id
from .wire import (TERMINAL, TITLES, Run, check_create, cursor_from, encode_cursor, iso, json_object, prediction_json,
                   prefer_wait, problem, signed_delivery)

log = logging.getLogger("batchgen.simulator.replicate")

API_KINDS = frozenset({"create", "get", "cancel", "list", "secret", "files"})
KEY_ID = web.RequestKey("replicate_key_id", str)


class _Dropped(Exception):
    """Close this request's connection without an answer."""


class ReplicateSimulator:
    """All state of the Replicate simulator; ``app()`` is the aiohttp application that serves it."""

    def __init__(self, config: ReplicateConfig | None = None):
        self.config = config or ReplicateConfig()
        cfg = self.config
        self.cache = RenderCache(max_items=cfg.render_cache_items, directory=cfg.render_cache_dir)
        self._executor = ThreadPoolExecutor(max_workers=cfg.render_workers, thread_name_prefix="repl-render")
        self._session: aiohttp.ClientSession | None = None
        self._jobs: set[asyncio.Task] = set()
        digest = hashlib.sha256(f"batchgen-replicate-simulator:{cfg.seed}".encode()).digest()
        self._url_key = digest
        self.webhook_secret = "whsec_" + base64.b64encode(digest[:24]).decode()
        # Uploaded files outlive a reset, like the WaveSpeed simulator's uploads.
        self.files = FileStore(digest, lambda: file_id(self.rng.randbytes(16)), cfg.clock)
        self._clear()

    def _clear(self) -> None:
        self.rng = random.Random(self.config.seed)
        self.ledger = Ledger()
        self.runs: dict[str, Run] = {}
        self.deliveries: list[dict[str, Any]] = []
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._drivers: dict[str, asyncio.Task] = {}
        self._processing = 0
        self._burst_left = 0
        self._windows: defaultdict[str, deque] = defaultdict(deque)

    async def reset(self) -> None:
        await self._cancel_jobs()
        self._clear()

    async def close(self) -> None:
        await self._cancel_jobs()
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _cancel_jobs(self) -> None:
        jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)

    def ledger_snapshot(self) -> dict[str, Any]:
        """The WaveSpeed simulator's ledger shape, plus Replicate's removed outputs and webhook deliveries."""
        snapshot = self.ledger.snapshot((run.task for run in self.runs.values()), self.config.charge_failed)
        now = self.config.clock()
        snapshot["removed"] = [i for i, run in self.runs.items() if run.removed(now, self.config.output_ttl)]
        snapshot["webhooks"] = list(self.deliveries)
        return snapshot

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        add = app.router
        add.add_post("/v1/models/{owner}/{name}/predictions", self.create, name="create")
        add.add_get("/v1/predictions/{id}", self.get, name="get")
        add.add_post("/v1/predictions/{id}/cancel", self.cancel, name="cancel")
        add.add_get("/v1/predictions", self.listing, name="list")
        add.add_get("/v1/webhooks/default/secret", self.secret, name="secret")
        add.add_post("/v1/files", self.files.create, name="files")
        add.add_get("/v1/files/{id}/download", self.files.download, name="file_get")
        add.add_get("/_sim/outputs/{id}/{token}/{name}", self.output, name="output")
        add.add_get("/_sim/ledger", self.ledger_view, name="ledger")
        add.add_post("/_sim/reset", self.reset_view, name="reset")
        add.add_post("/_sim/config", self.config_view, name="config")
        app.on_cleanup.append(lambda _app: self.close())
        return app

    # -- request pipeline ------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler) -> web.StreamResponse:
        kind = request.match_info.route.name or "unmatched"
        self.ledger.requests[kind] += 1
        try:
            if kind in API_KINDS:
                self._gate(request)
            response = await handler(request)
        except _Dropped:
            if request.transport is not None:
                request.transport.close()
            return web.Response()
        except ApiError as exc:
            response = problem(exc.status, TITLES.get(exc.status, "Error"), exc.message, exc.headers)
        except web.HTTPException as exc:
            response = problem(exc.status, exc.reason, f"{request.method} {request.path}: {exc.reason}")
        except ConnectionResetError:
            return web.Response()
        except Exception as exc:  # noqa: BLE001 - the server must answer, not crash
            log.exception("simulator error on %s %s", request.method, request.path)
            response = problem(500, "Internal server error", f"internal simulator error: {type(exc).__name__}: {exc}")
        self.ledger.responses[response.status] += 1
        return response

    def _gate(self, request: web.Request) -> None:
        """Auth and the server-error fault any API request may meet."""
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() not in ("bearer", "token") or not key:
            raise ApiError(401, "You did not pass an authentication token: send 'Authorization: Bearer "
                                "$REPLICATE_API_TOKEN'")
        if self.config.api_key is not None and not hmac.compare_digest(key, self.config.api_key):
            raise ApiError(401, "You did not pass a valid authentication token; check REPLICATE_API_TOKEN")
        # Only a digest is kept, so no token lands in listings or the ledger.
        request[KEY_ID] = hashlib.sha256(key.encode()).hexdigest()[:16]
        if self._roll("5xx", self.config.faults.rate_5xx):
            code = self.rng.choice((500, 502, 503))
            raise ApiError(code, f"upstream error (simulated HTTP {code}); retry later")

    def _roll(self, name: str, rate: float) -> bool:
        hit = rate > 0 and self.rng.random() < rate
        if hit:
            self.ledger.faults[name] += 1
        return hit

    def _throttle(self, key_id: str) -> None:
        """429 with Retry-After: the create rate per token, and the seeded burst fault."""
        cfg, faults = self.config, self.config.faults
        window, now = self._windows[key_id], time.monotonic()
        while window and window[0] <= now - cfg.rate_window:
            window.popleft()
        wait = None
        if cfg.create_rate and len(window) >= cfg.create_rate:
            wait = window[0] + cfg.rate_window - now
            self.ledger.faults["limit-rate"] += 1
        elif self._burst_left > 0:
            self._burst_left -= 1
            wait = 1.0
            self.ledger.faults["429"] += 1
        elif self._roll("429", faults.rate_429_burst):
            self._burst_left = max(0, faults.burst_len - 1)
            wait = 1.0
        if wait is not None:
            raise ApiError(429, f"Request was throttled. Your rate limit resets in ~{math.ceil(wait)}s.",
                           retry_after_headers(wait))
        window.append(now)

    # -- predictions -----------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        model = f"{request.match_info['owner']}/{request.match_info['name']}"
        request_body = await json_object(request)
        self._throttle(request[KEY_ID])
        if model not in self.config.models:
            raise ApiError(404, f"The requested model {model} does not exist or you do not have access to it.")
        if model in self.config.faults.unavailable_models:
            self.ledger.faults["unavailable"] += 1
            raise ApiError(503, f"model {model} is currently unavailable; retry later or use another model")
        run = self._accept(request[KEY_ID], model, request_body)
        run.origin = f"{request.scheme}://{request.host}"
        if self._roll("drop-after", self.config.faults.rate_drop_after):
            raise _Dropped
        wait = prefer_wait(request.headers.get("Prefer", ""), self.config.max_wait)
        if wait:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(run.task.finished.wait(), wait)
        return web.json_response(self._json(request, run), status=201)

    def _accept(self, key_id: str, model: str, request_body: dict[str, Any]) -> Run:
        body, webhook, events = check_create(request_body)
        spec = self.config.models.get(model)
        problems = spec.check(body)
        if problems:
            raise ApiError(422, "; ".join(problems))
        duration = body.get("duration", spec.default_duration)
        resolution = body.get("resolution", spec.default_resolution)
        cfg = self.config
        gen = (cfg.gen_base + cfg.gen_per_second * duration) * (1 + self.rng.uniform(-cfg.gen_jitter, cfg.gen_jitter))
        task = Task(
            id=file_id(self.rng.randbytes(16)), key_id=key_id, model=model,
            model_used=model, body=body, body_hash=body_hash(body), price=spec.price(resolution, duration),
            duration=duration, resolution=resolution, created_at=iso_at(time.time()), created_epoch=time.time(),
            accepted_at=time.monotonic(), gen=gen, fails=self._roll("fail", cfg.faults.rate_fail),
        )
        version = hashlib.sha256(model.encode()).hexdigest()
        run = Run(task=task, seq=len(self.runs), version=version, webhook=webhook, events=events)
        self.runs[task.id] = run
        job = asyncio.get_running_loop().create_task(self._drive(run))
        self._jobs.add(job)
        self._drivers[task.id] = job
        job.add_done_callback(self._jobs.discard)
        return run

    async def _drive(self, run: Run) -> None:
        """Wait for a slot in ``starting`` (Replicate queues), then generate, then announce the end."""
        cap = self.config.concurrency_cap
        slot = self._slots.setdefault(run.task.key_id, asyncio.Semaphore(cap)) if cap else contextlib.nullcontext()
        async with slot:
            run.task.begin(time.monotonic())
            self._processing += 1
            self.ledger.max_concurrent = max(self.ledger.max_concurrent, self._processing)
            try:
                await asyncio.sleep(max(0.0, run.task.start_at - time.monotonic()))
                run.started_at = iso()
                self._notify(run, "start")
                await run_task(run.task, self.config.seed, self._get_image, self._render)
            finally:
                self._processing -= 1
        self._drivers.pop(run.task.id, None)
        self._ended(run)

    def _ended(self, run: Run) -> None:
        run.completed_at = iso()
        run.ended_clock = self.config.clock()
        self._notify(run, "completed")

    async def _get_image(self, url: str) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return await fetch_image(url, self.files.lookup, self._session)

    async def _render(self, image: bytes, width: int, height: int, duration: int, motion: int, seed: int) -> bytes:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.cache.get_or_render, image, width, height,
                                          duration, motion, seed)

    def _own(self, request: web.Request) -> Run:
        run = self.runs.get(request.match_info["id"])
        if run is None or run.task.key_id != request[KEY_ID]:
            raise ApiError(404, f"prediction {request.match_info['id']} was not found for this token")
        return run

    def _json(self, request: web.Request, run: Run) -> dict[str, Any]:
        return self._prediction(run, f"{request.scheme}://{request.host}")

    def _prediction(self, run: Run, origin: str) -> dict[str, Any]:
        removed = run.removed(self.config.clock(), self.config.output_ttl)
        token = self._sign(run.task.id)
        output = f"{origin}/_sim/outputs/{run.task.id}/{token}/output.mp4" if run.task.video is not None else None
        return prediction_json(run, origin, output, removed)

    def _sign(self, prediction_id: str) -> str:
        return hmac.new(self._url_key, prediction_id.encode(), "sha256").hexdigest()[:24]

    async def get(self, request: web.Request) -> web.Response:
        run = self._own(request)
        self.ledger.polls_by_id[run.task.id] += 1
        return web.json_response(self._json(request, run))

    async def cancel(self, request: web.Request) -> web.Response:
        run = self._own(request)
        if run.status() not in TERMINAL:
            driver = self._drivers.pop(run.task.id, None)
            if driver is not None:
                driver.cancel()
            run.canceled, run.task.error, run.task.done = True, "canceled", True
            run.task.finished.set()
            self._ended(run)
        return web.json_response(self._json(request, run))

    async def listing(self, request: web.Request) -> web.Response:
        """Newest first, ``page_size`` a page; ``next``/``previous`` are URLs carrying an opaque cursor."""
        mine = [run for run in self.runs.values() if run.task.key_id == request[KEY_ID]]
        before, after = cursor_from(request.query.get("cursor"))
        if after is not None:
            page = sorted((r for r in mine if r.seq > after), key=lambda r: r.seq)[:self.config.page_size][::-1]
        else:
            page = sorted((r for r in mine if before is None or r.seq < before), key=lambda r: -r.seq)
            page = page[:self.config.page_size]
        base = f"{request.scheme}://{request.host}/v1/predictions?cursor="
        older = page and any(r.seq < page[-1].seq for r in mine)
        newer = page and any(r.seq > page[0].seq for r in mine)
        return web.json_response({
            "next": base + encode_cursor({"before": page[-1].seq}) if older else None,
            "previous": base + encode_cursor({"after": page[0].seq}) if newer else None,
            "results": [self._json(request, run) for run in page],
        })

    async def secret(self, request: web.Request) -> web.Response:
        return web.json_response({"key": self.webhook_secret})

    # -- webhooks ----------------------------------------------------------------------------

    def _notify(self, run: Run, event: str) -> None:
        if run.webhook and event in run.events:
            job = asyncio.get_running_loop().create_task(self._deliver(run.webhook, event, run))
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)

    async def _deliver(self, url: str, event: str, run: Run, attempts: int = 3) -> None:
        """POST the prediction, signed; a failed delivery is retried like Replicate does (a few times)."""
        body, headers = signed_delivery(self.webhook_secret, self._prediction(run, run.origin))
        if self._session is None:
            self._session = aiohttp.ClientSession()
        record = {"event": event, "prediction": run.task.id, "webhook_id": headers["webhook-id"], "status": None}
        self.deliveries.append(record)
        for attempt in range(attempts):
            try:
                async with self._session.post(url, data=body, headers=headers,
                                              timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    record["status"] = resp.status
                    if resp.status < 300:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                record["status"] = type(exc).__name__
            await asyncio.sleep(0.2 * (attempt + 1))

    # -- output files and test hooks -----------------------------------------------------------

    async def output(self, request: web.Request) -> web.Response:
        run = self.runs.get(request.match_info["id"])
        if run is None or not hmac.compare_digest(request.match_info["token"], self._sign(run.task.id)):
            return web.Response(status=404, text="Not found\n")
        if run.task.video is None or run.removed(self.config.clock(), self.config.output_ttl):
            return web.Response(status=404, text="Not found: the output was removed\n")
        self.ledger.downloads_started += 1
        self.ledger.downloads += 1
        self.ledger.outputs[run.task.id] = run.task.video_sha256
        return web.Response(body=run.task.video, content_type="video/mp4")

    async def ledger_view(self, request: web.Request) -> web.Response:
        return web.json_response(self.ledger_snapshot())

    async def reset_view(self, request: web.Request) -> web.Response:
        await self.reset()
        return web.json_response({"reset": True})

    async def config_view(self, request: web.Request) -> web.Response:
        try:
            apply_changes(self.config, await json_object(request))
        except (ValueError, TypeError) as exc:
            raise ApiError(400, f"cannot change the simulator config: {exc}") from exc
        return web.json_response({"unavailable_models": sorted(self.config.faults.unavailable_models),
                                  "output_ttl": self.config.output_ttl})
