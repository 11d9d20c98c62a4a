"""Disks and files that misbehave: an output folder that cannot be written, a disk that fills during a
download, a state file deleted or cut short mid-run, an image edited between runs, two runs on one state."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import API_KEY
from runner_helpers import assert_batch_intact, make_images, run_cli, write_manifest

from batchgen.lifecycle import JobStatus
from batchgen.state import load

PROMPT = "The {stem} turns slowly"


@pytest.fixture
def batch(tmp_path):
    make_images(tmp_path / "img", 3)
    return write_manifest(tmp_path, [{"image": "img/*.png", "prompt": PROMPT, "duration": 4}]), tmp_path / "out"


def runner_process(sim, manifest: Path, out: Path, *, preexec=None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "batchgen", "run", str(manifest), "--out", str(out), "--base-url", sim.base_url,
           "--yes", "--poll-min", "0.05", "-q"]
    return subprocess.Popen(cmd, env={**os.environ, "WAVESPEED_API_KEY": API_KEY}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=preexec)


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def submitted(state_path: Path) -> bool:
    return state_path.exists() and b'"ev":"submitted"' in state_path.read_bytes()


def test_output_folder_that_cannot_be_created_is_refused_before_any_request(sim, batch, capsys):
    manifest, _ = batch
    blocker = manifest.parent / "not-a-folder"
    blocker.write_text("a file where the output folder should go\n")
    assert run_cli(sim, manifest, blocker / "out") == 2
    err = capsys.readouterr().err
    assert f"the output folder {blocker / 'out'} is not writable" in err and "--out" in err
    assert sim.ledger()["requests"] == {}


def test_disk_full_during_download_halts_and_the_next_run_fetches_without_paying(sim, batch):
    manifest, out = batch
    limit = 30_000  # the state and log fit; no 4 s clip does

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = runner_process(sim, manifest, out, preexec=small_disk)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "cannot write" in err and "File too large" in err and "run the same command again" in err
    state = load(out / "state.jsonl")
    statuses = [r.status for r in state.jobs.values()]
    # The halt stops new submits at once, so a job may not have been sent yet; none is failed or done.
    assert set(statuses) <= {JobStatus.COMPLETED, JobStatus.SUBMITTED, JobStatus.NEW}
    assert JobStatus.COMPLETED in statuses
    assert not list(out.rglob("*.part")) and not list(out.glob("*.mp4"))
    paid = len(sim.ledger()["submissions"])
    assert paid >= 1
    assert run_cli(sim, manifest, out) == 0
    ledger = assert_batch_intact(sim, out, 3)
    assert len(ledger["submissions"]) == 3 and paid <= 3


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_state_file_deleted_or_cut_mid_run_is_written_again(make_sim, batch, damage):
    sim = make_sim(gen_base=1.0)
    manifest, out = batch
    state_path = out / "state.jsonl"
    proc = runner_process(sim, manifest, out)
    wait_for(lambda: submitted(state_path))
    if damage == "delete":
        state_path.unlink()
    else:
        os.truncate(state_path, 0)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert_batch_intact(sim, out, 3)
    before = sim.ledger()["requests"]
    assert run_cli(sim, manifest, out) == 0
    assert sim.ledger()["requests"] == before, "nothing is paid or fetched again after the state was rewritten"


def test_edited_image_makes_a_new_job_and_says_so(sim, batch, capsys):
    manifest, out = batch
    assert run_cli(sim, manifest, out) == 0
    make_images(manifest.parent / "tmp-img", 4)
    os.replace(manifest.parent / "tmp-img" / "shot03.png", manifest.parent / "img" / "shot01.png")
    capsys.readouterr()
    assert run_cli(sim, manifest, out) == 0
    err = capsys.readouterr().err
    assert "1 changed" in err and "1 to submit" in err
    ledger = sim.ledger()
    assert len(ledger["submissions"]) == 4 and ledger["uploads"] == 4
    assert len(list(out.glob("shot01-4s-720p.prev-*.mp4"))) == 1, "the video of the old picture is kept"


def test_second_run_on_the_same_state_refuses(make_sim, batch, capsys):
    sim = make_sim(gen_base=1.0)
    manifest, out = batch
    proc = runner_process(sim, manifest, out)
    try:
        wait_for(lambda: submitted(out / "state.jsonl"))
        requests = sum(sim.ledger()["requests"].values())
        assert run_cli(sim, manifest, out) == 2
        err = capsys.readouterr().err
        assert "is in use by another batchgen run" in err and f"pid {proc.pid}" in err
        assert sum(sim.ledger()["requests"].values()) - requests <= 3 * 4, "only the first run's polls"
        assert len(sim.ledger()["submissions"]) <= 3
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert_batch_intact(sim, out, 3)


def test_second_run_on_the_same_folder_with_its_own_state_refuses(make_sim, batch, tmp_path, capsys):
    # Its own --state sees every job unpaid: without the folder's lock it paid for all of them again.
    sim = make_sim(gen_base=1.0)
    manifest, out = batch
    proc = runner_process(sim, manifest, out)
    try:
        wait_for(lambda: submitted(out / "state.jsonl"))
        assert run_cli(sim, manifest, out, "--state", str(tmp_path / "other.jsonl")) == 2
        err = capsys.readouterr().err
        assert f"the output folder {out.resolve()} is in use by another batchgen run (pid {proc.pid})" in err
        assert not (tmp_path / "other.jsonl").exists()
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert_batch_intact(sim, out, 3)
