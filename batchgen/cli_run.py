"""``batchgen run``: wire manifest, state, provider, runner and progress together."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from contextlib import AsyncExitStack
from pathlib import Path

from .errors import UsageError
from .deadlines import expired_summary
from .fsguard import create_fresh
from .lifecycle import JobStatus
from .manifest import load_manifest
from .planner import Plan, cost_to_pay
from .progress import Progress, setup_logging
from .run_env import install_interrupts
from .run_providers import Clients, local_clients, real_clients
from .runner import RunOptions, Runner, RunResult
from .state import StateLog
from .user_config import user_model_table
from .verifier import Verifier


def run_command(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.manifest, user_model_table())
    out_dir = (args.out or Path("outputs") / args.manifest.stem).resolve()
    state_path = args.state or out_dir / "state.jsonl"
    concurrency = args.concurrency or int(manifest.settings.get("concurrency", 4))
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    max_cost = args.max_cost if args.max_cost is not None else manifest.max_cost
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".batchgen-write-test"
        os.close(create_fresh(probe))  # a link planted at the probe's name is refused, not truncated
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"the output folder {out_dir} is not writable ({exc.strerror}); choose another with --out") from exc
    setup_logging(out_dir / "batchgen.log", -1 if args.quiet else args.verbose)
    options = RunOptions(out_dir=out_dir, concurrency=concurrency, download_concurrency=args.download_concurrency,
                         retry_failed=args.retry_failed, resubmit_unknown=args.resubmit_unknown,
                         max_cost=max_cost, seed=args.seed, fallback_after=manifest.fallback_after)
    try:
        return asyncio.run(_run(args, manifest, state_path, options))
    except asyncio.CancelledError:
        print("batchgen: stopped at once (Ctrl-C twice); the state is consistent, "
              "run the same command to resume", file=sys.stderr)
        return 130


async def _run(args, manifest, state_path: Path, options: RunOptions) -> int:
    async with AsyncExitStack() as stack:
        clients = await _clients(args, stack, options, manifest)
        provider, options.poll = clients.provider, clients.poll
        stack.push_async_callback(provider.close)
        # The keys too: a server that echoes one in an error must not get it into the state (or the report).
        state_log = StateLog(state_path, secrets=clients.secrets)
        state_log.open()
        stack.callback(state_log.close)
        progress = Progress(len(manifest.jobs), quiet=args.quiet)
        verifier = Verifier()
        stack.callback(verifier.shutdown)
        runner = Runner(manifest.jobs, provider, state_log, manifest.models, options, verifier=verifier,
                        observer=progress)
        plan, events = runner.prepare()
        to_pay = cost_to_pay(plan, runner.price)
        print(describe_plan(plan, to_pay, manifest, options), file=sys.stderr)
        if not _confirmed(args, to_pay):
            return UsageError.exit_code
        runner.commit(events)  # nothing is written before the user said yes
        main_task = asyncio.current_task()
        install_interrupts(asyncio.get_running_loop(), lambda: runner.stop(
            "interrupted (Ctrl-C): no new submits; jobs in flight finish. Ctrl-C again quits now", halt=False),
            main_task)
        try:
            result = await runner.run(plan)
        finally:
            progress.close()
        print(describe_result(result, runner, options), file=sys.stderr)
        return result.exit_code


async def _clients(args, stack: AsyncExitStack, options: RunOptions, manifest) -> Clients:
    """A client per provider the manifest uses (run_providers.py); the local simulators know its models too."""
    if args.provider == "local":
        clients = await local_clients(manifest.jobs, manifest.models, args.seed or 0, args.poll_min, stack)
        print("\n".join(clients.notes), file=sys.stderr)
        return clients
    return await real_clients(manifest.jobs, args.provider, args.base_url, args.poll_min, options.concurrency)


def _confirmed(args, to_pay: float) -> bool:
    if args.yes or to_pay <= args.confirm_above:
        return True
    if not sys.stdin.isatty():
        print(f"batchgen: this run would spend up to ${to_pay:.2f}, above --confirm-above ${args.confirm_above:.2f}, "
              "and there is no terminal to ask; add --yes to proceed (or raise --confirm-above)", file=sys.stderr)
        return False
    answer = input(f"Spend up to ${to_pay:.2f}? [y/N] ").strip().lower()
    return answer in ("y", "yes")


def describe_plan(plan: Plan, to_pay: float, manifest, options: RunOptions) -> str:
    total = len(manifest.jobs)
    lines = [f"{manifest.path}: {total} jobs: {len(plan.done)} done, {len(plan.submit)} to submit, "
             f"{len(plan.poll)} generating, {len(plan.download)} to download, {len(plan.unknown)} unknown, "
             f"{len(plan.failed)} failed (not retried)"]
    if plan.new < total or plan.removed:  # a resume: say what changed since the state was written
        lines.append(f"  since the last run: {plan.new} new, {plan.changed} changed, {plan.removed} no longer in the "
                     f"manifest, {plan.missing_files} downloaded file(s) missing (fetched again)")
    lines.append(f"  about to pay: ${to_pay:.2f} for {len(plan.submit)} submit(s)"
                 + (f" (cap --max-cost ${options.max_cost:.2f})" if options.max_cost is not None else ""))
    groups: dict[tuple[str, str], list] = {}
    for job in plan.submit:
        groups.setdefault((job.model, job.resolution), []).append(job)
    for (model, resolution), jobs in sorted(groups.items()):
        spec = manifest.models.get(model)
        dollars = sum(spec.price(resolution, j.duration) for j in jobs)
        lines.append(f"    {model} {resolution}: {len(jobs)} job(s), {sum(j.duration for j in jobs)} s of video, "
                     f"${dollars:.2f}" + ("" if spec.confirmed else " (price unconfirmed)"))
    if manifest.fallback_model:
        lines.append(f"  if {manifest.fallback_model} stands in (fallback_model), it is priced by its own row: "
                     f"see 'batchgen estimate {manifest.path}'")
    if plan.failed:
        lines.append("  failed jobs are kept as they are; add --retry-failed to pay for them again")
    return "\n".join(lines)


def describe_result(result: RunResult, runner: Runner, options: RunOptions) -> str:
    c = result.counts
    lines = [f"finished in {result.wall:.1f}s: {c[JobStatus.DOWNLOADED]} downloaded, {c[JobStatus.FAILED]} failed, "
             f"{c[JobStatus.UNKNOWN]} unknown, {result.unfinished} not finished; "
             f"${result.committed:.2f} committed in total; videos in {options.out_dir}"]
    jobs = {j.key: j for j in runner.jobs}
    for key, job in jobs.items():
        rec = runner.state.jobs[key]
        if rec.status is JobStatus.FAILED:
            lines.append(f"  failed  {job.id} ({job.where}): {rec.error}")
        elif rec.status is JobStatus.UNKNOWN:
            lines.append(f"  unknown {job.id} ({job.where}): its submit may have been charged; "
                         "check the provider's dashboard, then --resubmit-unknown to submit it again")
    if lost := expired_summary(runner.jobs, runner.state.jobs):
        lines.append(lost)
    if result.fallbacks:
        lines.append(f"  {len(result.fallbacks)} job(s) were generated by another model than asked: "
                     + ", ".join(result.fallbacks[:10]))
    if result.halted:
        lines.append(f"  halted: {result.halted}")
    if result.unfinished and not result.halted:
        lines.append("  run the same command again to finish the rest")
    return "\n".join(lines)
