"""A state moved aside, deleted or not matching the output folder (issue 15 items 4 and 15): finished videos
are recognised by their sidecars and never paid again, a file batchgen did not place is never overwritten,
and a state deleted during a run is written back before a kill can lose it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import API_KEY
from runner_helpers import make_images, run_cli, sha256, write_manifest

from batchgen.lifecycle import JobStatus
from batchgen.manifest import load_manifest
from batchgen.state import load

PROMPT = "The {stem} turns slowly"


def batch(folder: Path, images: int, takes: int = 1) -> tuple[Path, Path]:
    make_images(folder / "img", images)
    row = {"image": "img/*.png", "prompt": PROMPT, "duration": 4, **({"takes": takes} if takes > 1 else {})}
    return write_manifest(folder, [row]), folder / "out"


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def assert_each_video_paid_once(sim, out: Path, jobs: int) -> dict:
    """Every job downloaded, its file the bytes the simulator made for its prediction, one charge per job."""
    ledger, state = sim.ledger(), load(out / "state.jsonl")
    done = [r for r in state.jobs.values() if r.status is JobStatus.DOWNLOADED and r.path == r.output]
    assert len(done) == jobs, {r.id: r.status.value for r in state.jobs.values()}
    for rec in done:
        assert sha256(out / rec.path) == rec.sha256 == ledger["outputs"][rec.pid]
        assert json.loads((out / rec.path).with_suffix(".json").read_text())["key"] == rec.key
    assert len(ledger["submissions"]) == jobs, "a job was paid twice"
    return ledger


def test_a_damaged_state_moved_aside_as_advised_pays_for_nothing_again(sim, tmp_path, capsys):
    manifest, out = batch(tmp_path, 6, takes=5)
    assert run_cli(sim, manifest, out) == 0
    before = sim.ledger()
    assert len(before["submissions"]) == 30
    state_path = out / "state.jsonl"
    lines = state_path.read_bytes().split(b"\n")
    state_path.write_bytes(b"\n".join(lines[:3] + [b"{not json"] + lines[3:]))
    capsys.readouterr()
    assert run_cli(sim, manifest, out) == 2
    err = capsys.readouterr().err
    assert "Move it aside and run the same command again" in err and "sidecars" in err
    os.replace(state_path, out / "state.jsonl.damaged")
    assert run_cli(sim, manifest, out) == 0
    err = capsys.readouterr().err
    assert "30 video(s) already in the output folder adopted from their sidecars" in err
    assert "about to pay: $0.00 for 0 submit(s)" in err
    ledger = assert_each_video_paid_once(sim, out, 30)
    assert (ledger["charged_total"], ledger["downloads"]) == (before["charged_total"], before["downloads"])
    assert not list(out.glob("*.prev-*")), "nothing was set aside: every video stayed where it was"
    state = load(state_path)
    assert round(state.committed, 2) == before["charged_total"], "the adopted videos count at what was paid"
    assert run_cli(sim, manifest, out) == 0 and len(sim.ledger()["submissions"]) == 30


@pytest.mark.parametrize("planted", ["no sidecar", "another job's sidecar"])
def test_a_file_nobody_recorded_at_a_target_name_is_set_aside_not_overwritten(sim, tmp_path, capsys, planted):
    manifest, out = batch(tmp_path, 2)
    first, other = (job.output for job in load_manifest(manifest).jobs)
    out.mkdir()
    mine = b"my own edit, not a batchgen video\n" * 100
    (out / first).write_bytes(mine)
    if planted == "another job's sidecar":
        (out / first).with_suffix(".json").write_text(json.dumps({"key": "f" * 64, "bytes": len(mine),
                                                                 "sha256": sha256(out / first)}))
    assert run_cli(sim, manifest, out) == 0
    kept = list(out.glob(first.replace(".mp4", ".prev-*.mp4")))
    assert [p.read_bytes() for p in kept] == [mine], kept
    assert "held a file no job in the state had placed there; it is kept as" in capsys.readouterr().err
    assert_each_video_paid_once(sim, out, 2)
    assert not list(out.glob(other.replace(".mp4", ".prev-*")))


def test_a_video_altered_since_its_sidecar_is_not_adopted_but_kept_and_made_again(sim, tmp_path, capsys):
    manifest, out = batch(tmp_path, 3)
    assert run_cli(sim, manifest, out) == 0
    os.replace(out / "state.jsonl", tmp_path / "state.jsonl.aside")
    altered = out / load_manifest(manifest).jobs[1].output
    data = bytearray(altered.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the sha256 can tell
    altered.write_bytes(bytes(data))
    capsys.readouterr()
    # The adopted videos count against the cap at what their sidecars say was paid, before anything is sent.
    assert run_cli(sim, manifest, out, "--max-cost", "3") == 3
    assert "$2.40 already committed + $1.20 for 1 submit(s)" in capsys.readouterr().err
    assert len(sim.ledger()["submissions"]) == 3
    assert run_cli(sim, manifest, out) == 0
    assert "2 video(s) already in the output folder adopted" in capsys.readouterr().err
    ledger = sim.ledger()
    assert len(ledger["submissions"]) == 4, "only the altered one is made again"
    kept = list(out.glob(altered.stem + ".prev-*.mp4"))
    assert [p.read_bytes() for p in kept] == [bytes(data)]
    state = load(out / "state.jsonl")
    rec = state.jobs[load_manifest(manifest).jobs[1].key]
    assert rec.status is JobStatus.DOWNLOADED and sha256(altered) == rec.sha256 == ledger["outputs"][rec.pid]


def test_a_state_deleted_mid_run_then_killed_pays_nothing_again(make_sim, tmp_path):
    """Issue 15 item 15: the running process writes the state back, so the kill finds it whole."""
    sim = make_sim(gen_base=0.6)
    manifest, out = batch(tmp_path, 6, takes=2)
    state_path = out / "state.jsonl"

    def videos() -> int:
        return len(list(out.glob("*.mp4")))

    proc = subprocess.Popen([sys.executable, "-m", "batchgen", "run", str(manifest), "--out", str(out), "--base-url",
                             sim.base_url, "--yes", "--poll-min", "0.05", "--concurrency", "3", "-q"],
                            env={**os.environ, "WAVESPEED_API_KEY": API_KEY}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: videos() >= 3)
        state_path.unlink()
        # Killed while jobs are still generating or downloading, after the state came back.
        wait_for(lambda: state_path.exists() and 5 <= videos() < 12)
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.communicate(timeout=60)
    paid = len(sim.ledger()["submissions"])
    code = run_cli(sim, manifest, out)
    if code == 1:  # a submit whose answer the kill cut off is settled from the listing on the next run
        code = run_cli(sim, manifest, out)
    assert code == 0
    assert_each_video_paid_once(sim, out, 12)
    assert paid <= 12
