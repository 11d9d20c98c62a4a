"""The command line: one parser per subcommand, dispatch, and how errors and output reach the user.

Commands compute with estimate.py, status.py, report.py or the run wiring (cli_run.py); the text
they show is drawn by cli_render.py, and ``--json`` prints their data as is. A new subcommand is
one ``_add_*`` function that registers its parser and sets ``handler``, plus a line in SUBCOMMANDS.

What the user sees on the way out: a BatchgenError as one line (and its exit code); a reader that
went away (``status --json | head -1``) as a quiet exit 141, like a Unix tool killed by SIGPIPE;
any other exception as one line naming it (exit 1), with the traceback only under ``--debug``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from . import __version__
from .cli_common import EXIT_BROKEN_PIPE, EXIT_OK, EXIT_USAGE
from .cli_render import render_estimate, render_status, render_validate
from .cli_types import at_least_one, dollars, http_url, positive_dollars, positive_seconds, state_file
from .errors import BatchgenError, UsageError
from .estimate import estimate_files
from .export import add_export_arguments, export_command
from .manifest import load_manifest
from .pacing import ACCOUNT_LEVELS
from .plan_table import add_plan_parser, render_json, render_table, warning_lines
from .providers import provider_names
from .review import add_review_arguments, review_command
from .status import read_state, summarize
from .user_config import user_model_table

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line naming the option, pointing at --help; exit 2 as argparse does."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="batchgen",
                     description="Run large batches of paid image-to-video generations from a manifest, resumably.")
    parser.add_argument("--version", action="version", version=f"batchgen {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, title="commands")
    for add in SUBCOMMANDS:
        add(sub)
    for command in {id(p): p for p in sub.choices.values()}.values():
        # Accepted after the subcommand too; SUPPRESS keeps a top-level --debug from being reset.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the traceback of an internal error")
    return parser


# -- subcommands ---------------------------------------------------------------------------------
def _add_run(sub) -> None:
    run = sub.add_parser("run", help="run (or resume) every job of a manifest", description=(
        "Submit every job of a manifest, poll it, download and verify its video. Every paid step is recorded "
        "first, so after a crash, a Ctrl-C or a kill the same command resumes without paying twice."))
    run.add_argument("manifest", type=Path, help="the manifest (.yaml, .yml or .csv)")
    run.add_argument("--out", type=Path, help="output folder (default outputs/<manifest stem>/)")
    run.add_argument("--state", type=Path, help="state file (default <out>/state.jsonl)")
    run.add_argument("--provider", choices=(*provider_names(), "local"), default=None,
                     help="'local' starts a simulator per provider the manifest uses, in-process: no key, no "
                          "network, no cost. Otherwise the models' ids name their providers (replicate:owner/name; "
                          "no prefix: wavespeed), each keyed by its own variable")
    run.add_argument("--base-url", type=http_url, default=None,
                     help="API base URL of a run on one provider (default $<NAME>_BASE_URL, e.g. "
                          "$WAVESPEED_BASE_URL, or the provider's own)")
    run.add_argument("--allow-other-api", action="store_true",
                     help="resume a state made against another API (a simulator rehearsal vs the real one); "
                          "refused without it")
    run.add_argument("--seed", type=int, default=None, help="seed for jitter (and the local simulator)")
    run.add_argument("-q", "--quiet", action="store_true", help="only errors and the final summary")
    run.add_argument("-v", "--verbose", action="count", default=0, help="more detail (-vv: debug)")
    _add_run_pace(run)
    _add_run_spending(run)
    run.set_defaults(handler=_run)


def _add_run_pace(run: argparse.ArgumentParser) -> None:
    run.add_argument("--concurrency", type=at_least_one, default=None,
                     help="jobs generating at once; your account's cap (default 4)")
    run.add_argument("--download-concurrency", type=at_least_one, default=4, help="downloads at once (default 4)")
    run.add_argument("--poll-min", type=positive_seconds, default=None, metavar="SECONDS",
                     help="shortest wait between two reads of one job's result (default: the model's documented "
                          "cadence, 5 s for video models; lower it only for short test jobs)")
    run.add_argument("--account-level", choices=tuple(ACCOUNT_LEVELS), default=None,
                     help="your WaveSpeed account level: sets --concurrency and --videos-per-minute from its limits")
    run.add_argument("--videos-per-minute", type=at_least_one, default=None, metavar="N",
                     help="submits per minute your account allows (paces submits; default: the level's, else none)")
    run.add_argument("--queue-margin", type=int, default=None, metavar="N",
                     help="tasks kept waiting in the provider's queue beyond --concurrency, billed at submit "
                          "(default: --concurrency or 3 at first, then sized from the read lag and how bunched "
                          "jobs end)")
    run.add_argument("--webhook-url", default=None, metavar="URL",
                     help="public https URL that reaches --listen: results arrive by webhook, reads are a safety net")
    run.add_argument("--listen", default="127.0.0.1:8787", metavar="HOST:PORT",
                     help="where the webhook listener binds (default 127.0.0.1:8787)")


def _add_run_spending(run: argparse.ArgumentParser) -> None:
    run.add_argument("--retry-failed", action="store_true", help="submit failed jobs again (they are paid again)")
    run.add_argument("--resubmit-unknown", action="store_true",
                     help="submit again jobs whose submit answer was lost (may pay twice)")
    run.add_argument("--max-cost", type=positive_dollars, default=None, metavar="USD",
                     help="never commit more than this many dollars in total (also 'max_cost:' in the manifest); "
                          "a run that would pass it is refused before paying")
    run.add_argument("--partial", action="store_true",
                     help="under --max-cost, submit as many jobs as fit (in manifest order) instead of refusing")
    run.add_argument("--redo", action="store_true",
                     help="add one new take for each row marked redo in 'batchgen review' (its note fills {note})")
    run.add_argument("--confirm-above", type=dollars, default=5.0, metavar="USD",
                     help="ask before spending more than this (default 5)")
    run.add_argument("--yes", "-y", action="store_true", help="do not ask before spending (for scripts)")


def _add_validate(sub) -> None:
    validate = sub.add_parser("validate", help="check a manifest without sending anything", description=(
        "Read a manifest, expand every row into jobs and check each against the model table (durations, "
        "resolutions, images, templates, output names). Prints the job count, seconds of video and the price, "
        "or every problem found with its file and line. Nothing is sent and nothing is paid."))
    validate.add_argument("manifest", type=Path, help="the manifest (.yaml, .yml or .csv)")
    validate.set_defaults(handler=_validate)


def _add_status(sub) -> None:
    status = sub.add_parser("status", help="what a state file says, offline", description=(
        "Summarize a state file without the network or the lock (it works while a run is going): counts, "
        "spend, fallbacks, and each job that needs attention with what to do. --json lists every job."))
    status.add_argument("state", type=state_file, help="the state file (default location <out>/state.jsonl), or its folder")
    status.add_argument("--json", action="store_true", help="machine-readable output (fields in batchgen/status.py)")
    status.set_defaults(handler=_status)


def _add_estimate(sub) -> None:
    estimate = sub.add_parser("estimate", help="what a manifest will cost, nothing sent", description=(
        "Price every job of a manifest from the model table, per model and resolution; with --state, split "
        "into already paid, in flight, failed and still to pay, and check the budget and the fallback model."))
    estimate.add_argument("manifest", type=Path, help="the manifest (.yaml, .yml or .csv)")
    estimate.add_argument("--state", type=state_file, help="split into already paid, in flight and still to pay")
    estimate.add_argument("--json", action="store_true",
                          help="machine-readable output (fields in batchgen/estimate.py)")
    estimate.set_defaults(handler=_estimate)


def _add_report(sub) -> None:
    report = sub.add_parser("report", help="a self-contained HTML report of a batch, offline", description=(
        "Write one HTML file with a card per job (poster, prompt, model, cost, status), readable offline."))
    report.add_argument("state", type=state_file, help="the state file of the batch, or its folder")
    report.add_argument("--html", type=Path, help="where to write it (default: report.html beside the state)")
    report.set_defaults(handler=_report)


def _add_plan(sub) -> None:
    add_plan_parser(sub)
    sub.choices["plan"].set_defaults(handler=_plan)


def _add_review(sub) -> None:
    add_review_arguments(sub)
    sub.choices["review"].set_defaults(handler=review_command)


def _add_export(sub) -> None:
    add_export_arguments(sub)
    sub.choices["export"].set_defaults(handler=export_command)


def _add_models(sub) -> None:
    models = sub.add_parser("models", help="the model table: paths, durations, prices, retired models", description=(
        "List every model batchgen knows (built in and from your models file): endpoint path, durations, "
        "resolutions, price, read floor, whether the figures are confirmed and whether the model is retired."))
    models.add_argument("--json", action="store_true", help="machine-readable output")
    models.set_defaults(handler=_models)


def _add_simulate(sub) -> None:
    from .simulator import add_arguments
    simulate = sub.add_parser("simulate", help="serve the local WaveSpeed simulator", description=(
        "Serve a local WaveSpeed-compatible API on loopback with real video files, scriptable faults and a "
        "ledger of what it would have charged; point 'run --base-url' at it to rehearse for free."))
    add_arguments(simulate)
    simulate.set_defaults(handler=_simulate)


SUBCOMMANDS = (_add_run, _add_validate, _add_plan, _add_status, _add_estimate, _add_report, _add_review, _add_export,
               _add_models, _add_simulate)


# -- handlers ------------------------------------------------------------------------------------
def _run(args: argparse.Namespace) -> int:
    from .cli_run import run_command  # the runner and its network stack load only for 'run'
    return run_command(args)


def _validate(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.manifest, user_model_table())
    print(render_validate(manifest))
    for line in warning_lines(manifest.warnings):
        print(line, file=sys.stderr)
    return EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.manifest, user_model_table())
    print(render_json(manifest) if args.json else render_table(manifest))
    return EXIT_OK


def _models(args: argparse.Namespace) -> int:
    from .model_list import models_command
    return models_command(args)


def _status(args: argparse.Namespace) -> int:
    summary = summarize(read_state(args.state), str(args.state))
    print(_json(summary) if args.json else render_status(summary))
    return EXIT_OK


def _estimate(args: argparse.Namespace) -> int:
    est = estimate_files(args.manifest, args.state)
    print(_json(est.to_json()) if args.json else render_estimate(est))
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from .report import report_command
    return report_command(args)


def _simulate(args: argparse.Namespace) -> int:
    if args.provider == "replicate":
        from .simulator.replicate import config_from_args, serve_forever
    else:
        from .simulator import config_from_args, serve_forever
    try:
        config = config_from_args(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    try:
        asyncio.run(serve_forever(config, args.host, args.port))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}; pick another --port") from exc
    return EXIT_OK


def _json(data: Any) -> str:
    return json.dumps(data, indent=2)


# -- the way out ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.handler(args)
        sys.stdout.flush()  # a reader that left is noticed here, not in the interpreter's exit
        return code
    except BatchgenError as exc:
        print(f"batchgen: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("batchgen: interrupted; the state is consistent, run the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _detach_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # anything else is a bug: one line, and the traceback only on request
        return _internal_error(exc, args.debug)


def _detach_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush does not fail again on the closed pipe."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a stream without a descriptor
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _internal_error(exc: Exception, debug: bool) -> int:
    if debug:
        traceback.print_exception(exc)
        print(f"batchgen: internal error: {type(exc).__name__}: {exc}; please report it with the traceback above",
              file=sys.stderr)
    else:
        print(f"batchgen: internal error: {type(exc).__name__}: {exc}; run again with --debug for the traceback, "
              "and please report it", file=sys.stderr)
    return 1
