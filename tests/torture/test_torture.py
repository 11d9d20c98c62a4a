"""The torture run at CI size: a faulty simulator, the runner SIGKILLed at random and at chosen points,
resumed each time; the ledger, the state and the files must agree (bench/torture.py is the full size)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import torture  # noqa: E402


@pytest.mark.slow
def test_torture_with_listing_ends_with_every_job_paid_once(tmp_path, render_cache_dir, capsys):
    outcome = torture.run_torture(torture.Settings(jobs=40, kills=10, seed=3, workdir=tmp_path,
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
    outcome = torture.run_torture(torture.Settings(jobs=30, kills=8, seed=2, listing=False, workdir=tmp_path,
                                                   render_cache=render_cache_dir))
    with capsys.disabled():
        print("\n" + torture.table(outcome))
    assert outcome.problems == []
    made_unknown = outcome.kills["hook:submitting"] + outcome.kills["hook:answered"]
    assert outcome.figures["unknown before retry"] >= made_unknown >= 1
    assert outcome.figures["downloaded"] == 30, "--resubmit-unknown finishes the batch"
