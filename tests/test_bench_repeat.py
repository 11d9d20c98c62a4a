"""bench/perf.py --repeat: the table of medians and the ranges under it, from rows as run_scenario makes them."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from perf import _format_row, medians, spread  # noqa: E402


def _row(scenario, runner, cpu, ratio, vs=None, rss=140.0):
    return {"scenario": scenario, "runner": runner, "runs": 1, "n": 10000, "done": 10000, "c": 2000, "bound": 112.9,
            "makespan": 112.9 * ratio, "ratio": ratio, "vs": vs, "reads_per_job": 1.4, "submits_per_job": 1.0,
            "deliveries": 0, "margin": 2000, "r429": 0, "r5xx": 0, "paid_twice": 0, "cpu_ms_per_event": cpu,
            "verify_ms_per_video": 1.7, "rss_mb": rss, "sim_cpu": 17.0, "max_concurrent": 2000}


def test_medians_are_per_scenario_and_runner_and_each_cell_is_a_measured_figure():
    rows = [_row("gold", "batchgen", cpu, ratio) for cpu, ratio in ((1.12, 1.016), (0.82, 1.013), (0.88, 1.015),
                                                                    (0.85, 1.020))]
    rows += [_row("q20", "batchgen", 1.4, 1.002, vs=0.99), _row("q20", "baseline", 1.0, 1.01)]
    gold, q20, base = medians(rows)
    assert (gold["cpu_ms_per_event"], gold["ratio"], gold["repeats"]) == (0.85, 1.015, 4)  # lower middle of four
    assert gold["n"] == 10000 and isinstance(gold["n"], int) and gold["vs"] is None
    assert (q20["runner"], q20["vs"], base["runner"], base["repeats"]) == ("batchgen", 0.99, "baseline", 1)
    assert "| 0.85 |" in _format_row(gold)
    line = spread(rows, gold)
    assert line.startswith("- gold batchgen, 4 runs: runner CPU ms/job event 0.82-1.12; makespan vs bound 1.013-1.020")
    assert "vs compared" not in line and "peak RSS MB 140-140" in line
