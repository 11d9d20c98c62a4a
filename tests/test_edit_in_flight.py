"""A row edited while its paid job is still generating: the paid video is still fetched, never lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from runner_helpers import make_images, run_cli, write_manifest

from batchgen.state import load
from batchgen.status import summarize
from conftest import API_KEY


def test_a_row_edited_while_its_paid_job_generates_keeps_that_video(make_sim, tmp_path):
    sim = make_sim(gen_base=2.0)
    make_images(tmp_path / "img", 4)
    rows = [{"image": "img/*.png", "prompt": "The {stem} spins", "duration": 4}]
    manifest = write_manifest(tmp_path, rows)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "batchgen", "run", str(manifest), "--out", str(out), "--base-url", sim.base_url,
           "--yes", "--poll-min", "0.05", "--concurrency", "2", "--queue-margin", "0"]
    proc = subprocess.Popen(cmd, env={**os.environ, "WAVESPEED_API_KEY": API_KEY}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while len(sim.ledger()["submissions"]) < 2:
        assert time.monotonic() < deadline, "the runner never submitted"
        time.sleep(0.02)
    time.sleep(0.3)  # the submits' answers are recorded
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    paid_before = {r.key: r.pid for r in load(out / "state.jsonl").jobs.values() if r.pid}
    assert len(paid_before) == 2

    write_manifest(tmp_path, [{**rows[0], "prompt": "The {stem} turns slowly"}])
    assert run_cli(sim, manifest, out) == 0

    ledger = sim.ledger()
    assert set(ledger["outputs"]) >= set(paid_before.values()), "a video paid before the edit was never fetched"
    state = load(out / "state.jsonl")
    for key, pid in paid_before.items():
        rec = state.jobs[key]
        assert rec.superseded_by and rec.status.value == "downloaded", rec
        assert rec.path == f"{rec.output[:-4]}.prev-{key[:8]}.mp4" and (out / rec.path).stat().st_size == rec.bytes
    spend = summarize(state, str(out / "state.jsonl"))["spend"]
    assert spend["committed"] == spend["downloaded"] == round(ledger["charged_total"], 2)
    assert len(ledger["submissions"]) == 6  # the 4 edited jobs and the 2 paid before: nothing twice
