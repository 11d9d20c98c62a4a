"""SIGKILL the runner at several moments, resume with the same command: every job ends downloaded once,
the ledger shows one accepted submission per job, and every file matches the ledger's sha256."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

from runner_helpers import assert_batch_intact, make_images, write_manifest

from batchgen.simulator import Faults
from batchgen.state import load


def test_sigkill_at_random_moments_then_resume(make_sim, tmp_path):
    sim = make_sim(gen_base=0.4, gen_jitter=0.5, faults=Faults(rate_truncate=0.2, rate_5xx=0.1))
    make_images(tmp_path / "img", 8)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} spins", "duration": 4}])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "batchgen", "run", str(manifest), "--out", str(out), "--base-url", sim.base_url,
           "--yes", "--poll-min", "0.05", "--concurrency", "3", "-q"]
    env = {**os.environ, "WAVESPEED_API_KEY": "k"}
    rng = random.Random(7)
    kills = 0
    for _ in range(6):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        load(out / "state.jsonl")  # loads after every kill
    assert kills >= 3
    # A 500/502 to a submit leaves its job unknown (issue 15 item 1) and one to the listing read keeps
    # it so: the settling runs go without 5xx faults, so they end what the kills and faults left.
    sim.configure(faults={"5xx": 0.0})
    final = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if final.returncode == 1:  # answers lost to a kill are reconciled from the listing on this run
        final = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    ledger = assert_batch_intact(sim, out, 8)
    assert len(ledger["submissions"]) == 8
    assert not list(out.rglob("*.part"))
