"""bench/torture_phases.py at CI size: a disk that fills during the run, a server whose answers lie, a state
deleted during a run and moved aside after it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import torture  # noqa: E402
import torture_phases  # noqa: E402


def _phase(run, jobs: int, tmp_path, render_cache_dir, capsys) -> torture.Outcome:
    """One phase at ``jobs`` jobs, its table printed (a skipped phase skips the test)."""
    outcome = run(torture_phases.PhaseSettings(jobs=jobs, workdir=tmp_path, render_cache=render_cache_dir))
    if "skipped" in outcome.figures:
        pytest.skip(outcome.figures["skipped"])
    with capsys.disabled():
        print("\n" + torture.table(outcome))
    return outcome


@pytest.mark.slow
def test_full_disk_phase_halts_cleanly_pays_once_and_finishes_once_there_is_room(tmp_path, render_cache_dir, capsys):
    outcome = _phase(torture_phases.run_disk_phase, 12, tmp_path, render_cache_dir, capsys)
    assert outcome.problems == []
    figures = outcome.figures
    assert figures["run 1 on the full disk"].startswith("exit 3, 0 paid"), "the state log met the wall first"
    assert figures["run 2 on the full disk"].startswith("exit 3")
    assert figures["downloaded"] == 12 and figures["duplicates (paid twice)"] == 0
    assert figures["paid videos lost"] == 0


@pytest.mark.slow
def test_hostile_answers_phase_pays_once_and_loses_no_paid_video(tmp_path, render_cache_dir, capsys):
    outcome = _phase(torture_phases.run_hostile_phase, 24, tmp_path, render_cache_dir, capsys)
    # 24 jobs: enough submits and reads that each mode meets one even when the machine is loaded.
    assert outcome.figures["hostile answers served"] == len(torture_phases.HOSTILE_ROUND)
    assert outcome.problems == []
    assert outcome.figures["duplicates (paid twice)"] == 0 and outcome.figures["paid videos lost"] == 0


@pytest.mark.slow
def test_moved_state_phase_pays_nothing_again(tmp_path, render_cache_dir, capsys):
    outcome = _phase(torture_phases.run_moved_phase, 12, tmp_path, render_cache_dir, capsys)
    assert outcome.problems == []
    figures = outcome.figures
    assert figures["killed with the state written back"] is True
    assert figures["paid after the state was moved aside"] == 0
    assert figures["duplicates (paid twice)"] == 0 and figures["paid videos lost"] == 0
