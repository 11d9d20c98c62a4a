"""Ctrl-C once: no new submits, jobs in flight finish; twice: quit now. Either way the next run resumes."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

from runner_helpers import assert_batch_intact, make_images, run_cli, write_manifest

from batchgen.lifecycle import JobStatus
from batchgen.state import load


def _start(sim, tmp_path, submits: int):
    """A run of 6 jobs on 2 slots and one task queued beyond them (a fixed --queue-margin, so that a
    Ctrl-C always leaves jobs unsubmitted), started in a child process and left once ``submits`` went out."""
    make_images(tmp_path / "img", 6)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} spins", "duration": 4}])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "batchgen", "run", str(manifest), "--out", str(out), "--base-url", sim.base_url,
           "--yes", "--poll-min", "0.05", "--concurrency", "2", "--queue-margin", "1"]
    env = {**os.environ, "WAVESPEED_API_KEY": "k"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while len(sim.ledger()["submissions"]) < submits:
        assert time.monotonic() < deadline, "the runner never submitted"
        time.sleep(0.02)
    return proc, cmd, env, out


def test_one_ctrl_c_finishes_jobs_in_flight_and_submits_nothing_new(make_sim, tmp_path):
    sim = make_sim(gen_base=1.0)
    proc, cmd, env, out = _start(sim, tmp_path, submits=1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "SIGINT received" in err and "run the same command again" in err
    submitted = len(sim.ledger()["submissions"])
    # At most the 2 slots plus the one task a queueing provider keeps waiting (the queue margin).
    assert 1 <= submitted <= 3
    state = load(out / "state.jsonl")
    statuses = [r.status for r in state.jobs.values()]
    assert statuses.count(JobStatus.DOWNLOADED) == submitted, "jobs in flight were finished"
    assert statuses.count(JobStatus.NEW) == 6 - submitted
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=60).returncode == 0
    assert_batch_intact(sim, out, 6)


def test_two_ctrl_c_quit_at_once_and_the_next_run_resumes(make_sim, tmp_path):
    sim = make_sim(gen_base=3.0)
    proc, cmd, env, out = _start(sim, tmp_path, submits=2)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - started < 2.5, "a second Ctrl-C must not wait for the 3 s generations"
    assert proc.returncode == 130, err
    state = load(out / "state.jsonl")
    # The 2 slots and the queue margin's one task, each with its prediction id for the next run.
    assert sum(r.status is JobStatus.SUBMITTED for r in state.jobs.values()) == len(sim.ledger()["submissions"]) == 3
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=90).returncode == 0
    ledger = assert_batch_intact(sim, out, 6)
    assert len(ledger["submissions"]) == 6


def test_sigterm_stops_like_one_ctrl_c_and_says_so_once(make_sim, tmp_path):
    sim = make_sim(gen_base=1.0)
    proc, cmd, env, out = _start(sim, tmp_path, submits=1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert err.count("no new submits") == 1 and "SIGTERM received" in err and "Ctrl-C" not in err, err
    assert "stopping: interrupted (SIGTERM)" in (out / "batchgen.log").read_text()
    state = load(out / "state.jsonl")
    submitted = len(sim.ledger()["submissions"])
    assert [r.status for r in state.jobs.values()].count(JobStatus.DOWNLOADED) == submitted
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=60).returncode == 0
    assert_batch_intact(sim, out, 6)


def test_a_halted_run_says_why_once(make_sim, tmp_path, capsys):
    sim = make_sim(api_key="the-key")
    make_images(tmp_path / "img", 2)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} spins", "duration": 4}])
    assert run_cli(sim, manifest, tmp_path / "out", key="not-the-key") == 3
    err = capsys.readouterr().err
    assert err.count("invalid API key") == 1, err
    assert "run halted: " in (tmp_path / "out" / "batchgen.log").read_text()


def _read_until(fd: int, wanted: bytes, timeout: float) -> bytes:
    """What the terminal showed until ``wanted`` appeared (or the child closed it, or time ran out)."""
    seen, deadline = b"", time.monotonic() + timeout
    while wanted not in seen and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed its terminal
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_one_ctrl_c_at_the_spend_prompt_declines_at_once(sim, tmp_path):
    make_images(tmp_path / "img", 2)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} spins", "duration": 4}])
    cmd = [sys.executable, "-m", "batchgen", "run", str(manifest), "--out", str(tmp_path / "out"),
           "--base-url", sim.base_url, "--confirm-above", "0", "--poll-min", "0.05"]
    terminal, child_end = pty.openpty()  # a terminal on stdin, as a user typing at the prompt has
    proc = subprocess.Popen(cmd, env={**os.environ, "WAVESPEED_API_KEY": "k"}, stdin=child_end,
                            stdout=child_end, stderr=child_end)
    os.close(child_end)
    try:
        assert b"[y/N]" in _read_until(terminal, b"[y/N]", 30)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C at that terminal sends
        shown = _read_until(terminal, b"nothing was paid", 5)
        assert proc.poll() is not None or _exited_within(proc, 2), \
            f"one Ctrl-C at the prompt left the run waiting for an answer: {shown!r}"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(terminal)
    assert proc.returncode == 130, shown
    assert b"not confirmed (Ctrl-C): nothing was paid" in shown
    assert sim.ledger()["submissions"] == [] and not (tmp_path / "out" / "state.jsonl").exists()


def _exited_within(proc: subprocess.Popen, seconds: float) -> bool:
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_two_sigterms_quit_at_once_and_say_so_by_name(make_sim, tmp_path):
    sim = make_sim(gen_base=3.0)
    proc, _, _, _ = _start(sim, tmp_path, submits=2)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "stopped at once (SIGTERM twice)" in err and "Ctrl-C" not in err, err
