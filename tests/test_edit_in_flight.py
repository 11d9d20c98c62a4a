"""A row edited while its paid job is still generating: the paid video is still fetched, never lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from runner_helpers import make_images, run_cli, write_manifest

from batchgen.estimate import estimate_files
from batchgen.state import load
from batchgen.status import summarize
from conftest import API_KEY


def _killed_with_two_paid(sim, tmp_path) -> tuple[dict, object, dict[str, str]]:
    """A run of 4 jobs (2 images x 2 takes) SIGKILLed while its first two paid jobs generate."""
    make_images(tmp_path / "img", 2)
    row = {"image": "img/*.png", "prompt": "The {stem} spins, take {take}", "duration": 4, "takes": 2}
    manifest = write_manifest(tmp_path, [row])
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
    paid = {r.key: r.pid for r in load(out / "state.jsonl").jobs.values() if r.pid}
    assert len(paid) == 2
    return row, out, paid


def _assert_paid_videos_kept(sim, out, paid: dict[str, str], submissions: int) -> list:
    ledger = sim.ledger()
    assert set(ledger["outputs"]) >= set(paid.values()), "a video paid before the manifest changed was never fetched"
    state = load(out / "state.jsonl")
    for key in paid:
        rec = state.jobs[key]
        assert rec.status.value == "downloaded" and (out / rec.path).stat().st_size == rec.bytes, rec
    spend = summarize(state, str(out / "state.jsonl"))["spend"]
    assert spend["committed"] == spend["downloaded"] == round(ledger["charged_total"], 2)
    assert len(ledger["submissions"]) == submissions  # nothing paid twice
    return [state.jobs[key] for key in paid]


def test_a_row_edited_while_its_paid_jobs_generate_keeps_their_videos(make_sim, tmp_path, capsys):
    sim = make_sim(gen_base=2.0)
    row, out, paid = _killed_with_two_paid(sim, tmp_path)
    manifest = write_manifest(tmp_path, [{**row, "prompt": "The {stem} turns slowly, take {take}"}])
    assert run_cli(sim, manifest, out) == 0
    err = capsys.readouterr().err
    assert "2 paid job(s) of rows since edited or removed: their videos are fetched too" in err
    assert "2 of 2 paid video(s) of rows since edited or removed fetched" in err
    for rec in _assert_paid_videos_kept(sim, out, paid, submissions=6):  # 4 edited jobs and the 2 paid before
        assert rec.superseded_by and rec.path == f"{rec.output[:-4]}.prev-{rec.key[:8]}.mp4"


def test_a_row_removed_while_its_paid_jobs_generate_keeps_their_videos(make_sim, tmp_path):
    sim = make_sim(gen_base=2.0)
    row, out, paid = _killed_with_two_paid(sim, tmp_path)
    state = load(out / "state.jsonl")
    assert {state.jobs[k].image for k in paid} == {"img/shot00.png"}, "submits go in manifest order"
    manifest = write_manifest(tmp_path, [{**row, "image": "img/shot01.png"}])  # shot00's row is gone
    others = estimate_files(manifest, out / "state.jsonl").other_in_state
    assert others == {"jobs": 2, "dollars": round(sim.ledger()["charged_total"], 2), "fetching": 2}
    assert run_cli(sim, manifest, out) == 0
    for rec in _assert_paid_videos_kept(sim, out, paid, submissions=4):  # shot01's 2 jobs and the 2 paid before
        assert rec.path == rec.output, "no job of the manifest names its file: it keeps its own name"
