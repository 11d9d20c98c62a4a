"""``--provider local`` resumes and repairs like a real server: the simulator keeps its uploads and
tasks under the output folder, so a SIGKILL'd run resumed, or a deleted video fetched again, pays
nothing twice and finds every task it paid for."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import socket
import subprocess
import sys
import time

from runner_helpers import make_images, write_manifest

from batchgen.lifecycle import JobStatus
from batchgen.models import SEEDANCE
from batchgen.simulator import SimConfig, start
from batchgen.simulator.persist import FOLDER, Keeper
from batchgen.state import load


def _kept_tasks(out) -> tuple[list[dict], dict[str, dict]]:
    lines = [json.loads(line) for line in (out / FOLDER / "tasks.jsonl").read_text().splitlines()]
    return [x for x in lines if x["ev"] == "task"], {x["id"]: x for x in lines if x["ev"] == "ended"}


def _submitted(out) -> int:
    try:
        return (out / "state.jsonl").read_text().count('"ev":"submitted"')
    except FileNotFoundError:
        return 0


def test_a_killed_local_run_resumes_and_a_deleted_video_is_fetched_again_without_paying_twice(tmp_path):
    make_images(tmp_path / "img", 6)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} spins", "model": SEEDANCE}])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "batchgen", "run", str(manifest), "--out", str(out), "--provider", "local",
           "--yes", "--concurrency", "3", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while _submitted(out) < 3:
        assert time.monotonic() < deadline and proc.poll() is None, "the local run never submitted"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not any(r.status is JobStatus.DOWNLOADED for r in load(out / "state.jsonl").jobs.values())

    old_port = Keeper(out / FOLDER).port()
    with socket.socket() as taken:  # the port it used is busy now: the tasks answer on the new one
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the killed server's TIME_WAIT
        taken.bind(("127.0.0.1", old_port))
        taken.listen()
        final = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if final.returncode == 1:  # a submit cut by the kill is settled from the listing first
            final = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert f":{old_port} " not in final.stderr and "using the local simulator at" in final.stderr
    accepted, ended = _kept_tasks(out)
    state = load(out / "state.jsonl")
    assert len(accepted) == 6 and len(state.jobs) == 6, "one paid task per job, across the kill"
    for rec in state.jobs.values():
        assert rec.status is JobStatus.DOWNLOADED, (rec.id, rec.error)
        assert hashlib.sha256((out / rec.path).read_bytes()).hexdigest() == ended[rec.pid]["video_sha256"]

    victim = next(iter(state.jobs.values()))
    (out / victim.path).unlink()
    started = time.monotonic()
    repair = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert repair.returncode == 0, repair.stderr
    assert time.monotonic() - started < 30, "the video comes from the kept task, not retries against a dead port"
    assert hashlib.sha256((out / victim.path).read_bytes()).hexdigest() == victim.sha256
    assert len(_kept_tasks(out)[0]) == 6, "nothing was submitted again"


def test_the_keeper_skips_a_torn_line_keeps_names_inside_and_remembers_the_port(tmp_path):
    folder = tmp_path / FOLDER
    keeper = Keeper(folder)
    (folder / "uploads" / "abc").write_bytes(b"the image")
    (tmp_path / "evil").write_bytes(b"outside")
    (folder / "uploads.jsonl").write_text('{"id":"../../evil","content_type":"image/png"}\n'
                                          '{"id":"abc","content_type":"image/png"}\n{"id":"de')

    async def started() -> tuple[dict, str]:
        running = await start(SimConfig(), keep=keeper)
        try:
            return dict(running.simulator.uploads.store.files), running.base_url
        finally:
            await running.close()

    files, base_url = asyncio.run(started())
    assert list(files) == ["abc"] and files["abc"].data == b"the image"
    assert base_url.endswith(f":{keeper.port()}") and keeper.port() > 0
