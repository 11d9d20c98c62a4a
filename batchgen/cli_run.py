"""``batchgen run``: wire manifest, state, provider, runner and progress together."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from contextlib import AsyncExitStack
from pathlib import Path

from . import locks
from .api_origin import check_same_api
from .budget import check_cap
from .download import Targets
from .errors import ManifestError, OutputPathError, Problem, UsageError
from .deadlines import expired_summary
from .fsguard import create_fresh
from .lifecycle import JobStatus
from .manifest import load_manifest
from .picks import PICKS_FILE
from .planner import Plan, cost_to_pay
from .progress import Progress, setup_logging
from .redo import Redo, link_redo_takes, plan_redo
from .run_env import ask, install_interrupts, quit_reason
from .run_flags import account_limits, describe_limits, poll_policy, webhook_options
from .run_providers import Clients, local_clients, real_clients
from .runner import RunOptions, Runner, RunResult
from .unmatched import listed as unmatched_videos
from .state import StateLog
from .user_config import user_model_table
from .verifier import Verifier


def run_command(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.manifest, user_model_table())
    out_dir = (args.out or Path("outputs") / args.manifest.stem).resolve()
    state_path = args.state or out_dir / "state.jsonl"
    concurrency, per_minute = account_limits(args, manifest.settings.get("concurrency"))
    max_cost = args.max_cost if args.max_cost is not None else manifest.max_cost
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".batchgen-write-test"
        os.close(create_fresh(probe))  # a link planted at the probe's name is refused, not truncated
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"the output folder {out_dir} is not writable ({exc.strerror}); choose another with --out") from exc
    _check_outputs(manifest, out_dir)
    setup_logging(out_dir / "batchgen.log", -1 if args.quiet else args.verbose)
    options = RunOptions(out_dir=out_dir, concurrency=concurrency, download_concurrency=args.download_concurrency,
                         retry_failed=args.retry_failed, resubmit_unknown=args.resubmit_unknown,
                         max_cost=max_cost, seed=args.seed, fallback_after=manifest.fallback_after,
                         videos_per_minute=per_minute, queue_margin=args.queue_margin, **webhook_options(args))
    # Two runs writing one folder, each with its own --state, would each pay for every job.
    held = locks.take(out_dir / ".batchgen.lock", lambda holder: (
        f"the output folder {out_dir} is in use by another batchgen run ({holder}); wait for it to finish or "
        "stop it, or choose another --out. Two runs on one folder could pay twice for the same job."))
    try:
        return asyncio.run(_run(args, manifest, state_path, options))
    except asyncio.CancelledError as exc:
        print(f"batchgen: stopped at once ({quit_reason(exc)}); the state is consistent, "
              "run the same command to resume", file=sys.stderr)
        return 130
    finally:
        locks.release(held)


def _check_outputs(manifest, out_dir: Path) -> None:
    """Every output path, checked against the links already in the output folder before anything is paid:
    a folder that is a link to elsewhere would otherwise fail each of its jobs after it was bought."""
    targets, refused = Targets(out_dir), {}
    for job in manifest.jobs:
        try:
            targets(job.output)
        except OutputPathError as exc:
            folder = job.output.rpartition("/")[0]
            # One line per linked folder (a glob may put thousands of jobs there), one per linked file.
            outside = folder and targets.root not in (targets.root / folder).resolve().parents
            refused.setdefault(folder + "/" if outside else job.output, []).append((job, exc))
    problems = [Problem(job.where.file, job.where.line, f"{exc}: a link in its path points outside"
                        + (f" (as do the outputs of {len(hits) - 1} more jobs under {path})" if len(hits) > 1 else "")
                        + ". Remove the link, or choose another --out", job.id)
                for path, hits in refused.items() for job, exc in hits[:1]]
    if problems:
        raise ManifestError(problems)


async def _run(args, manifest, state_path: Path, options: RunOptions) -> int:
    async with AsyncExitStack() as stack:
        clients = await _clients(args, stack, options, manifest)
        provider, options.poll = clients.provider, clients.poll
        stack.push_async_callback(provider.close)
        # The keys too: a server that echoes one in an error must not get it into the state (or the report).
        state_log = StateLog(state_path, secrets=clients.secrets)
        stack.callback(state_log.close)  # before open: a state that fails to load must still release its lock
        state_log.open()
        redo = _redo(args, manifest, state_log, options)
        jobs = manifest.jobs + redo.jobs
        progress = Progress(len(jobs), quiet=args.quiet)
        verifier = Verifier()
        stack.callback(verifier.shutdown)
        runner = Runner(jobs, provider, state_log, manifest.models, options, verifier=verifier, observer=progress)
        progress.expected = lambda job: runner.schedule.expected(job.model, job.duration)
        if not args.allow_other_api:
            check_same_api(state_log.state.runs, provider.policy.name, provider.base_url, state_path)
        plan, deferred = await _plan_and_confirm(args, runner, manifest, options)
        if plan is None:
            return UsageError.exit_code
        link_redo_takes(options.out_dir, redo.links)
        result = await _execute(runner, plan, progress)
        if deferred and not result.halted:
            result.halted = (f"budget: {deferred} job(s) did not fit under the cap and were not submitted; "
                             "raise it and run again to finish")
        print(describe_result(result, runner, options), file=sys.stderr)
        return result.exit_code


async def _plan_and_confirm(args, runner: Runner, manifest, options: RunOptions) -> tuple[Plan | None, int]:
    """The plan, its lost submits settled with the provider (reading costs nothing, so it comes first: a
    resubmit it allows is a payment), shown with what it will pay; its events are written only once the
    user said yes (no plan: they did not). Also how many jobs --partial leaves for a higher cap."""
    plan, events = await runner.prepare()
    events += await runner.reconcile(plan)
    deferred = _apply_cap(args, manifest, plan, runner, options)
    to_pay = cost_to_pay(plan, runner.price)
    balance = await runner.provider.balance() if to_pay > 0 else None
    print(describe_plan(plan, to_pay, manifest, options, balance), file=sys.stderr)
    print(describe_limits(runner), file=sys.stderr)
    if deferred:
        print(f"  --partial: {deferred} more job(s) wait for a higher cap", file=sys.stderr)
    if not await _confirmed(args, to_pay):
        return None, deferred
    runner.commit(events)  # nothing is written before the user said yes
    return plan, deferred


def _redo(args, manifest, state_log: StateLog, options: RunOptions) -> Redo:
    """With --redo, one new take per row marked redo in the picks (or the take an earlier --redo made)."""
    if not args.redo:
        return Redo()
    redo = plan_redo(options.out_dir, state_log.state,
                     lambda notes: load_manifest(args.manifest, user_model_table(), notes=notes).jobs, manifest.jobs)
    if redo.rows:
        print(f"--redo: {len(redo.jobs)} take(s) for {redo.rows} row(s) marked redo in "
              f"{options.out_dir / PICKS_FILE}", file=sys.stderr)
    else:
        print(f"--redo: no row is marked redo in {options.out_dir / PICKS_FILE}, so no new take; mark rows with "
              f"'r' in 'batchgen review {options.out_dir / 'state.jsonl'}' first", file=sys.stderr)
    return redo


async def _execute(runner: Runner, plan: Plan, progress: Progress) -> RunResult:
    main_task = asyncio.current_task()
    # install_interrupts tells the user (by the signal's name); the stop itself goes to the log file.
    # Tasks queued at the provider are paid: they run and are downloaded like the rest.
    install_interrupts(asyncio.get_running_loop(), lambda name: runner.stop(
        f"interrupted ({name}): no new submits; jobs in flight, queued ones too, finish and are downloaded",
        halt=False), main_task)
    try:
        return await runner.run(plan)
    finally:
        progress.close()


def _apply_cap(args, manifest, plan: Plan, runner: Runner, options: RunOptions) -> int:
    """Refuse a run whose submits pass the cap before anything is paid (OverBudgetError), or with
    --partial keep the submits that fit; returns how many were left for a later run."""
    if options.max_cost is None:
        return 0
    cap_name = "--max-cost" if args.max_cost is not None else f"max_cost: in {manifest.path}"
    wanted = len(plan.submit)
    # A lost submit proven never created still counts as in flight until its 'unsent' line is written
    # (after the answer): here it is a submit, and counted once.
    # Videos adopted from their sidecars count at what was paid for them, as their lost state counted them.
    committed = runner.state.committed + plan.on_disk_cost - sum(runner.rec(j).cost for j in plan.submit
                                                                 if runner.rec(j).status is JobStatus.UNKNOWN)
    plan.submit = check_cap(plan.submit, runner.price, committed, options.max_cost,
                            cap_name=cap_name, partial=args.partial)
    return wanted - len(plan.submit)


async def _clients(args, stack: AsyncExitStack, options: RunOptions, manifest) -> Clients:
    """A client per provider the manifest uses (run_providers.py); the local simulators know its models too."""
    if args.provider == "local":
        clients = await local_clients(manifest.jobs, manifest.models, args.seed or 0,
                                      lambda **extra: poll_policy(args, manifest.models, local=True, **extra),
                                      stack, options.out_dir)
        print("\n".join(clients.notes), file=sys.stderr)
        return clients
    return await real_clients(manifest.jobs, args.provider, args.base_url, poll_policy(args, manifest.models),
                              options.concurrency)


async def _confirmed(args, to_pay: float) -> bool:
    if args.yes or to_pay <= args.confirm_above:
        return True
    if not sys.stdin.isatty():
        print(f"batchgen: this run would spend up to ${to_pay:.2f}, above --confirm-above ${args.confirm_above:.2f}, "
              "and there is no terminal to ask; add --yes to proceed (or raise --confirm-above)", file=sys.stderr)
        return False
    try:
        answer = await ask(f"Spend up to ${to_pay:.2f}? [y/N] ")
    except KeyboardInterrupt:
        print("\nbatchgen: not confirmed (Ctrl-C): nothing was paid", file=sys.stderr)
        raise
    return answer.strip().lower() in ("y", "yes")


def describe_plan(plan: Plan, to_pay: float, manifest, options: RunOptions, balance: float | None = None) -> str:
    total = len(plan.jobs)
    lines = [f"{manifest.path}: {total} jobs: {len(plan.done)} done, {len(plan.submit)} to submit, "
             f"{len(plan.poll)} generating, {len(plan.download)} to download, {len(plan.unknown)} unknown, "
             f"{len(plan.failed)} failed (not retried)"]
    if plan.new < total or plan.removed:  # a resume: say what changed since the state was written
        lines.append(f"  since the last run: {plan.new} new, {plan.changed} changed, {plan.removed} no longer in the "
                     f"manifest, {plan.missing_files} downloaded file(s) missing (fetched again)")
    if plan.leftovers:
        lines.append(f"  {len(plan.leftovers)} paid job(s) of rows since edited or removed: their videos are "
                     "fetched too (an edited row's as NAME.prev-KEY.mp4), not paid again")
    if plan.on_disk:
        lines.append(f"  {plan.on_disk} video(s) already in the output folder adopted from their sidecars "
                     "(job key, size and sha256 match): not paid again")
    if plan.whitespace_kept:
        n = plan.whitespace_kept
        lines.append(f"  {n} job{'s differ' if n != 1 else ' differs'} from the state only by whitespace in "
                     "their prompt: kept")
    lines.append(f"  about to pay: ${to_pay:.2f} for {len(plan.submit)} submit(s)"
                 + (f" (cap --max-cost ${options.max_cost:.2f})" if options.max_cost is not None else ""))
    lines += _reconciled_lines(plan)
    if balance is not None and balance + 1e-9 < to_pay:
        lines.append(f"  warning: the account balance is ${balance:.2f}, below the ${to_pay:.2f} this run would pay; "
                     "the run halts when it runs out (top up first to finish in one go)")
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


def _reconciled_lines(plan: Plan) -> list[str]:
    found = plan.found
    if found is None:
        return []
    lines = []
    if found.adopted:
        lines.append(f"    {len(found.adopted)} lost submit(s) found on the provider: not paid again")
    if plan.resubmits:
        lines.append(f"    {plan.resubmits} of the submits are lost submits sent again "
                     "(the provider never received them, or --resubmit-unknown): each is paid")
    if found.strays:
        kept = sum(1 for f in found.strays if f.path is not None)
        lines.append(f"    {len(found.strays)} prediction(s) on the provider no job could be matched to, {kept} of them "
                     "paid videos kept in the output folder's unmatched/ (see 'batchgen status')")
    for why in sorted({w for k, w in found.unknown.items() if k in {j.key for j in plan.unknown}}):
        count = sum(1 for j in plan.unknown if found.unknown.get(j.key) == why)
        lines.append(f"    {count} lost submit(s) stay unknown, not sent again: {why}")
    return lines


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
    strays = unmatched_videos(options.out_dir)
    if strays:
        lines.append(f"  {len(strays)} paid video(s) could not be matched to a job; kept in {options.out_dir / 'unmatched'}:")
        lines += [f"    {s['prediction_id']} ({s.get('model')}): {s.get('why')}" for s in strays[:10]]
    if left := result.plan.leftovers:
        fetched = sum(runner.state.jobs[j.key].status is JobStatus.DOWNLOADED for j in left)
        lines.append(f"  {fetched} of {len(left)} paid video(s) of rows since edited or removed fetched"
                     + ("" if fetched == len(left) else "; run the same command again to fetch the rest"))
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
