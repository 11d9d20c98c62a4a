"""The torture run at CI size: a faulty simulator, the runner SIGKILLed at random and at chosen points,
resumed each time; the ledger, the state and the files must agree (bench/torture.py is the full size)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import API_KEY
from runner_helpers import assert_batch_intact, make_images, write_manifest

from batchgen.simulator import Faults

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import torture  # noqa: E402


@pytest.mark.slow
def test_torture_with_listing_ends_with_every_job_paid_once(tmp_path, render_cache_dir, capsys):
    # One picture per job: two lost jobs of the same picture and length, one of which made its task, cannot
    # be told apart by any output and rightly stay unknown (tests/test_reconcile.py), which this run's
    # "every lost answer resolves itself" cannot allow (it failed about 1 run in 12 with shared pictures).
    outcome = torture.run_torture(torture.Settings(jobs=40, kills=10, seed=3, workdir=tmp_path, distinct=True,
                                                   render_cache=render_cache_dir))
    with capsys.disabled():
        print("\n" + torture.table(outcome))
    assert outcome.problems == []
    figures = outcome.figures
    assert figures["kills"] >= 10 and outcome.kills["compaction"] >= 1
    assert figures["unknown before retry"] == 0, "with the listing on, lost answers resolve themselves"
    assert figures["downloaded"] == 40 and figures["duplicates (paid twice)"] == 0
    assert figures["orphans (paid, unused)"] == 0 and figures["corrupt files"] == 0
    assert "5xx" in figures["faults seen"] and "truncate" in figures["faults seen"]


@pytest.mark.slow
def test_torture_without_listing_never_resubmits_unknown_jobs_unasked(tmp_path, render_cache_dir, capsys):
    # The first two kills land between an intent and its POST and between the POST's answer and its
    # record: both leave a job unknown, which without a listing only --resubmit-unknown may send again.
    outcome = torture.run_torture(torture.Settings(jobs=30, kills=8, seed=2, listing=False, workdir=tmp_path,
                                                   render_cache=render_cache_dir,
                                                   first_hooks=("submitting", "answered")))
    with capsys.disabled():
        print("\n" + torture.table(outcome))
    assert outcome.problems == []
    made_unknown = outcome.kills["hook:submitting"] + outcome.kills["hook:answered"]
    assert outcome.figures["unknown before retry"] >= made_unknown == 2
    assert outcome.figures["downloaded"] == 30, "--resubmit-unknown finishes the batch"


def _run(sim, manifest: Path, out: Path, kill_at: str = "") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "batchgen", "run", str(manifest), "--out", str(out), "--base-url", sim.base_url,
           "--yes", "--poll-min", "0.05", "--concurrency", "2", "-q"]
    env = {**os.environ, "WAVESPEED_API_KEY": API_KEY, "BATCHGEN_TEST_KILL_AT": kill_at}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def test_unknown_submits_give_their_slot_back(make_sim, tmp_path):
    """Found by the torture run: a submit that ended unknown kept its slot, so two of them stalled a
    --concurrency 2 run for ever. Without a listing, a lost submit cannot be settled in the run."""
    sim = make_sim(faults=Faults(rate_drop_after=1.0), enable_listing=False)
    make_images(tmp_path / "img", 5)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} turns", "duration": 4}])
    done = _run(sim, manifest, tmp_path / "out")
    assert done.returncode == 1 and done.stderr.count("unknown shot") == 5, done.stderr
    assert len(sim.ledger()["submissions"]) == 5


def test_lost_submits_settled_in_the_run_hold_one_slot_each(make_sim, tmp_path):
    """Five answers lost at --concurrency 2: each job keeps its one slot while its lost submit is
    settled, and gives it back once; a slot taken twice or never given back stalls the run."""
    sim = make_sim(faults=Faults(rate_drop_after=1.0))
    make_images(tmp_path / "img", 5)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} turns", "duration": 4}])
    done = _run(sim, manifest, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert sim.ledger()["faults"]["drop-after"] == 5
    assert_batch_intact(sim, tmp_path / "out", 5)


def test_reconciled_jobs_are_counted_in_flight_once(make_sim, tmp_path):
    """Found by the torture run: a job adopted from the listing took two slots and gave one back, so
    new submits after it waited for ever."""
    sim = make_sim(listing_input=True)
    make_images(tmp_path / "img", 5)
    manifest = write_manifest(tmp_path, [{"image": "img/shot0[0-2].png", "prompt": "The {stem} turns", "duration": 4}])
    # Killed as the first submit's answer arrived: that job is left for the next run to reconcile.
    killed = _run(sim, manifest, tmp_path / "out", kill_at="answered:1")
    assert killed.returncode == -9 and len(sim.ledger()["submissions"]) >= 1
    write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} turns", "duration": 4}])
    done = _run(sim, manifest, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert_batch_intact(sim, tmp_path / "out", 5)
