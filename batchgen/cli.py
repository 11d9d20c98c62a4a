"""The command line: argument parsing and rendering only. Catches BatchgenError and prints it."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from . import __version__
from .errors import BatchgenError, UsageError
from .export import add_export_arguments, export_command
from .manifest import load_manifest
from .plan_table import add_plan_parser, render_json, render_table, warning_lines
from .review import add_review_arguments, review_command
from .user_config import user_model_table

EXIT_OK, EXIT_USAGE = 0, 2  # 1 (some jobs failed) and 3 (halted) come from RunResult.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchgen",
        description="Run large batches of paid image-to-video generations from a manifest, resumably.",
    )
    parser.add_argument("--version", action="version", version=f"batchgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run (or resume) every job of a manifest")
    run.add_argument("manifest", type=Path)
    run.add_argument("--out", type=Path, help="output folder (default outputs/<manifest stem>/)")
    run.add_argument("--state", type=Path, help="state file (default <out>/state.jsonl)")
    run.add_argument("--concurrency", type=int, default=None,
                     help="jobs generating at once; your account's cap (default 4)")
    run.add_argument("--download-concurrency", type=int, default=4, help="downloads at once (default 4)")
    run.add_argument("--base-url", default=None, help="API base URL (default $WAVESPEED_BASE_URL or WaveSpeed's)")
    run.add_argument("--provider", choices=("wavespeed", "local"), default="wavespeed",
                     help="'local' starts the simulator in-process: no key, no network, no cost")
    run.add_argument("--retry-failed", action="store_true", help="submit failed jobs again (they are paid again)")
    run.add_argument("--resubmit-unknown", action="store_true",
                     help="submit again jobs whose submit answer was lost (may pay twice)")
    run.add_argument("--max-cost", type=float, default=None, metavar="USD",
                     help="never commit more than this many dollars in total (also 'max_cost:' in the manifest)")
    run.add_argument("--confirm-above", type=float, default=5.0, metavar="USD",
                     help="ask before spending more than this (default 5)")
    run.add_argument("--yes", "-y", action="store_true", help="do not ask before spending (for scripts)")
    run.add_argument("--poll-min", type=float, default=None, metavar="SECONDS",
                     help="shortest wait between two reads of one job's result (default: the model's documented "
                          "cadence, 5 s for video models; lower it only for short test jobs)")
    run.add_argument("--account-level", choices=("bronze", "silver", "gold", "ultra"), default=None,
                     help="your WaveSpeed account level: sets --concurrency and --videos-per-minute from its limits")
    run.add_argument("--videos-per-minute", type=float, default=None, metavar="N",
                     help="submits per minute your account allows (paces submits; default: the level's, else none)")
    run.add_argument("--queue-margin", type=int, default=None, metavar="N",
                     help="tasks kept waiting in the provider's queue beyond --concurrency, billed at submit "
                          "(default: sized from the read lag, at most a quarter of --concurrency or 3)")
    run.add_argument("--webhook-url", default=None, metavar="URL",
                     help="public https URL that reaches --listen: results arrive by webhook, reads are a safety net")
    run.add_argument("--listen", default="127.0.0.1:8787", metavar="HOST:PORT",
                     help="where the webhook listener binds (default 127.0.0.1:8787)")
    run.add_argument("--seed", type=int, default=None, help="seed for jitter (and the local simulator)")
    run.add_argument("-q", "--quiet", action="store_true", help="only errors and the final summary")
    run.add_argument("-v", "--verbose", action="count", default=0, help="more detail (-vv: debug)")

    validate = sub.add_parser("validate", help="check a manifest without sending anything")
    validate.add_argument("manifest", type=Path)

    add_plan_parser(sub)
    status = sub.add_parser("status", help="what a state file says, offline")
    status.add_argument("state", type=Path)
    status.add_argument("--json", action="store_true", help="machine-readable output")

    estimate = sub.add_parser("estimate", help="what a manifest will cost, nothing sent")
    estimate.add_argument("manifest", type=Path)
    estimate.add_argument("--state", type=Path, help="split into already paid, in flight and still to pay")
    estimate.add_argument("--json", action="store_true", help="machine-readable output")

    report = sub.add_parser("report", help="a self-contained HTML report of a batch, offline")
    report.add_argument("state", type=Path)
    report.add_argument("--html", type=Path, help="where to write it (default: report.html beside the state)")

    add_review_arguments(sub)
    add_export_arguments(sub)
    sub.add_parser("models", help="the model table: paths, durations, prices, retired models").add_argument(
        "--json", action="store_true", help="machine-readable output")

    simulate = sub.add_parser("simulate", help="serve the local WaveSpeed simulator")
    from .simulator import add_arguments
    add_arguments(simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            from .cli_run import run_command
            return run_command(args)
        if args.command == "validate":
            return validate_command(args)
        if args.command == "plan":
            return plan_command(args)
        if args.command == "status":
            from .status import status_command
            return status_command(args)
        if args.command == "estimate":
            from .estimate import estimate_command
            return estimate_command(args)
        if args.command == "report":
            from .report import report_command
            return report_command(args)
        if args.command == "models":
            from .model_list import models_command
            return models_command(args)
        if args.command == "simulate":
            return simulate_command(args)
        if args.command in ("review", "export"):
            return {"review": review_command, "export": export_command}[args.command](args)
    except BatchgenError as exc:
        print(f"batchgen: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("batchgen: interrupted; the state is consistent, run the same command to resume", file=sys.stderr)
        return 130
    raise UsageError(f"unknown command {args.command}")


def validate_command(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.manifest, user_model_table())
    jobs = manifest.jobs
    seconds = sum(j.duration for j in jobs)
    cost = sum(manifest.models.get(j.model).price(j.resolution, j.duration) for j in jobs)
    print(f"{args.manifest}: OK, {len(jobs)} job{'s' if len(jobs) != 1 else ''}, "
          f"{seconds} s of video, ${cost:.2f} at list price")
    for line in warning_lines(manifest.warnings):
        print(line, file=sys.stderr)
    return EXIT_OK


def plan_command(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.manifest, user_model_table())
    print(render_json(manifest) if args.json else render_table(manifest))
    return EXIT_OK


def simulate_command(args: argparse.Namespace) -> int:
    if args.provider == "replicate":
        from .simulator.replicate import config_from_args, serve_forever
    else:
        from .simulator import config_from_args, serve_forever
    try:
        config = config_from_args(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        asyncio.run(serve_forever(config, args.host, args.port))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}; pick another --port") from None
    return EXIT_OK
