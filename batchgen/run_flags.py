"""``batchgen run``'s throughput flags as run options: the account's limits, the read cadence and
webhooks. Plain functions of the parsed arguments; cli_run.py wires them in."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .deliveries import check_webhook_url
from .errors import UsageError
from .models import ModelTable
from .pacing import ACCOUNT_LEVELS
from .poll_policy import PollPolicy

if TYPE_CHECKING:
    from .runner import Runner

#: The docs page "Get Result" asks for at least 5 s between checks of a video task (API.md v2).
VIDEO_READ_FLOOR = 5.0


def account_limits(args: argparse.Namespace, manifest_concurrency: Any) -> tuple[int, float | None]:
    """Jobs generating at once and submits per minute: an explicit flag, else the account level's,
    else the manifest's ``concurrency:`` (default 4) and no per-minute pacing."""
    level = ACCOUNT_LEVELS[args.account_level] if args.account_level else None
    concurrency = args.concurrency if args.concurrency is not None else (
        level.concurrency if level else int(manifest_concurrency or 4))
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    per_minute = args.videos_per_minute if args.videos_per_minute is not None else (
        level.videos_per_minute if level else None)
    if per_minute is not None and per_minute <= 0:
        raise UsageError("--videos-per-minute must be more than 0")
    if args.queue_margin is not None and args.queue_margin < 0:
        raise UsageError("--queue-margin must be 0 or more")
    return concurrency, per_minute


def poll_policy(args: argparse.Namespace, models: ModelTable, *, local: bool = False, **extra: Any) -> PollPolicy:
    """Reads at each model's documented cadence (its row's ``min_read_interval``, 5 s for video
    models); ``--poll-min`` lowers every floor too (short test jobs). The local simulator's jobs take
    seconds and nobody's rules apply: it is read every quarter second."""
    if args.poll_min is not None:
        if args.poll_min <= 0:
            raise UsageError("--poll-min must be more than 0 seconds")
        return PollPolicy(**{"min_interval": args.poll_min, "read_floor": args.poll_min, **extra})
    if local:
        return PollPolicy(**{"min_interval": 0.25, **extra})
    floors = {spec.id: spec.min_read_interval for spec in models}
    return PollPolicy(**{"min_interval": 1.0, "read_floor": VIDEO_READ_FLOOR, "read_floors": floors, **extra})


def webhook_options(args: argparse.Namespace) -> dict[str, Any]:
    """``webhook_url`` and ``listen`` for RunOptions; a UsageError names a bad flag."""
    if not args.webhook_url:
        return {}
    host, sep, port = args.listen.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", args.listen
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"--listen {args.listen!r}: expected HOST:PORT, e.g. 127.0.0.1:8787")
    return {"webhook_url": check_webhook_url(args.webhook_url), "listen": (host.strip("[]") or "127.0.0.1", int(port))}


def describe_limits(runner: "Runner") -> str:
    """The spend prompt's line on how much is in flight at once (what Ctrl-C leaves to finish)."""
    opt, margin = runner.opt, runner.priming.margin
    pace = f", {opt.videos_per_minute:g} submits/min" if opt.videos_per_minute else ""
    if margin is None:
        return f"  at once: up to {opt.concurrency} jobs generating{pace}"
    return (f"  at once: up to {opt.concurrency} generating + {margin.value} (at most {margin.cap}) queued at the "
            f"provider{pace}; every task is billed at submit, and after an interrupt the submitted ones still run "
            "and are downloaded")
