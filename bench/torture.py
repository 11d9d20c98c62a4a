"""Torture run: a faulty simulator, a batch, the runner SIGKILLed again and again, resumed each time.

    python bench/torture.py --jobs 200 --kills 50            # the full size; prints the table
    python bench/torture.py --jobs 40 --kills 10 --no-listing
    python bench/torture.py --jobs 60 --kills 15 --lost-answers 0.2 --distinct   # lost submits matched by output
    python bench/torture.py --phase disk --jobs 24             # a disk that fills; see torture_phases.py
    python bench/torture.py --phase hostile --jobs 20          # hostile server answers
    python bench/torture.py --phase moved --jobs 24            # the state deleted mid-run, then moved aside

The simulator (in a thread of this process) injects 10 % transient HTTP errors, 429 bursts, 5 %
truncated downloads, 2 % lost submit answers, 5 % task failures, slow answers, and output URLs that
expire after a few seconds. Listing items carry no request ``input`` (as the docs' example) unless
--listing-input; --distinct gives every job its own picture and alternating lengths, so a lost submit
can be told apart by its output. The runner is a subprocess (``python -m batchgen run``), killed with
SIGKILL after a seeded random delay or at a chosen point through BATCHGEN_TEST_KILL_AT (just after
the intent line before the POST, after the POST's answer before it is recorded, after an upload,
with a whole .part on disk, right after the rename); some kills land inside a state compaction run
by a child process. After every kill the state must load and agree with the files on disk. At the
end the ledger (what the simulator accepted and charged) is compared with the state and the files.
Exit status 0 when every check held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


from batchgen.lifecycle import JobStatus
from lost_submits import money_figures
from torture_batch import make_batch
from batchgen.simulator import Faults, SimConfig, SimulatorThread
from batchgen.state import load

KEY = "torture-key-0123456789"
MODEL = "openai/sora-2/image-to-video-pro"
HOOKS = ("submitting", "answered", "uploaded", "downloaded", "placed")

# The compaction child: SIGKILL itself at the Nth snapshot line, or just after the rename.
_COMPACT_CHILD = """
import os, signal, sys
import batchgen.state as st
path, where = sys.argv[1], sys.argv[2]
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
if where == "after-replace":
    st.fsync_path = die
else:
    nth, seen, line = int(where), [0], st._line
    def counted(ev):
        seen[0] += 1
        if seen[0] == nth:
            die()
        return line(ev)
    st._line = counted
log = st.StateLog(path)
log.open()
log.compact()
"""


@dataclass
class Settings:
    jobs: int = 200
    kills: int = 50
    seed: int = 1
    images: int = 8
    listing: bool = True
    #: Whether listing items carry their request input (API.md: unconfirmed; the documented example has none).
    listing_input: bool = False
    #: Rate of submit answers lost after the task was created (the simulator's drop-after fault).
    lost_answers: float = 0.02
    #: Every job its own picture and alternating lengths (otherwise jobs share 'images' pictures).
    distinct: bool = False
    concurrency: int = 8
    url_ttl: float = 3.0
    min_delay: float = 0.4
    max_delay: float = 2.5
    workdir: Path | None = None
    render_cache: str | None = None
    #: Hook stages the first kills hit, one each at its first pass, before the random ones: a run
    #: can finish its submits before a random hook on them comes up, and a test may need them.
    first_hooks: tuple[str, ...] = ()


@dataclass
class Outcome:
    figures: dict[str, object] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    kills: Counter = field(default_factory=Counter)
    out: Path | None = None


def faulty_config(settings: Settings) -> SimConfig:
    return SimConfig(
        seed=settings.seed, gen_base=0.2, gen_per_second=0.0, gen_jitter=0.3, url_ttl=settings.url_ttl,
        retry_after=0.2, enable_listing=settings.listing, listing_input=settings.listing_input,
        render_cache_dir=settings.render_cache,
        faults=Faults(rate_5xx=0.10, rate_429_burst=0.03, burst_len=3, rate_truncate=0.05,
                      rate_drop_after=settings.lost_answers,
                      rate_fail=0.05, rate_slow=0.05, slow_seconds=0.5),
    )


class Torture:
    def __init__(self, settings: Settings, sim: SimulatorThread, manifest: Path, out: Path):
        self.s = settings
        self.sim = sim
        self.manifest = manifest
        self.out = out
        self.state_path = out / "state.jsonl"
        self.rng = random.Random(settings.seed)
        self.outcome = Outcome(out=out)
        self.runs = 0
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._log = open(out.parent / "runner-output.txt", "ab")
        self.current: subprocess.Popen | None = None
        self._first_hooks = list(settings.first_hooks)

    def command(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "batchgen", "run", str(self.manifest), "--out", str(self.out),
                "--base-url", self.sim.base_url, "--yes", "--poll-min", "0.05",
                "--concurrency", str(self.s.concurrency), "-q", "--seed", str(self.runs), *extra]

    def start(self, *extra: str, kill_at: str = "") -> subprocess.Popen:
        self.runs += 1
        env = {**os.environ, "WAVESPEED_API_KEY": KEY, "PYTHONUNBUFFERED": "1"}
        env.pop("BATCHGEN_TEST_KILL_AT", None)
        if kill_at:
            env["BATCHGEN_TEST_KILL_AT"] = kill_at
        self._log.write(f"\n=== run {self.runs} {' '.join(extra)} kill_at={kill_at or '-'}\n".encode())
        self._log.flush()
        self.current = subprocess.Popen(self.command(*extra), env=env, stdout=self._log, stderr=self._log)
        return self.current

    def close(self) -> None:
        """Never leave a runner behind, whatever stopped the torture."""
        if self.current is not None and self.current.poll() is None:
            self.current.kill()
            self.current.wait()
        self._log.close()

    # -- one kill -----------------------------------------------------------------------
    def kill_once(self) -> str | None:
        """One run that ends in a SIGKILL (or finishes first); returns the kind of kill, or None."""
        kind = self.rng.choice(("timed", "timed", "hook", "hook", "compaction")) if self.state_path.exists() else "timed"
        if self._first_hooks:
            kind = "hook"
        if kind == "compaction":
            return self._kill_compaction()
        kill_at = ""
        if self._first_hooks:
            kill_at = f"{self._first_hooks.pop(0)}:1"
        elif kind == "hook":
            uploads_left = self.s.images - len(load(self.state_path).uploads)
            stage = self.rng.choice([h for h in HOOKS if h != "uploaded" or uploads_left > 0])
            kill_at = f"{stage}:{self.rng.randint(1, min(4, uploads_left) if stage == 'uploaded' else 4)}"
        proc = self.start(kill_at=kill_at)
        # A hook that is never reached (nothing left to submit, say) ends in a timed kill instead.
        delay = self.rng.uniform(self.s.min_delay, self.s.max_delay) * (1 if kind == "timed" else 4)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return "timed" if kind == "timed" else "hook-timeout"
        if proc.returncode == -signal.SIGKILL:
            return f"hook:{kill_at.split(':')[0]}"
        if proc.returncode not in (0, 1):
            self.outcome.problems.append(f"run {self.runs} exited {proc.returncode} (see runner-output.txt)")
        return None

    def _kill_compaction(self) -> str | None:
        before = load(self.state_path)
        lines = len(before.jobs) + len(before.uploads) + len(before.runs[-20:])
        where = "after-replace" if self.rng.random() < 0.3 else str(self.rng.randint(1, max(1, lines)))
        proc = subprocess.run([sys.executable, "-c", _COMPACT_CHILD, str(self.state_path), where],
                              capture_output=True, timeout=60)
        if proc.returncode != -signal.SIGKILL:
            self.outcome.problems.append(f"compaction child at {where} exited {proc.returncode}: {proc.stderr[-300:]!r}")
            return None
        after = load(self.state_path)
        if _digest(before) != _digest(after):
            self.outcome.problems.append(f"a kill during compaction ({where}) changed what the state says")
        return "compaction"

    # -- checks -------------------------------------------------------------------------
    def check_state(self, when: str) -> None:
        """The state loads, and agrees with the files: nothing half-written is counted done."""
        try:
            state = load(self.state_path)
        except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
            self.outcome.problems.append(f"{when}: the state does not load: {exc}")
            return
        claimed: dict[str, str] = {}
        for rec in state.jobs.values():
            if rec.status is not JobStatus.DOWNLOADED:
                continue
            if rec.path.endswith(".part"):
                self.outcome.problems.append(f"{when}: {rec.id} is done with a .part file {rec.path}")
            if rec.path in claimed:
                self.outcome.problems.append(f"{when}: {rec.path} is claimed by {claimed[rec.path]} and {rec.id}")
            claimed[rec.path] = rec.id
            if self.file_sha(self.out / rec.path) != rec.sha256:
                self.outcome.problems.append(f"{when}: {rec.id} is done but {rec.path} is missing or differs")

    def file_sha(self, path: Path) -> str | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._hashes:
            self._hashes[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        return self._hashes[key]

    def finish(self, *extra: str, tries: int = 4) -> int:
        """Resume without kills until a run ends with nothing left to do (or ``tries`` runs)."""
        code = -1
        for _ in range(tries):
            proc = self.start(*extra)
            try:
                code = proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.outcome.problems.append(f"run {self.runs} made no end in 300 s (a hang); it was killed")
                return -1
            self.check_state(f"after run {self.runs}")
            if code == 0:
                break
            state = load(self.state_path)
            if not any(r.status in (JobStatus.NEW, JobStatus.SUBMITTED, JobStatus.COMPLETED) for r in state.jobs.values()):
                if not (self.s.listing and any(r.status is JobStatus.UNKNOWN for r in state.jobs.values())):
                    break
        return code


def run_torture(settings: Settings) -> Outcome:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="batchgen-torture-") as tmp:
        root = settings.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        if settings.render_cache is None:
            settings.render_cache = str(root / "render-cache")
        manifest = make_batch(root, settings.jobs, settings.images, settings.distinct)
        out = root / "out"
        with SimulatorThread(faulty_config(settings)) as sim:
            t = Torture(settings, sim, manifest, out)
            try:
                _torture(t, sim, settings, started)
            finally:
                t.close()
            outcome = t.outcome
    return outcome


def _torture(t: Torture, sim: SimulatorThread, settings: Settings, started: float) -> None:
    """Kill and resume until the kills are spent, then finish, retry the failed, and check."""
    attempts = 0
    while sum(t.outcome.kills.values()) < settings.kills and attempts < settings.kills * 3:
        attempts += 1
        kind = t.kill_once()
        if kind:
            t.outcome.kills[kind] += 1
        t.check_state(f"after run {t.runs} ({kind or 'not killed'})")
    t.finish()
    _check_before_retry(t, sim)
    # A 500/502 to a submit is a lost answer like drop-after (issue 15 item 1): the final run goes without either.
    sim.configure(faults={"fail": 0.0, "drop-after": 0.0, "5xx": 0.0})
    final = ("--retry-failed",) if settings.listing else ("--retry-failed", "--resubmit-unknown")
    code = t.finish(*final)
    if code != 0:
        t.outcome.problems.append(f"the final {' '.join(final)} run exited {code}")
    _final_checks(t, sim, time.monotonic() - started)


def _check_before_retry(t: Torture, sim: SimulatorThread) -> None:
    """Before any --retry-failed/--resubmit-unknown: no job paid twice; unknown jobs were never resent."""
    state = load(t.state_path)
    ledger = sim.ledger()
    per_hash = Counter(s["body_hash"] for s in ledger["submissions"] if s["status"] != "failed")
    unknown = [r for r in state.jobs.values() if r.status is JobStatus.UNKNOWN]
    t.outcome.figures["unknown before retry"] = len(unknown)
    if t.s.listing and unknown:
        t.outcome.problems.append(f"{len(unknown)} job(s) still unknown although the listing is on")
    for rec in state.jobs.values():
        if per_hash[rec.body_hash] > 1:
            t.outcome.problems.append(f"{rec.id}: {per_hash[rec.body_hash]} live submissions before any retry")
    for rec in unknown:
        if per_hash[rec.body_hash] > 1:
            t.outcome.problems.append(f"{rec.id} is unknown and was resubmitted without --resubmit-unknown")


def _final_checks(t: Torture, sim: SimulatorThread, wall: float) -> None:
    state = load(t.state_path)
    ledger = sim.ledger()
    live = Counter(s["body_hash"] for s in ledger["submissions"] if s["status"] != "failed")
    failed_tasks = sum(1 for s in ledger["submissions"] if s["status"] == "failed")
    pids = {r.pid for r in state.jobs.values() if r.pid}
    orphans = [s for s in ledger["submissions"] if s["status"] != "failed" and s["id"] not in pids]
    duplicates = sum(n - 1 for n in live.values() if n > 1)
    corrupt = 0
    done = [r for r in state.jobs.values() if r.status is JobStatus.DOWNLOADED]
    for rec in done:
        sha = t.file_sha(t.out / rec.path)
        if sha != rec.sha256 or sha != ledger["outputs"].get(rec.pid):
            corrupt += 1
            t.outcome.problems.append(f"{rec.id}: the file does not match the ledger's sha256")
    leftovers = sorted(p.name for p in t.out.rglob("*.part"))
    if leftovers:
        t.outcome.problems.append(f"{len(leftovers)} .part file(s) left: {leftovers[:5]}")
    if len(done) != t.s.jobs:
        t.outcome.problems.append(f"{len(done)} of {t.s.jobs} jobs downloaded at the end")
    money = money_figures(state, ledger, t.out)
    if t.s.listing and (duplicates or orphans or money["_left_ids"] or money["_wrong"]):
        t.outcome.problems.append(f"{duplicates} duplicate and {len(orphans)} orphaned paid submission(s), "
                                  f"{len(money['_left_ids'])} paid video(s) left on the server, "
                                  f"{len(money['_wrong'])} lost submit(s) matched to another job")
    faults = ledger["faults"]
    t.outcome.figures.update({
        "jobs": t.s.jobs,
        "listing": ("with input" if t.s.listing_input else "without input") if t.s.listing else "off",
        "kills": sum(t.outcome.kills.values()),
        "kills by kind": ", ".join(f"{k} {n}" for k, n in sorted(t.outcome.kills.items())),
        "runs": t.runs,
        "faults seen": ", ".join(f"{k} {n}" for k, n in sorted(faults.items())),
        "expired links (403)": ledger["responses"].get("403", 0),
        "submissions accepted": len(ledger["submissions"]),
        "tasks failed (unbilled)": failed_tasks,
        "lost answers (drop-after)": faults.get("drop-after", 0),
        "lost to kills (answered)": t.outcome.kills.get("hook:answered", 0),
        "duplicates (paid twice)": duplicates,
        "orphans (paid, unused)": len(orphans),
        "corrupt files": corrupt,
        **{k: v for k, v in money.items() if not k.startswith("_")},
        "downloaded": len(done),
        "charged": f"${ledger['charged_total']:.2f}",
        "wall time": f"{wall:.1f} s",
    })


def _digest(state) -> dict[str, tuple]:
    return {k: (r.status.value, r.pid, r.sha256, r.path) for k, r in state.jobs.items()}


def table(outcome: Outcome) -> str:
    width = max(len(k) for k in outcome.figures) + 2
    rows = [f"| {k:<{width}}| {v}" for k, v in outcome.figures.items()]
    rows.append(f"| {'result':<{width}}| " + ("PASS" if not outcome.problems else f"FAIL ({len(outcome.problems)})"))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-listing", action="store_true", help="the simulator offers no prediction listing")
    parser.add_argument("--listing-input", action="store_true", help="listing items carry the request input")
    parser.add_argument("--lost-answers", type=float, default=0.02, metavar="RATE",
                        help="share of submit answers lost after the task was made (default 0.02)")
    parser.add_argument("--distinct", action="store_true", help="one picture per job, 4 s and 8 s in turn")
    parser.add_argument("--workdir", type=Path, help="keep everything here instead of a temporary folder")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--phase", choices=("kills", "disk", "hostile", "moved"), default="kills")
    args = parser.parse_args(argv)
    if args.phase != "kills":
        import torture_phases  # it builds on this module: imported only when asked for
        return torture_phases.main(["--phase", args.phase, "--jobs", str(args.jobs), "--seed", str(args.seed),
                                    *(["--workdir", str(args.workdir)] if args.workdir else [])])
    # SIGTERM unwinds like Ctrl-C, so the runner subprocess in flight is killed too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    outcome = run_torture(Settings(jobs=args.jobs, kills=args.kills, seed=args.seed, listing=not args.no_listing,
                                   workdir=args.workdir, listing_input=args.listing_input,
                                   lost_answers=args.lost_answers, distinct=args.distinct))
    print(table(outcome))
    for problem in outcome.problems[:50]:
        print(f"  problem: {problem}")
    if args.json:
        print(json.dumps(outcome.figures))
    return 0 if not outcome.problems else 1


if __name__ == "__main__":
    sys.exit(main())
