"""A spending cap below the batch's total refuses to start (exit 3, nothing paid), unless --partial
asks for the jobs that fit, in manifest order; the same for ``max_cost:`` in the manifest."""

from __future__ import annotations

import pytest
from runner_helpers import assert_batch_intact, make_images, run_cli, write_manifest

from batchgen.budget import check_cap, what_fits
from batchgen.errors import OverBudgetError
from batchgen.lifecycle import JobStatus
from batchgen.state import load

PROMPT = "The {stem} turns slowly"


def _batch(tmp_path, **top):
    """Four images, one 4 s Sora 2 Pro job each ($1.20 apiece: $4.80 in all)."""
    make_images(tmp_path / "img", 4)
    return write_manifest(tmp_path, [{"image": "img/*.png", "prompt": PROMPT, "duration": 4}], **top)


def test_what_fits_is_the_longest_run_in_order_with_what_is_committed():
    price = {"a": 1.0, "b": 2.0, "c": 0.5}.__getitem__
    assert what_fits(["a", "b", "c"], price, 0.0, 3.0) == ["a", "b"]
    assert what_fits(["a", "b", "c"], price, 1.5, 3.0) == ["a"], "the first that passes ends the run"
    assert check_cap(["a", "b"], price, 0.0, 3.0, cap_name="--max-cost", partial=False) == ["a", "b"]
    with pytest.raises(OverBudgetError, match=r"\$0\.50 already committed \+ \$3\.50 for 3 submit\(s\) is "
                                              r"\$1\.00 too much\. 1 job\(s\) fit \(\$1\.00"):
        check_cap(["a", "b", "c"], price, 0.5, 3.0, cap_name="--max-cost", partial=False)
    with pytest.raises(OverBudgetError, match="Not one more job fits"):
        check_cap(["b"], price, 2.0, 3.0, cap_name="--max-cost", partial=True)


def test_a_cap_below_the_total_refuses_to_start_and_pays_nothing(sim, tmp_path, capsys):
    manifest, out = _batch(tmp_path), tmp_path / "out"
    assert run_cli(sim, manifest, out, "--max-cost", "3") == 3
    err = capsys.readouterr().err
    assert ("--max-cost $3.00 is below this run's total: $0.00 already committed + $4.80 for 4 submit(s) is "
            "$1.80 too much. 2 job(s) fit ($2.40, in manifest order): add --partial") in err
    assert sim.ledger()["submissions"] == [] and sim.ledger()["charged_total"] == 0
    assert not (out / "state.jsonl").exists(), "nothing is recorded for a run that never started"


def test_partial_runs_the_jobs_that_fit_in_manifest_order_then_a_higher_cap_finishes(sim, tmp_path, capsys):
    manifest, out = _batch(tmp_path), tmp_path / "out"
    assert run_cli(sim, manifest, out, "--max-cost", "3", "--partial") == 3
    err = capsys.readouterr().err
    assert "--partial: 2 more job(s) wait for a higher cap" in err and "about to pay: $2.40 for 2 submit(s)" in err
    state = load(out / "state.jsonl")
    done = sorted(r.id for r in state.jobs.values() if r.status is JobStatus.DOWNLOADED)
    assert done == ["shot00-4s-720p", "shot01-4s-720p"] and sim.ledger()["charged_total"] == 2.4
    assert run_cli(sim, manifest, out, "--max-cost", "3", "--partial") == 3, "nothing more fits"
    assert "Not one more job fits" in capsys.readouterr().err
    assert run_cli(sim, manifest, out, "--max-cost", "4.8") == 0
    assert_batch_intact(sim, out, 4)


def test_max_cost_in_the_manifest_refuses_the_same_way(sim, tmp_path, capsys):
    manifest, out = _batch(tmp_path, max_cost=2), tmp_path / "out"
    assert run_cli(sim, manifest, out) == 3
    assert f"max_cost: in {manifest} $2.00 is below this run's total" in capsys.readouterr().err
    assert sim.ledger()["submissions"] == []
    assert run_cli(sim, manifest, out, "--partial") == 3
    assert sim.ledger()["charged_total"] == 1.2
