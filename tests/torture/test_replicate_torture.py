"""Torture on the Replicate simulator: faults (5xx, lost answers, 429 bursts), the CLI SIGKILLed after a
submit's answer and after a download, then a pause longer than Replicate keeps outputs (the simulator's
injectable clock). It must end with 0 paid twice, every still-available paid video on disk, and the
lost ones reported by job."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

from conftest import API_KEY
from runner_helpers import make_images, write_manifest

from batchgen.simulator import Faults, SimulatorThread
from batchgen.simulator.replicate import ReplicateConfig, apply_changes, start
from batchgen.state import load

REPLICATE = "replicate:bytedance/seedance-2.0"


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _cli(cmd: list[str], env: dict[str, str], kill_at: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env={**env, "BATCHGEN_TEST_KILL_AT": kill_at}, capture_output=True, text=True,
                          timeout=180)


def test_replicate_torture_kills_faults_and_expiry_during_a_pause(tmp_path, render_cache_dir):
    clock = FakeClock()
    config = ReplicateConfig(api_key=API_KEY, gen_base=0.3, gen_per_second=0.0, gen_jitter=0.5, clock=clock,
                             render_cache_dir=render_cache_dir, seed=5,
                             faults=Faults(rate_5xx=0.1, rate_drop_after=0.2, rate_429_burst=0.05))
    make_images(tmp_path / "img", 8)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} spins", "duration": 4,
                                          "resolution": "480p", "model": REPLICATE}])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "batchgen", "run", str(manifest), "--out", str(out), "--yes", "--poll-min", "0.05",
           "--concurrency", "3"]
    with SimulatorThread(config, starter=start, apply=apply_changes) as sim:
        env = {**os.environ, "REPLICATE_API_TOKEN": API_KEY, "REPLICATE_BASE_URL": sim.base_url}
        env.pop("WAVESPEED_API_KEY", None)
        killed = [_cli(cmd, env, "answered:3").returncode, _cli(cmd, env, "downloaded:2").returncode]
        assert killed == [-9, -9], killed
        waiting = [r for r in load(out / "state.jsonl").jobs.values() if r.outputs and r.status.value == "completed"]
        assert waiting, "the kill after a download left a paid video on the provider only"
        time.sleep(1.0)  # the predictions in flight end on the simulator meanwhile
        clock.now += 3700  # the pause: longer than Replicate keeps outputs
        sim.configure(faults={"5xx": 0.0, "drop-after": 0.0, "429": 0.0})
        final = [_cli(cmd, env) for _ in range(2)]
        ledger = sim.ledger()

    state = load(out / "state.jsonl")
    by_pid = {r.pid: r for r in state.jobs.values() if r.pid}
    assert all(n == 1 for n in ledger["accepted_by_body_hash"].values()), "a body was paid twice"
    for sub in ledger["submissions"]:
        rec = by_pid.get(f"replicate:{sub['id']}")
        if sub["status"] == "succeeded" and sub["id"] not in ledger["removed"]:
            assert rec is not None and rec.status.value == "downloaded", sub
            assert hashlib.sha256((out / rec.path).read_bytes()).hexdigest() == ledger["outputs"][sub["id"]]
    expired = [r for r in state.jobs.values() if r.error_class == "expired"]
    assert {r.id for r in waiting} <= {r.id for r in expired}
    for rec in expired:
        assert rec.pid.split(":", 1)[1] in ledger["removed"] and rec.cost > 0
        assert rec.id in final[0].stderr, "each lost video is named in the run's summary"
    assert "LOST: " in final[0].stderr and final[-1].returncode == 1
    assert not list(out.rglob("*.part"))
