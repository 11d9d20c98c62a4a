"""What the Replicate simulator does: timings, limits, output expiry and the faults it injects.

The faults reuse the WaveSpeed simulator's ``Faults`` record and names (5xx, drop-after, fail, 429),
so a torture test drives both simulators with the same words; ``unavailable_models`` switches a
model off (and on again) at run time through ``POST /_sim/config``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ...models import ModelTable
from ...providers.replicate import MODELS
from ..config import FAULT_FLAGS, Faults, fault_changes, faults_from_args

__all__ = ["ReplicateConfig", "add_arguments", "apply_changes", "config_from_args"]


@dataclass
class ReplicateConfig:
    """Everything the Replicate simulator can be told; defaults behave like a healthy service."""

    #: None accepts any non-empty token; a string accepts only that token.
    api_key: str | None = None
    seed: int = 0
    gen_base: float = 2.0
    gen_per_second: float = 0.1
    gen_jitter: float = 0.2
    #: Predictions processing at once per token; more wait in ``starting`` (Replicate queues, it does not refuse).
    concurrency_cap: int | None = None
    #: Creates per ``rate_window`` seconds per token; more answer 429 with Retry-After (docs: 600 a minute).
    create_rate: int | None = None
    rate_window: float = 60.0
    #: Seconds after completion until a prediction's input and output are removed (docs: about an hour).
    output_ttl: float = 3600.0
    #: The wall clock output expiry is measured by; tests pass a fake one instead of waiting an hour.
    clock: Callable[[], float] = time.time
    #: Longest ``Prefer: wait`` hold in seconds (docs: 1 to 60).
    max_wait: float = 60.0
    #: Listing page size (docs: 100).
    page_size: int = 100
    charge_failed: bool = False
    render_cache_dir: str | None = None
    render_cache_items: int = 256
    render_workers: int = 2
    models: ModelTable = field(default_factory=lambda: ModelTable(MODELS))
    faults: Faults = field(default_factory=Faults)


_RUNTIME = {"concurrency_cap", "create_rate", "rate_window", "output_ttl", "max_wait", "page_size", "charge_failed"}


def apply_changes(config: ReplicateConfig, changes: Mapping[str, Any]) -> None:
    """Change a live config from plain data; ValueError names the offending key, nothing changes then."""
    updates: dict[str, Any] = {}
    faults: dict[str, Any] = {}
    for key, value in changes.items():
        if key == "unavailable_models":
            faults[key] = {str(m) for m in value or ()}
        elif key == "faults":
            faults.update(fault_changes(value))
        elif key in _RUNTIME:
            updates[key] = value
        else:
            raise ValueError(f"unknown setting {key!r}; known: faults, unavailable_models, {', '.join(sorted(_RUNTIME))}")
    for key, value in updates.items():
        setattr(config, key, value)
    for key, value in faults.items():
        setattr(config.faults, key, value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The Replicate simulator's flags (``python -m batchgen.simulator.replicate``)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="port to listen on (default 8001; 0 picks a free one)")
    parser.add_argument("--api-key", default=None, help="accept only this bearer token (default: any non-empty)")
    parser.add_argument("--seed", type=int, default=0, help="seed for ids, timings and faults (default 0)")
    parser.add_argument("--gen-base", type=float, default=2.0, help="seconds every generation takes (default 2)")
    parser.add_argument("--concurrency-cap", type=int, default=None,
                        help="predictions processing at once per token; more wait in 'starting'")
    parser.add_argument("--create-rate", type=int, default=None, help="creates per minute per token; more answer 429")
    parser.add_argument("--output-ttl", type=float, default=3600.0,
                        help="seconds until a finished prediction's output is removed (default 3600)")
    parser.add_argument("--fault", action="append", default=[], metavar="NAME=RATE",
                        help=f"inject a fault at a rate 0..1 (repeatable); names: {', '.join(FAULT_FLAGS)}")
    parser.add_argument("--unavailable", action="append", default=[], metavar="MODEL",
                        help="answer 503 'unavailable' to creates for this model (repeatable)")
    parser.add_argument("--render-cache", default=None, metavar="DIR", help="keep rendered clips in DIR")


def config_from_args(args: argparse.Namespace) -> ReplicateConfig:
    """A ReplicateConfig from parsed flags; ValueError says which flag is wrong."""
    faults = faults_from_args(args)
    # Under `batchgen simulate --provider replicate` the WaveSpeed flags carry over: --url-ttl (how long an
    # output URL works) is the output TTL, --rpm the create rate.
    output_ttl = getattr(args, "output_ttl", None) or getattr(args, "url_ttl", None) or 3600.0
    create_rate = getattr(args, "create_rate", None) or getattr(args, "rpm", None)
    if args.gen_base < 0 or output_ttl < 0:
        raise ValueError("--gen-base and --output-ttl must not be negative")
    return ReplicateConfig(api_key=args.api_key, seed=args.seed, gen_base=args.gen_base,
                           concurrency_cap=args.concurrency_cap, create_rate=create_rate,
                           output_ttl=output_ttl, render_cache_dir=args.render_cache, faults=faults)
