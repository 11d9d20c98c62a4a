"""The simulated WaveSpeed v3 service: routes, auth, limits, fault injection and the task table.

Faithful to shared/API.md: every /api/v3 answer is a ``{"code", "message", "data"}`` envelope whose
code equals the HTTP status. Test hooks live under /_sim/ (ledger, reset, runtime config).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import logging
import random
import time
from collections import Counter, defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
from aiohttp import web

from ..errors import ModelTableError
from ..models import body_hash
from .config import SimConfig, apply_changes
from .hostile import Hostile
from .ledger import Ledger
from .render import RenderCache
from .tasks import Task, decode_data_uri, fetch_image, iso_now, run_task
from .uploads import UploadHandlers
from .wire import ApiError, envelope, retry_after_headers, signed_url_error

log = logging.getLogger("batchgen.simulator")

#: Route names that are WaveSpeed API calls: bearer auth, rpm, and the per-request faults apply.
API_KINDS = frozenset({"submit", "result", "list", "upload_binary", "upload_alias", "upload_ticket"})
_CHUNK = 1 << 16
#: Digest of the caller's bearer key, set by the auth gate for API routes.
KEY_ID = web.RequestKey("key_id", str)


class _Dropped(Exception):
    """Close this request's connection without an answer."""


class Simulator:
    """All simulator state; ``app()`` is the aiohttp application that serves it."""

    def __init__(self, config: SimConfig | None = None):
        self.config = config or SimConfig()
        self.cache = RenderCache(max_items=self.config.render_cache_items, directory=self.config.render_cache_dir)
        self.uploads = UploadHandlers(self)
        self.hostile = Hostile()
        self._executor = ThreadPoolExecutor(max_workers=self.config.render_workers, thread_name_prefix="sim-render")
        self._session: aiohttp.ClientSession | None = None
        self._jobs: set[asyncio.Task] = set()
        self._secret = hashlib.sha256(f"batchgen-simulator:{self.config.seed}".encode()).digest()
        self._clear()

    def _clear(self) -> None:
        self.rng = random.Random(self.config.seed)
        self.ledger = Ledger()
        self.tasks: dict[str, Task] = {}
        self._active: Counter = Counter()
        self._burst_left = 0
        self._windows: defaultdict[str, deque] = defaultdict(deque)

    async def reset(self) -> None:
        """Forget every task and count, and re-seed the RNG (uploaded files stay servable)."""
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
        return self.ledger.snapshot(self.tasks.values(), self.config.charge_failed)

    def new_hex(self, length: int) -> str:
        return f"{self.rng.getrandbits(length * 4):0{length}x}"

    @staticmethod
    def origin(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    @staticmethod
    async def json_body(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not valid JSON; send a JSON object") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return body

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware],
                              client_max_size=int(self.config.max_upload_mb * 1.5 * 1048576))
        add = app.router
        up = self.uploads
        # The specific /api/v3 routes come before the catch-all submit route, which would match them too.
        add.add_post("/api/v3/media/upload/binary", up.binary, name="upload_binary")
        add.add_post("/api/v3/upload", up.alias, name="upload_alias")
        add.add_post("/api/v3/media/uploads", up.ticket, name="upload_ticket")
        add.add_get("/api/v3/predictions/{id}/result", self.result, name="result")
        add.add_get("/api/v3/predictions", self.listing, name="list")
        add.add_post("/api/v3/{model:.+}", self.submit, name="submit")
        add.add_put("/_sim/put/{ticket}", up.put, name="upload_put")
        add.add_get("/_sim/uploads/{file_id}/{name:.*}", up.download, name="upload_get")
        add.add_get("/_sim/outputs/{id}/{token}/{name}", self.output, name="output")
        add.add_get("/_sim/ledger", self.ledger_view, name="ledger")
        add.add_post("/_sim/reset", self.reset_view, name="reset")
        add.add_post("/_sim/config", self.config_view, name="config")
        add.add_post("/_sim/hostile", self.hostile_view, name="hostile")
        app.on_cleanup.append(lambda _app: self.close())
        return app

    # -- request pipeline ------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler) -> web.StreamResponse:
        started = time.monotonic()
        kind = request.match_info.route.name or "unmatched"
        self.ledger.requests[kind] += 1
        try:
            if kind in API_KINDS:
                await self._gate(request)
            response = await handler(request)
        except _Dropped:
            if request.transport is not None:
                request.transport.close()
            log.debug("%s %s -> connection dropped", request.method, request.path)
            return web.Response()
        except ApiError as exc:
            response = envelope(exc.status, exc.message, headers=exc.headers)
        except web.HTTPException as exc:
            response = envelope(exc.status, f"{request.method} {request.path}: {exc.reason}")
        except ConnectionResetError:
            # The client went away mid-request (a killed runner): nothing to answer, nothing to report.
            log.debug("%s %s -> client disconnected", request.method, request.path)
            return web.Response()
        except Exception as exc:  # noqa: BLE001 - the server must answer, not crash
            log.exception("simulator error on %s %s", request.method, request.path)
            response = envelope(500, f"internal simulator error: {type(exc).__name__}: {exc}")
        self.ledger.responses[response.status] += 1
        log.debug("%s %s -> %s (%.0f ms)", request.method, request.path, response.status,
                  (time.monotonic() - started) * 1000)
        return response

    async def _gate(self, request: web.Request) -> None:
        """Auth, the per-key request rate, and the faults any API request may meet."""
        request[KEY_ID] = self._key_id(request)
        self._check_rpm(request[KEY_ID])
        faults = self.config.faults
        if self._roll("drop-before", faults.rate_drop_before):
            raise _Dropped
        if self._roll("slow", faults.rate_slow):
            await asyncio.sleep(faults.slow_seconds)
        if self._roll("5xx", faults.rate_5xx):
            code = self.rng.choice((500, 502, 503))
            raise ApiError(code, f"upstream error (simulated HTTP {code}); the request was not processed, retry later")

    def _key_id(self, request: web.Request) -> str:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise ApiError(401, "missing API key: send the header 'Authorization: Bearer <key>' "
                                "(set WAVESPEED_API_KEY)")
        if self.config.api_key is not None and not hmac.compare_digest(key, self.config.api_key):
            raise ApiError(401, "invalid API key: this key is not accepted; check WAVESPEED_API_KEY")
        # Only a digest is kept, so no key ever lands in memory dumps, listings or the ledger.
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def _check_rpm(self, key_id: str) -> None:
        rpm = self.config.rpm
        if not rpm:
            return
        window, now = self._windows[key_id], time.monotonic()
        span = self.config.rpm_window
        while window and window[0] <= now - span:
            window.popleft()
        if len(window) >= rpm:
            wait = window[0] + span - now
            self.ledger.faults["limit-rpm"] += 1
            raise ApiError(429, f"too many requests: this API key is limited to {rpm} requests per minute; "
                                f"retry after {wait:.1f} s", retry_after_headers(wait))
        window.append(now)

    def _roll(self, name: str, rate: float) -> bool:
        if rate <= 0:
            return False
        hit = self.rng.random() < rate
        if hit:
            self.ledger.faults[name] += 1
        return hit

    # -- API handlers ----------------------------------------------------------------------

    async def submit(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        received = await self.json_body(request)
        self._check_burst()
        if model not in self.config.models:
            raise ApiError(400, f"unknown model {model!r}: there is no /api/v3/{model}; "
                                f"known models: {', '.join(self.config.models.ids())}")
        if model in self.config.faults.unavailable_models:
            self.ledger.faults["unavailable"] += 1
            raise ApiError(503, f"model {model} is temporarily unavailable; retry later or use another model")
        body = {k: v for k, v in received.items() if k != "enable_sync_mode"}
        task = self._accept(request, model, body)
        if self._roll("drop-after", self.config.faults.rate_drop_after):
            raise _Dropped
        data = task.data(self._result_url(request, task), None)
        hostile = self.hostile.submit_answer(data)
        if hostile is not None:
            return hostile
        if received.get("enable_sync_mode") is True:
            data = await self._hold(request, task)
        return envelope(200, "success", data)

    def _check_burst(self) -> None:
        faults = self.config.faults
        if self._burst_left > 0:
            self._burst_left -= 1
            self.ledger.faults["429"] += 1
        elif self._roll("429", faults.rate_429_burst):
            self._burst_left = max(0, faults.burst_len - 1)
        else:
            return
        raise ApiError(429, "too many requests: the account's rate limit was reached; retry later",
                       retry_after_headers(self.config.retry_after))

    def _accept(self, request: web.Request, model: str, body: dict[str, Any]) -> Task:
        spec = self.config.models.get(model)
        _check_image(body.get("image"))
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ApiError(400, "prompt is required: describe the motion, camera and audio")
        problems = spec.check(body)
        if problems:
            raise ApiError(400, "; ".join(problems))
        resolution = body.get("resolution", spec.default_resolution)
        duration = body.get("duration", spec.default_duration)
        try:
            price = spec.price(resolution, duration)
        except ModelTableError as exc:
            raise ApiError(400, str(exc)) from None
        key_id = request[KEY_ID]
        cap = self.config.concurrency_cap
        if cap is not None and self._active[key_id] >= cap:
            self.ledger.faults["limit-concurrency"] += 1
            raise ApiError(429, f"too many requests: {cap} tasks are already in progress for this API key "
                                "(concurrency limit); retry when one finishes",
                           retry_after_headers(self.config.retry_after))
        cfg = self.config
        gen = (cfg.gen_base + cfg.gen_per_second * duration) * (1 + self.rng.uniform(-cfg.gen_jitter, cfg.gen_jitter))
        task_id = self.new_hex(32)
        fails = self._roll("fail", cfg.faults.rate_fail)
        model_used = model
        fallback = cfg.fallback_models.get(model)
        if fallback and self._roll("fallback", cfg.faults.rate_fallback):
            model_used = fallback
        now = time.monotonic()
        task = Task(
            id=task_id, key_id=key_id, model=model, model_used=model_used, body=body,
            body_hash=body_hash(body), price=price, duration=duration, resolution=resolution,
            created_at=iso_now(), accepted_at=now, start_at=now + min(0.5, 0.1 * gen),
            finish_at=now + gen, fails=fails,
        )
        self.tasks[task_id] = task
        self._active[key_id] += 1
        self.ledger.max_concurrent = max(self.ledger.max_concurrent, sum(self._active.values()))
        self._spawn(task)
        return task

    def _spawn(self, task: Task) -> None:
        job = asyncio.get_running_loop().create_task(run_task(task, self.config.seed, self._get_image, self._render))
        self._jobs.add(job)
        active = self._active

        def finished(done: asyncio.Task) -> None:
            self._jobs.discard(done)
            # A reset swaps in a new counter; only the one this task was counted in is decremented.
            active[task.key_id] -= 1

        job.add_done_callback(finished)

    async def _get_image(self, url: str) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return await fetch_image(url, self.uploads.store.lookup_path, self._session)

    async def _render(self, image: bytes, width: int, height: int, duration: int, motion: int, seed: int) -> bytes:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self.cache.get_or_render, image, width, height, duration, motion, seed
        )

    async def _hold(self, request: web.Request, task: Task) -> dict[str, Any]:
        """Sync mode: answer when the task ends, or say the sync wait timed out (data.code 5004)."""
        try:
            await asyncio.wait_for(task.finished.wait(), self.config.sync_timeout)
        except asyncio.TimeoutError:
            data = task.data(self._result_url(request, task), None)
            data["code"] = 5004
            data["error"] = (f"Sync mode timed out after {self.config.sync_timeout:g} s; the task is still "
                             f"running, query {data['urls']['get']}")
            return data
        return self._task_data(request, task)

    async def result(self, request: web.Request) -> web.Response:
        task = self._own_task(request)
        self.ledger.polls_by_id[task.id] += 1
        data = self._task_data(request, task)
        return self.hostile.result_answer(data) or envelope(200, "success", data)

    def _own_task(self, request: web.Request) -> Task:
        task_id = request.match_info["id"]
        task = self.tasks.get(task_id)
        if task is None or task.key_id != request[KEY_ID]:
            raise ApiError(404, f"prediction {task_id} not found for this API key")
        return task

    def _result_url(self, request: web.Request, task: Task) -> str:
        return f"{self.origin(request)}/api/v3/predictions/{task.id}/result"

    def _task_data(self, request: web.Request, task: Task) -> dict[str, Any]:
        output = None
        if task.video is not None:
            ttl = self.config.url_ttl
            expires = 0 if ttl is None else int((time.time() + ttl) * 1000)
            origin = self.hostile.output_base_url or self.origin(request)
            output = f"{origin}/_sim/outputs/{task.id}/{expires}-{self._sign(task.id, expires)}/video.mp4"
        return task.data(self._result_url(request, task), output)

    def _sign(self, task_id: str, expires: int) -> str:
        return hmac.new(self._secret, f"{task_id}:{expires}".encode(), "sha256").hexdigest()[:24]

    async def listing(self, request: web.Request) -> web.Response:
        if not self.config.enable_listing:
            raise ApiError(404, "listing predictions is not offered by this server")
        raw = request.query.get("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            raise ApiError(400, f"limit must be a whole number from 1 to 1000, got {raw!r}")
        mine = (t for t in reversed(self.tasks.values()) if t.key_id == request[KEY_ID])
        items = []
        for task in mine:
            if len(items) >= int(raw):
                break
            items.append({"id": task.id, "model": task.model, "status": task.status(),
                          "created_at": task.created_at, "input": task.body, "body_hash": task.body_hash})
        return envelope(200, "success", {"items": items, "limit": int(raw)})

    # -- output files ----------------------------------------------------------------------

    async def output(self, request: web.Request) -> web.StreamResponse:
        task_id = request.match_info["id"]
        expires, _, signature = request.match_info["token"].partition("-")
        if not expires.isdigit() or not hmac.compare_digest(signature, self._sign(task_id, int(expires))):
            return signed_url_error(403, "SignatureDoesNotMatch", "The request signature is not valid.")
        if expires != "0" and time.time() * 1000 > int(expires):
            return signed_url_error(403, "AccessDenied", "Request has expired; read the result again for a new URL.")
        task = self.tasks.get(task_id)
        if task is None or task.video is None:
            return signed_url_error(404, "NoSuchKey", "The specified key does not exist.")
        hostile = await self.hostile.output_answer(request)
        if hostile is not None:
            return hostile
        video = task.video
        self.ledger.downloads_started += 1
        truncate = self._roll("truncate", self.config.faults.rate_truncate)
        end = self.rng.randint(1, len(video) - 1) if truncate else len(video)
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.content_length = len(video)
        try:
            await response.prepare(request)
            for offset in range(0, end, _CHUNK):
                await response.write(video[offset:min(offset + _CHUNK, end)])
            if truncate:
                request.transport.close()
                return response
            await response.write_eof()
        except ConnectionResetError:
            return response
        self.ledger.downloads += 1
        self.ledger.outputs[task_id] = task.video_sha256
        return response

    # -- test hooks ------------------------------------------------------------------------

    async def ledger_view(self, request: web.Request) -> web.Response:
        return web.json_response(self.ledger_snapshot())

    async def reset_view(self, request: web.Request) -> web.Response:
        await self.reset()
        return web.json_response({"reset": True})

    async def config_view(self, request: web.Request) -> web.Response:
        changes = await self.json_body(request)
        try:
            apply_changes(self.config, changes)
        except (ValueError, TypeError) as exc:
            raise ApiError(400, f"cannot change the simulator config: {exc}") from None
        return web.json_response(self.config_snapshot())

    async def hostile_view(self, request: web.Request) -> web.Response:
        try:
            self.hostile.set(await self.json_body(request))
        except ValueError as exc:
            raise ApiError(400, f"cannot set a hostile mode: {exc}") from None
        return web.json_response({"mode": self.hostile.mode, "left": self.hostile.left,
                                  "output_base_url": self.hostile.output_base_url})

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
            raise ApiError(400, str(exc)) from None
    elif not image.startswith(("http://", "https://")):
        raise ApiError(400, f"image must be an http(s) URL or a data: URI, got {image[:60]!r}")
