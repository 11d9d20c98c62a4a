"""More torture phases (issue 15): a disk that fills during the run, a server whose answers lie, a state lost.

    python bench/torture_phases.py --phase disk --jobs 24        # needs root (mounts a small tmpfs)
    python bench/torture_phases.py --phase hostile --jobs 20
    python bench/torture_phases.py --phase moved --jobs 24

disk: the output folder (videos, state, log) is a tmpfs of ``--disk-kb`` that fills during the run.
The runner must halt cleanly (exit 3, a message saying to free space and run the same command), no
job may be paid twice, and once the disk is enlarged the same command finishes with every paid
video on disk.

hostile: the simulator's hostile modes (batchgen/simulator/hostile.py) are served one after another
while the batch runs: submits that create the task and then answer 500/502/504, HTML or an envelope
``code: 500``; result reads that glitch once (HTML, no data). Plain reruns of the same command (no
--retry-failed, no --resubmit-unknown: both may pay again) must end with 0 paid twice and 0 paid
videos lost.

moved: the state file is deleted while the first run goes on, and the run is SIGKILLed once it wrote the
state back; the same command finishes. Then the state is moved aside (as the message for a damaged one
advises); the same command must pay for nothing already on disk (adopted from the sidecars).

Exit status 0 when every check held, 1 otherwise (and 2 when a phase could not run here).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from torture import Outcome, Settings, Torture, make_batch, table

from batchgen.lifecycle import JobStatus
from batchgen.simulator import SimConfig, SimulatorThread
from batchgen.state import load

HOSTILE_ROUND = ("submit-500", "submit-502", "submit-504", "submit-non-json", "submit-code-500",
                 "non-json", "no-data")


@dataclass
class PhaseSettings:
    jobs: int = 24
    images: int = 4
    concurrency: int = 2
    seed: int = 1
    #: The small disk's size: the state, the log and a few of the ~45-85 KB clips fit, not all.
    disk_kb: int = 192
    #: Seconds a task takes to generate: long enough that hostile modes meet later submits too.
    gen_seconds: float = 0.6
    workdir: Path | None = None
    render_cache: str | None = None


def _settings(p: PhaseSettings) -> Settings:
    return Settings(jobs=p.jobs, kills=0, seed=p.seed, images=p.images, concurrency=p.concurrency,
                    workdir=p.workdir, render_cache=p.render_cache)


def _clean_config(p: PhaseSettings, render_cache: str) -> SimConfig:
    # Listing items carry their input, so lost submits are matched exactly: this phase is about hostile
    # answers, not about matching by output (the main torture covers that).
    return SimConfig(seed=p.seed, gen_base=p.gen_seconds, gen_per_second=0.0, gen_jitter=0.3, retry_after=0.2,
                     render_cache_dir=render_cache, listing_input=True)


def money_checks(t: Torture, sim: SimulatorThread) -> None:
    """No job paid twice; every paid task's video on disk, whole (its sha256 is the ledger's)."""
    state = load(t.state_path)
    ledger = sim.ledger()
    live = [s for s in ledger["submissions"] if s["status"] != "failed"]
    per_hash = Counter(s["body_hash"] for s in live)
    duplicates = sum(n - 1 for n in per_hash.values() if n > 1)
    on_disk = {r.pid for r in state.jobs.values() if r.status is JobStatus.DOWNLOADED
               and r.pid and t.file_sha(t.out / r.path) == ledger["outputs"].get(r.pid)}
    lost = [s["id"] for s in live if s["id"] not in on_disk]
    done = sum(1 for r in state.jobs.values() if r.status is JobStatus.DOWNLOADED)
    if duplicates:
        t.outcome.problems.append(f"{duplicates} job(s) paid twice")
    if lost:
        t.outcome.problems.append(f"{len(lost)} paid video(s) not on disk: tasks {lost[:5]}")
    if done != t.s.jobs:
        t.outcome.problems.append(f"{done} of {t.s.jobs} jobs downloaded at the end")
    t.outcome.figures.update({"jobs": t.s.jobs, "runs": t.runs, "submissions accepted": len(ledger["submissions"]),
                              "duplicates (paid twice)": duplicates, "paid videos lost": len(lost),
                              "downloaded": done, "charged": f"${ledger['charged_total']:.2f}"})


# -- the full disk ------------------------------------------------------------------------

class Mount:
    """A tmpfs of ``size_kb`` at ``folder`` (root only), grown by ``grow`` and unmounted by ``close``."""

    def __init__(self, folder: Path, size_kb: int):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)],
                              capture_output=True, text=True, check=False)
        self.error = None if done.returncode == 0 else (done.stderr.strip() or f"mount exited {done.returncode}")

    def grow(self, size_kb: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size_kb}k", str(self.folder)], check=True)

    def close(self) -> None:
        if self.error is None:
            subprocess.run(["umount", str(self.folder)], check=True)


def run_disk_phase(p: PhaseSettings) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="batchgen-disk-") as tmp:
        root = p.workdir or Path(tmp)
        cache = p.render_cache or str(root / "render-cache")
        manifest = make_batch(root, p.jobs, p.images)
        disk = Mount(root / "out", p.disk_kb)
        if disk.error is not None:
            outcome = Outcome()
            outcome.figures["skipped"] = f"cannot mount a {p.disk_kb} KB tmpfs here: {disk.error}"
            return outcome
        try:
            with SimulatorThread(_clean_config(p, cache)) as sim:
                t = Torture(_settings(p), sim, manifest, root / "out")
                try:
                    _disk(t, sim, disk)
                finally:
                    t.close()
        finally:
            disk.close()
    return t.outcome


def _disk(t: Torture, sim: SimulatorThread, disk: Mount) -> None:
    """Two runs on the small disk, each must halt with exit 3. In the first another file leaves a few
    free blocks, so the state log's own lines are cut short when they reach their end; in the second
    (that file gone) the videos fill the disk. Then the disk is grown and the same command finishes."""
    filler = t.out / "filler.bin"
    size = fill(filler)
    # Room for the job, run and upload lines (~310, ~90 and ~200 bytes) and a few intents: the wall
    # comes among the submits.
    room = -(-(t.s.jobs * 310 + 100 + t.s.images * 200 + 600) // 4096)
    os.truncate(filler, max(0, size // 4096 - room) * 4096)
    _halting_run(t, sim)
    filler.unlink()
    _halting_run(t, sim)
    disk.grow(256 * 1024)
    code = t.finish()
    if code != 0:
        t.outcome.problems.append(f"the same command on the larger disk exited {code}")
    money_checks(t, sim)
    leftovers = sorted(p.name for p in t.out.rglob("*.part"))
    if leftovers:
        t.outcome.problems.append(f"{len(leftovers)} .part file(s) left: {leftovers[:5]}")


def _halting_run(t: Torture, sim: SimulatorThread) -> None:
    said_before = len(_runner_output(t))
    code = t.start().wait(timeout=300)
    t.check_state(f"after run {t.runs} on the full disk")
    state = load(t.state_path)
    done = sum(1 for r in state.jobs.values() if r.status is JobStatus.DOWNLOADED)
    t.outcome.figures[f"run {t.runs} on the full disk"] = (f"exit {code}, {len(sim.ledger()['submissions'])} paid, "
                                                           f"{done} downloaded, {state.torn} torn line(s)")
    said = _runner_output(t)[said_before:]
    if code != 3:
        t.outcome.problems.append(f"run {t.runs} on a full disk exited {code}, not 3 (see runner-output.txt)")
    if "Traceback" in said:
        t.outcome.problems.append(f"run {t.runs} printed a traceback (see runner-output.txt)")
    if "run the same command again" not in said:
        t.outcome.problems.append(f"run {t.runs}'s halt did not say to free space and run the same command again")
    per_hash = Counter(s["body_hash"] for s in sim.ledger()["submissions"])
    if any(n > 1 for n in per_hash.values()):
        t.outcome.problems.append(f"run {t.runs} on a full disk paid a job twice")
    # Every paid submit had its intent on disk first: a job the state still calls new was paid blind.
    intended = {r.body_hash for r in state.jobs.values() if r.status is not JobStatus.NEW}
    if set(per_hash) - intended:
        t.outcome.problems.append(f"run {t.runs}: {len(set(per_hash) - intended)} submit(s) paid without an intent "
                                  "in the state")


def fill(path: Path) -> int:
    """Write ``path`` until the disk is full; returns its size."""
    size = 0
    with open(path, "wb", buffering=0) as fh:
        for chunk in (65536, 4096, 512, 64, 1):
            try:
                while True:
                    size += fh.write(bytes(chunk))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return size


def _runner_output(t: Torture) -> str:
    return (t.out.parent / "runner-output.txt").read_text(errors="replace")


# -- hostile answers ----------------------------------------------------------------------

def set_hostile(sim: SimulatorThread, **changes) -> dict:
    request = urllib.request.Request(f"{sim.base_url}/_sim/hostile", data=json.dumps(changes).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


class Rotator(threading.Thread):
    """Serves each hostile mode once, in turn, while a run goes on: the next is set once the last was
    served."""

    def __init__(self, sim: SimulatorThread, modes: tuple[str, ...]):
        super().__init__(daemon=True)
        self.sim = sim
        self.modes = list(modes)
        self.served: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        current = None
        while not self.done.is_set():
            if current is None or set_hostile(self.sim)["left"] == 0:
                if current is not None:
                    self.served.append(current)
                if not self.modes:
                    set_hostile(self.sim, mode=None)
                    return
                current = self.modes.pop(0)
                set_hostile(self.sim, mode=current, count=1)
            self.done.wait(0.02)
        set_hostile(self.sim, mode=None)


def run_hostile_phase(p: PhaseSettings) -> Outcome:
    return _plain_phase(p, "hostile", _hostile)


def _plain_phase(p: PhaseSettings, name: str, body) -> Outcome:
    """A phase on an ordinary folder and a clean simulator: ``body(t, sim)`` drives the runs."""
    with tempfile.TemporaryDirectory(prefix=f"batchgen-{name}-") as tmp:
        root = p.workdir or Path(tmp)
        manifest = make_batch(root, p.jobs, p.images)
        with SimulatorThread(_clean_config(p, p.render_cache or str(root / "render-cache"))) as sim:
            t = Torture(_settings(p), sim, manifest, root / "out")
            try:
                body(t, sim)
            finally:
                t.close()
    return t.outcome


def _hostile(t: Torture, sim: SimulatorThread) -> None:
    """Every hostile mode served once during the first run; plain reruns settle the rest."""
    rotator = Rotator(sim, HOSTILE_ROUND)
    rotator.start()
    proc = t.start()
    try:
        code = proc.wait(timeout=300)
    finally:
        rotator.done.set()
        rotator.join(timeout=10)
    t.check_state(f"after run {t.runs} with hostile answers")
    missed = [m for m in HOSTILE_ROUND if m not in rotator.served]
    t.outcome.figures.update({"hostile answers served": len(rotator.served), "first run exit": code})
    if missed:
        t.outcome.problems.append(f"the run ended before these modes were served: {missed}")
    if "Traceback" in _runner_output(t):
        t.outcome.problems.append("a traceback was printed (see runner-output.txt)")
    code = t.finish()
    if code != 0:
        t.outcome.problems.append(f"the plain rerun exited {code}")
    money_checks(t, sim)


# -- the state lost ---------------------------------------------------------------------------

def run_moved_phase(p: PhaseSettings) -> Outcome:
    return _plain_phase(p, "moved", _moved)


def _moved(t: Torture, sim: SimulatorThread) -> None:
    proc = t.start()
    _until(lambda: _videos(t) >= t.s.jobs // 4 or proc.poll() is not None)
    t.state_path.unlink(missing_ok=True)
    # Killed with jobs still to fetch, once the run wrote the state back (a run ending writes it anyway).
    _until(lambda: (t.state_path.exists() and t.s.jobs // 2 <= _videos(t) < t.s.jobs) or proc.poll() is not None)
    killed = proc.poll() is None
    if not killed:
        t.outcome.problems.append("the deleted state was not written back while the run went on")
    proc.kill()
    proc.wait()
    t.check_state("after the state was deleted and the run killed")
    if t.finish() != 0:
        t.outcome.problems.append("the runs after the kill did not finish (see runner-output.txt)")
    before = len(sim.ledger()["submissions"])
    os.replace(t.state_path, t.out / "state.jsonl.aside")
    code = t.finish()
    paid = len(sim.ledger()["submissions"]) - before
    t.outcome.figures.update({"killed with the state written back": killed,
                              "paid after the state was moved aside": paid})
    if code != 0 or paid:
        t.outcome.problems.append(f"with the state moved aside the same command exited {code} and paid {paid} again")
    if any(t.out.glob("*.prev-*")):
        t.outcome.problems.append("a video was set aside although each one was its own job's")
    money_checks(t, sim)


def _videos(t: Torture) -> int:
    return len(list(t.out.glob("*.mp4")))


def _until(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


PHASES = {"disk": run_disk_phase, "hostile": run_hostile_phase, "moved": run_moved_phase}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", choices=sorted(PHASES), required=True)
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--disk-kb", type=int, default=192, help="the full-disk phase's tmpfs size")
    parser.add_argument("--workdir", type=Path, help="keep everything here instead of a temporary folder")
    args = parser.parse_args(argv)
    outcome = PHASES[args.phase](PhaseSettings(jobs=args.jobs, seed=args.seed, disk_kb=args.disk_kb,
                                               workdir=args.workdir))
    if "skipped" in outcome.figures:
        print(f"phase {args.phase} skipped: {outcome.figures['skipped']}")
        return 2
    print(table(outcome))
    for problem in outcome.problems[:50]:
        print(f"  problem: {problem}")
    return 0 if not outcome.problems else 1


if __name__ == "__main__":
    sys.exit(main())
