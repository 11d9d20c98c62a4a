"""What the simulator does: timings, limits and the faults it injects.

One dataclass (SimConfig) drives everything; the CLI builds it from flags, tests build it
directly, and ``POST /_sim/config`` changes it at runtime through ``apply_changes``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from ..models import SEEDANCE, SORA_PRO, SORA_STD, ModelTable
from ..user_config import user_model_table

__all__ = ["ACCOUNT_LEVELS", "FAULT_FLAGS", "Faults", "RETIRED_MODES", "SimConfig", "add_arguments", "apply_changes",
           "config_from_args"]

#: shared/API.md "Account limits": level -> (videos started per minute, tasks generating at once).
ACCOUNT_LEVELS: dict[str, tuple[int, int]] = {
    "bronze": (5, 3),
    "silver": (60, 100),
    "gold": (600, 2000),
    "ultra": (5000, 5000),
}
#: How submits to a model the table marks retired (Sora 2) are answered; see ``--sora2``.
RETIRED_MODES = ("refuse", "fail", "substitute", "serve")
AT_CAP_MODES = ("queue", "429")
#: Predictions and their outputs are deleted after 7 days (shared/API.md "Errors").
RETENTION_SECONDS = 7 * 86400


@dataclass
class Faults:
    """Probabilities (0..1) of each injected fault, all drawn from the simulator's one seeded RNG."""

    #: A submit starts a run of ``burst_len`` consecutive 429 answers to submits.
    rate_429_burst: float = 0.0
    burst_len: int = 3
    #: Any /api/v3 request answers 500, 502 or 503 without doing anything.
    rate_5xx: float = 0.0
    #: Any /api/v3 request waits ``slow_seconds`` before being handled.
    rate_slow: float = 0.0
    slow_seconds: float = 2.0
    #: Any /api/v3 request has its connection closed before it is processed.
    rate_drop_before: float = 0.0
    #: A submit is accepted and charged, then its connection is closed without an answer.
    rate_drop_after: float = 0.0
    #: A submit is accepted and charged, then answered only after ``slow_seconds`` (a slow gateway): the task
    #: is in the listing before the client knows its id.
    rate_slow_after: float = 0.0
    #: An output download promises the full Content-Length, sends part of it and closes.
    rate_truncate: float = 0.0
    #: A task ends ``failed`` with a moderation-style error.
    rate_fail: float = 0.0
    #: A task completes but ``data.model`` names the fallback model (see SimConfig.fallback_models).
    rate_fallback: float = 0.0
    #: Submits to these models answer 503 "... is temporarily unavailable".
    unavailable_models: set[str] = field(default_factory=set)
    #: A webhook delivery is sent twice (the docs leave retries unconfirmed: receivers must handle each id once).
    rate_webhook_duplicate: float = 0.0


#: CLI/config short names -> Faults rate fields.
FAULT_FLAGS: dict[str, str] = {
    "429": "rate_429_burst",
    "5xx": "rate_5xx",
    "slow": "rate_slow",
    "drop-before": "rate_drop_before",
    "drop-after": "rate_drop_after",
    "slow-after": "rate_slow_after",
    "truncate": "rate_truncate",
    "fail": "rate_fail",
    "fallback": "rate_fallback",
    "webhook-duplicate": "rate_webhook_duplicate",
}

DEFAULT_FALLBACKS: dict[str, str] = {SORA_PRO: SORA_STD, SORA_STD: SEEDANCE}


@dataclass
class SimConfig:
    """Everything the simulator can be told; defaults behave like a healthy, slowish service."""

    #: None accepts any non-empty bearer key; a string accepts only that key.
    api_key: str | None = None
    seed: int = 0
    gen_base: float = 2.0
    gen_per_second: float = 0.1
    gen_jitter: float = 0.2
    #: Tasks generating at once per key (the account's "max concurrent tasks"); None: no limit.
    concurrency_cap: int | None = None
    #: Over the cap: "queue" accepts, bills and keeps the task in ``created`` until a slot frees (WaveSpeed,
    #: shared/API.md); "429" refuses the submit (how other providers behave).
    at_cap: str = "queue"
    #: Videos started (accepted submits) per minute per key; over it a submit answers 429. Reads never count.
    rpm: int | None = None
    #: Seconds the ``rpm`` window spans; shorter than 60 scales a rate limit down in time for benchmarks.
    rpm_window: float = 60.0
    #: Dollars on the account; each accepted task is charged, a submit it cannot pay answers 402.
    balance: float = 1_000_000.0
    #: Whether listing items carry the request ``input`` (unconfirmed upstream; the docs example has none).
    listing_input: bool = False
    #: How submits to a retired model are answered: one of RETIRED_MODES.
    retired_mode: str = "refuse"
    #: Seconds a prediction and its output live (simulated clock).
    retention: float = RETENTION_SECONDS
    #: Webhook deliveries: attempts per delivery, and the first wait between them (doubling).
    webhook_attempts: int = 4
    webhook_backoff: float = 0.5
    #: Seconds an output URL stays valid (None: forever).
    url_ttl: float | None = None
    #: What 429 answers advise in Retry-After / retry-after-ms.
    retry_after: float = 1.0
    max_upload_mb: float = 20.0
    #: Seconds a sync-mode submit is held before answering "Sync mode timed out" (data.code 5004).
    sync_timeout: float = 120.0
    enable_listing: bool = True
    #: Whether a task that ends failed stays charged (False: refunded, as WaveSpeed does for failures).
    charge_failed: bool = False
    fallback_models: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FALLBACKS))
    render_cache_dir: str | None = None
    render_cache_items: int = 256
    render_workers: int = 2
    models: ModelTable = field(default_factory=ModelTable)
    faults: Faults = field(default_factory=Faults)


_RUNTIME_FIELDS = {
    f.name for f in fields(SimConfig)
    if f.name not in {"models", "faults", "render_cache_dir", "render_cache_items", "render_workers"}
}


def _check_modes(values: Mapping[str, Any]) -> None:
    for name, allowed in (("at_cap", AT_CAP_MODES), ("retired_mode", RETIRED_MODES)):
        if name in values and values[name] not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {values[name]!r}")


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"a fault rate must be between 0 and 1, got {value}")
    return value


def fault_changes(value: Any) -> dict[str, Any]:
    """A ``faults`` mapping (Faults field names or CLI short names) -> Faults field updates; ValueError if odd."""
    if not isinstance(value, Mapping):
        raise ValueError("'faults' must be an object of fault name -> rate")
    changes: dict[str, Any] = {}
    for name, rate in value.items():
        attr = FAULT_FLAGS.get(name, name)
        if attr in ("unavailable", "unavailable_models"):
            changes["unavailable_models"] = set(rate or ())
        elif attr in FAULT_FLAGS.values():
            changes[attr] = _rate(str(rate))
        elif attr == "burst_len":
            changes[attr] = int(rate)
        elif attr == "slow_seconds":
            changes[attr] = float(rate)
        else:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(FAULT_FLAGS))}")
    return changes


def apply_changes(config: SimConfig, changes: Mapping[str, Any]) -> None:
    """Change a live config from plain data: top-level SimConfig fields plus a ``faults`` mapping
    whose keys are Faults field names or the CLI short names ("5xx", "drop-after", ...).

    Raises ValueError naming the offending key; nothing is changed in that case.
    """
    updates: dict[str, Any] = {}
    fault_updates: dict[str, Any] = {}
    for key, value in changes.items():
        if key == "faults":
            fault_updates.update(fault_changes(value))
        elif key == "unavailable_models":
            fault_updates[key] = set(value or ())
        elif key in _RUNTIME_FIELDS:
            updates[key] = value
        else:
            raise ValueError(f"unknown setting {key!r}; known: faults, {', '.join(sorted(_RUNTIME_FIELDS))}")
    _check_modes(updates)
    for key, value in updates.items():
        setattr(config, key, value)
    for key, value in fault_updates.items():
        setattr(config.faults, key, value)


MODES_HELP = """\
Modes it plays (shared/API.md v2): over the concurrency cap a submit is QUEUED (accepted, billed, kept in
'created' until a slot frees) unless --at-cap 429; the per-minute limit counts videos started (submits), never
reads; listing items carry NO 'input' unless --listing-input; retired models (the Sora 2 rows) are REFUSED
(404 "model not found ... unavailable") unless --sora2 says otherwise; no account level (no limits) unless
--account-level or the limit flags are given. Predictions and outputs live 7 days; webhooks go to loopback
URLs only. Models: the built-in table plus your models file ($BATCHGEN_MODELS or
~/.config/batchgen/models.yaml)."""


#: What each --fault name does, for --help (the Faults fields say the same).
FAULT_HELP: dict[str, str] = {
    "429": "a submit starts a burst of 429 answers to the next submits (--fault 429=0.05)",
    "5xx": "any API request answers 500, 502 or 503 without doing anything",
    "slow": "any API request waits a while (2 s) before it is handled",
    "drop-before": "any API request has its connection closed before it is processed",
    "drop-after": "a submit is accepted and charged, then its connection closes unanswered (a lost answer)",
    "slow-after": "a submit is accepted and charged, then answered only after a while (2 s)",
    "truncate": "an output download promises the full length, sends part of it and closes",
    "fail": "a task ends failed with a moderation-style error (not billed)",
    "fallback": "a task completes, but data.model names another model (a silent fallback)",
    "webhook-duplicate": "a webhook delivery is sent twice",
}


def _fault_help() -> str:
    return "Faults (--fault NAME=RATE, RATE from 0 to 1, drawn from the seeded RNG):\n" + "\n".join(
        f"  {name:<18} {FAULT_HELP[name]}" for name in FAULT_FLAGS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``batchgen simulate`` flags."""
    parser.description = ("A local simulator of the WaveSpeed v3 API (or Replicate's, with --provider replicate): "
                          "nothing is generated or billed for real.")
    parser.epilog = MODES_HELP + "\n\n" + _fault_help()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--provider", choices=("wavespeed", "replicate"), default="wavespeed",
                        help="which API to simulate (default wavespeed; replicate: docs/replicate.md)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0 picks a free one)")
    parser.add_argument("--api-key", default=None,
                        help="accept only this bearer key (default: any non-empty key)")
    parser.add_argument("--seed", type=int, default=0, help="seed for ids, timings and faults (default 0)")
    parser.add_argument("--gen-base", type=float, default=2.0, help="seconds every generation takes (default 2)")
    parser.add_argument("--gen-per-second", type=float, default=0.1,
                        help="extra generation seconds per second of video (default 0.1)")
    parser.add_argument("--gen-jitter", type=float, default=0.2,
                        help="uniform +/- fraction applied to generation time (default 0.2)")
    parser.add_argument("--url-ttl", type=float, default=None, help="seconds an output URL stays valid")
    parser.add_argument("--fault", action="append", default=[], metavar="NAME=RATE",
                        help=f"inject a fault at a rate 0..1 (repeatable); names: {', '.join(FAULT_FLAGS)}")
    parser.add_argument("--unavailable", action="append", default=[], metavar="MODEL",
                        help="answer 503 'unavailable' to submits for this model (repeatable)")
    parser.add_argument("--render-cache", default=None, metavar="DIR",
                        help="keep rendered clips in DIR so restarts do not render them again")
    _add_account_arguments(parser)


def _add_account_arguments(parser: argparse.ArgumentParser) -> None:
    levels = ", ".join(f"{name} {vpm}/min x {cap}" for name, (vpm, cap) in ACCOUNT_LEVELS.items())
    parser.add_argument("--account-level", choices=tuple(ACCOUNT_LEVELS), default=None,
                        help=f"play an account level's limits (videos/min x concurrent tasks): {levels}; "
                             "default: no limits")
    parser.add_argument("--concurrency-cap", "--max-concurrent", dest="concurrency_cap", type=int, default=None,
                        help="tasks generating at once per key (overrides the level's)")
    parser.add_argument("--at-cap", choices=AT_CAP_MODES, default="queue",
                        help="over the cap: 'queue' (WaveSpeed: accept, bill, wait in created; default) or "
                             "'429' (refuse, as other providers do)")
    parser.add_argument("--videos-per-minute", "--rpm", dest="rpm", type=int, default=None,
                        help="videos started (submits) per minute per key; more answer 429 (overrides the level's; "
                             "--rpm is the old name)")
    parser.add_argument("--balance", type=float, default=1_000_000.0, metavar="USD",
                        help="account balance; tasks are charged from it, a submit it cannot pay answers 402 "
                             "(default 1000000)")
    parser.add_argument("--listing-input", action="store_true",
                        help="listing items carry the request 'input' (default: they do not, like the docs example)")
    parser.add_argument("--sora2", choices=RETIRED_MODES, default="refuse",
                        help="how a retired model (Sora 2) answers: refuse (404 'model not found', default: OpenAI "
                             "shut Sora 2 down and resellers report exactly this; also costs nothing), fail (accept, "
                             "then the task fails), substitute (completes, data.model names the replacement), "
                             "serve (works as before the retirement)")


def faults_from_args(args: argparse.Namespace) -> Faults:
    """The Faults the ``--fault NAME=RATE`` and ``--unavailable MODEL`` flags ask for; ValueError names the flag."""
    faults = Faults(unavailable_models=set(args.unavailable or ()))
    for item in args.fault or ():
        name, sep, rate = item.partition("=")
        if not sep or name not in FAULT_FLAGS:
            raise ValueError(
                f"--fault {item!r}: expected NAME=RATE with NAME one of {', '.join(FAULT_FLAGS)}, e.g. --fault 5xx=0.1"
            )
        try:
            setattr(faults, FAULT_FLAGS[name], _rate(rate))
        except ValueError as exc:
            raise ValueError(f"--fault {item!r}: {exc}") from exc
    return faults


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """A SimConfig from parsed ``batchgen simulate`` flags; ValueError says which flag is wrong."""
    faults = faults_from_args(args)
    for flag, value in (("--gen-base", args.gen_base), ("--gen-per-second", args.gen_per_second)):
        if value < 0:
            raise ValueError(f"{flag} must not be negative, got {value}")
    if not 0 <= args.gen_jitter < 1:
        raise ValueError(f"--gen-jitter must be in [0, 1), got {args.gen_jitter}")
    vpm, cap = ACCOUNT_LEVELS.get(args.account_level, (None, None))
    return SimConfig(
        api_key=args.api_key, seed=args.seed, gen_base=args.gen_base, gen_per_second=args.gen_per_second,
        gen_jitter=args.gen_jitter, url_ttl=args.url_ttl, render_cache_dir=args.render_cache, faults=faults,
        concurrency_cap=args.concurrency_cap if args.concurrency_cap is not None else cap,
        rpm=args.rpm if args.rpm is not None else vpm, at_cap=args.at_cap, balance=args.balance,
        listing_input=args.listing_input, retired_mode=args.sora2,
        # A model from the user's models file can be rehearsed offline, like with 'run --provider local'.
        models=user_model_table(),
    )
