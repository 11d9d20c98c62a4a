"""What both simulated APIs (WaveSpeed and Replicate) do alike around their wires.

The request pipeline (count, gate, answer errors, never crash), the background jobs a reset or
close cancels, the shared HTTP client, the render pool and the seeded fault dice live here once;
a subclass brings its routes, its ``_gate`` and how its wire spells an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Coroutine

import aiohttp
from aiohttp import web

from .ledger import Ledger
from .render import RenderCache
from .wire import ApiError

log = logging.getLogger("batchgen.simulator")


class Dropped(Exception):
    """Close this request's connection without an answer."""


class SimulatorBase:
    """Jobs, client, render pool and request pipeline; subclasses set ``api_kinds`` and the hooks below."""

    #: Route names that are API calls: the key check and ``_request_faults`` run for them.
    api_kinds: frozenset[str] = frozenset()
    #: Where the gate leaves the digest of the caller's key for the handlers.
    key_id_key: web.RequestKey[str]
    #: Accepted Authorization schemes, and the 401 messages for a missing and a refused key, in this wire's words.
    auth: tuple[tuple[str, ...], str, str]
    config: Any
    rng: random.Random
    ledger: Ledger

    def __init__(self, cfg: Any, thread_prefix: str):
        self.cache = RenderCache(max_items=cfg.render_cache_items, directory=cfg.render_cache_dir)
        self._executor = ThreadPoolExecutor(max_workers=cfg.render_workers, thread_name_prefix=thread_prefix)
        self._session: aiohttp.ClientSession | None = None
        self._jobs: set[asyncio.Task] = set()

    # -- hooks -------------------------------------------------------------------------------

    async def _request_faults(self) -> None:
        """The faults any API request may meet once its key is accepted."""

    def _answer(self, exc: ApiError) -> web.Response:
        """How this wire spells an error (also used for internal errors, as HTTP 500)."""
        raise NotImplementedError

    def _no_route(self, request: web.Request, exc: web.HTTPException) -> web.Response:
        """The answer to a path or method no route serves."""
        raise NotImplementedError

    # -- background jobs, client, renderer -----------------------------------------------------

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

    def _background(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task:
        """Run ``coro`` as a job a reset or close cancels."""
        job = asyncio.get_running_loop().create_task(coro)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        return job

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _render(self, image: bytes, width: int, height: int, duration: int, motion: int, seed: int) -> bytes:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self.cache.get_or_render, image, width, height, duration, motion, seed
        )

    def roll(self, name: str, rate: float) -> bool:
        """One draw of the seeded dice for fault ``name``; a hit is counted in the ledger."""
        hit = rate > 0 and self.rng.random() < rate
        if hit:
            self.ledger.faults[name] += 1
        return hit

    def _key_id(self, request: web.Request) -> str:
        """A digest of the request's key, or 401. Only a digest is kept, so no key ever lands in memory
        dumps, listings or the ledger."""
        schemes, missing, invalid = self.auth
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() not in schemes or not key:
            raise ApiError(401, missing)
        if self.config.api_key is not None and not hmac.compare_digest(key, self.config.api_key):
            raise ApiError(401, invalid)
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def _roll_5xx(self, advice: str) -> None:
        """The seeded server-error fault: answer 500, 502 or 503 without doing anything."""
        if self.roll("5xx", self.config.faults.rate_5xx):
            code = self.rng.choice((500, 502, 503))
            raise ApiError(code, f"upstream error (simulated HTTP {code}); {advice}")

    # -- request pipeline ------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler) -> web.StreamResponse:
        started = time.monotonic()
        kind = request.match_info.route.name or "unmatched"
        self.ledger.requests[kind] += 1
        try:
            if kind in self.api_kinds:
                request[self.key_id_key] = self._key_id(request)
                await self._request_faults()
            response = await handler(request)
        except Dropped:
            if request.transport is not None:
                request.transport.close()
            log.debug("%s %s -> connection dropped", request.method, request.path)
            return web.Response()
        except ApiError as exc:
            response = self._answer(exc)
        except web.HTTPException as exc:
            response = self._no_route(request, exc)
        except ConnectionResetError:
            # The client went away mid-request (a killed runner): nothing to answer, nothing to report.
            log.debug("%s %s -> client disconnected", request.method, request.path)
            return web.Response()
        except Exception as exc:  # noqa: BLE001 - the server must answer, not crash
            log.exception("simulator error on %s %s", request.method, request.path)
            response = self._answer(ApiError(500, f"internal simulator error: {type(exc).__name__}: {exc}"))
        self.ledger.responses[response.status] += 1
        log.debug("%s %s -> %s (%.0f ms)", request.method, request.path, response.status,
                  (time.monotonic() - started) * 1000)
        return response


