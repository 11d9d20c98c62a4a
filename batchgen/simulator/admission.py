"""Whether the simulator takes one more submit, and the task it becomes.

The checks follow shared/API.md "Account limits": retired models (``--sora2``), 429 bursts, the
concurrency cap in "429" mode (the default queues instead, see limits.Slots), videos started per
minute, and the balance. Every random choice about a task is drawn here, at submit time.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..models import ModelSpec, body_hash
from .tasks import Task, iso_at
from .wire import ApiError, retry_after_headers

if TYPE_CHECKING:
    from .server import Simulator


class Admission:
    def __init__(self, sim: "Simulator"):
        self.sim = sim
        #: Submits still to refuse in the current simulated 429 burst.
        self.burst_left = 0

    def refuses(self, spec: ModelSpec) -> bool:
        """Whether submits to this model are refused as a retired model's (``--sora2 refuse``)."""
        return spec.retired is not None and self.sim.config.retired_mode == "refuse"

    def submittable(self, model: str) -> ModelSpec:
        sim = self.sim
        if model not in sim.config.models:
            raise ApiError(400, f"unknown model {model!r}: there is no /api/v3/{model}; "
                                f"known models: {', '.join(sim.config.models.ids())}")
        spec = sim.config.models.get(model)
        if self.refuses(spec):
            sim.ledger.faults["retired-refused"] += 1
            raise ApiError(404, f"model {model} not found: it is unavailable since {spec.retired.date} "
                                f"({spec.retired.message}); use {spec.retired.replacement}")
        if model in sim.config.faults.unavailable_models:
            sim.ledger.faults["unavailable"] += 1
            raise ApiError(503, f"model {model} is temporarily unavailable; retry later or use another model")
        return spec

    def check_burst(self) -> None:
        sim = self.sim
        faults = sim.config.faults
        if self.burst_left > 0:
            self.burst_left -= 1
            sim.ledger.faults["429"] += 1
        elif sim.roll("429", faults.rate_429_burst):
            self.burst_left = max(0, faults.burst_len - 1)
        else:
            return
        raise ApiError(429, "too many requests: the account's rate limit was reached; retry later",
                       retry_after_headers(sim.config.retry_after))

    def check_limits(self, key_id: str, price: float) -> None:
        """The account's limits on one more submit: 429-at-cap mode, videos per minute, balance."""
        sim = self.sim
        cfg = sim.config
        cap = cfg.concurrency_cap
        if cfg.at_cap == "429" and cap is not None and sim.active[key_id] >= cap:
            sim.ledger.faults["limit-concurrency"] += 1
            raise ApiError(429, f"too many requests: {cap} tasks are already in progress for this API key "
                                "(concurrency limit); retry when one finishes", retry_after_headers(cfg.retry_after))
        wait = sim.submits.wait_needed(key_id, cfg.rpm, cfg.rpm_window)
        if wait > 0:
            sim.ledger.faults["limit-rpm"] += 1
            raise ApiError(429, f"too many requests: this API key may start {cfg.rpm} videos per minute; "
                                f"retry after {wait:.1f} s", retry_after_headers(wait))
        if price > sim.balance + 1e-9:
            sim.ledger.faults["insufficient-balance"] += 1
            raise ApiError(402, f"insufficient balance: this task costs ${price:.2f} and the account balance is "
                                f"${sim.balance:.2f}; top up your account")

    def new_task(self, request: web.Request, spec: ModelSpec, body: dict[str, Any], price: float) -> Task:
        sim = self.sim
        cfg = sim.config
        duration = body.get("duration", spec.default_duration)
        gen = (cfg.gen_base + cfg.gen_per_second * duration) * (1 + sim.rng.uniform(-cfg.gen_jitter, cfg.gen_jitter))
        task_id = sim.new_hex(32)
        fails = sim.roll("fail", cfg.faults.rate_fail)
        model_used = spec.id
        fallback = cfg.fallback_models.get(spec.id)
        if fallback and sim.roll("fallback", cfg.faults.rate_fallback):
            model_used = fallback
        now = sim.clock.time()
        task = Task(
            id=task_id, key_id=request[sim.key_id_key], model=spec.id, model_used=model_used, body=body,
            body_hash=body_hash(body), price=price, duration=duration,
            resolution=body.get("resolution", spec.default_resolution), created_at=iso_at(now),
            accepted_at=time.monotonic(), gen=gen, fails=fails, created_epoch=now,
            webhook=request.query.get("webhook"), origin=sim.origin(request),
        )
        if spec.retired is not None and cfg.retired_mode == "fail":
            task.fails, task.fail_error = True, (f"model {spec.id} is unavailable: {spec.retired.message}; "
                                                 f"use {spec.retired.replacement}")
        elif spec.retired is not None and cfg.retired_mode == "substitute":
            task.model_used = spec.retired.replacement
        return task
