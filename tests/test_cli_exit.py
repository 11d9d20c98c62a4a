"""How the CLI leaves: a closed pipe quietly, a bug as one line (a traceback only with --debug), a signal by name."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
from runner_helpers import make_images, write_manifest

from batchgen import cli
from batchgen.run_env import install_interrupts
from batchgen.lifecycle import JobStatus
from batchgen.state import StateLog, load


@pytest.fixture
def state_path(tmp_path):
    path = tmp_path / "state.jsonl"
    with StateLog(path) as log:
        log.open()
        for n in range(3):
            log.append({"ev": "job", "key": f"k{n}", "id": f"id-{n}", "output": f"{n}.mp4", "model": "m",
                        "params": {"duration": 4, "resolution": "720p"}, "where": f"b.yaml:{n + 1}", "cost": 1.2})
    return path


@pytest.mark.parametrize("argv", [["status", "--json"], ["status"]])
def test_a_reader_that_left_gets_no_traceback(state_path, argv):
    """``status --json | head -1``: the pipe's reading end is closed before batchgen writes a byte."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "batchgen", argv[0], str(state_path), *argv[1:]],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 141, "128 + SIGPIPE, as a shell reports a tool whose reader left"


def _boom(*_args):
    raise RuntimeError("the summary broke")


def test_an_internal_error_is_one_line_without_a_traceback(state_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "summarize", _boom)
    assert cli.main(["status", str(state_path)]) == 1
    err = capsys.readouterr().err
    assert err == ("batchgen: internal error: RuntimeError: the summary broke; run again with --debug for the "
                   "traceback, and please report it\n")


@pytest.mark.parametrize("argv", [["--debug", "status"], ["status", "--debug"]])
def test_debug_before_or_after_the_command_prints_the_traceback(state_path, monkeypatch, capsys, argv):
    monkeypatch.setattr(cli, "summarize", _boom)
    assert cli.main([*argv, str(state_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in _boom" in err
    assert err.rstrip().endswith("internal error: RuntimeError: the summary broke; please report it with the "
                                 "traceback above")


def test_without_debug_the_flag_is_off_after_the_command_too():
    assert cli.build_parser().parse_args(["status", "s.jsonl"]).debug is False
    assert cli.build_parser().parse_args(["--debug", "status", "s.jsonl"]).debug is True


# -- signals ------------------------------------------------------------------------------------
class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def records():
    handler = _Records()
    logger = logging.getLogger("batchgen")
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


def test_sigterm_is_a_first_interrupt_passed_and_logged_by_name_and_a_second_signal_quits(records):
    async def body():
        names: list[str] = []
        install_interrupts(asyncio.get_running_loop(), names.append, asyncio.current_task())
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.05)
        assert names == ["SIGTERM"]
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.sleep(5)
        return names

    assert asyncio.run(body()) == ["SIGTERM"]
    assert records[0].startswith("SIGTERM received: no new submits; jobs in flight finish")
    assert records[1].startswith("SIGINT received again: quitting now")


def test_a_callback_without_parameters_still_works(records):
    async def body():
        calls: list[str] = []
        install_interrupts(asyncio.get_running_loop(), lambda: calls.append("stop"), asyncio.current_task())
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(0.05)
        return calls

    assert asyncio.run(body()) == ["stop"]
    assert records[0].startswith("SIGINT received")


def test_sigterm_stops_a_run_gracefully_and_says_so(make_sim, tmp_path):
    sim = make_sim(gen_base=1.0)
    make_images(tmp_path / "img", 6)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} spins", "duration": 4}])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "batchgen", "run", str(manifest), "--out", str(out), "--base-url", sim.base_url,
           "--yes", "--poll-min", "0.05", "--concurrency", "2"]
    proc = subprocess.Popen(cmd, env={**os.environ, "WAVESPEED_API_KEY": "k"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not sim.ledger()["submissions"]:
        assert time.monotonic() < deadline, "the runner never submitted"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "SIGTERM received" in err and "SIGTERM received" in (out / "batchgen.log").read_text()
    assert "Traceback" not in err
    statuses = [r.status for r in load(out / "state.jsonl").jobs.values()]
    submitted = len(sim.ledger()["submissions"])
    assert statuses.count(JobStatus.DOWNLOADED) == submitted, "jobs in flight were finished"
