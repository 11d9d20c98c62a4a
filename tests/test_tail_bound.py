"""bench/tail_bound.py: the soonest a batch's last end can be noticed at a per-task read floor.
The figure argues what a schedule may promise, so its model is checked where the answer is known."""

from __future__ import annotations

import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from poll_model import draw, list_bound  # noqa: E402
from tail_bound import starts_of, tail_lag  # noqa: E402


def test_starts_follow_the_list_schedule():
    times = [3.0, 1.0, 2.0, 4.0]
    assert starts_of(times, 2) == [0.0, 0.0, 1.0, 3.0]
    assert max(s + g for s, g in zip(starts_of(times, 2), times)) == list_bound(times, 2)


def test_known_generation_times_are_noticed_at_once():
    # No jitter: the informed schedule knows the end exactly and reads right at it, floor or not.
    lag = tail_lag(draw(64, 21.0, 0.0, 1), 16, 5.0, 21.0, 21.0, random.Random(0))  # 21: off a 5 s grid
    assert 0.0 <= lag < 0.06  # one step of the read times it tries


def test_a_lower_floor_notices_sooner_and_no_read_waits_past_the_floor():
    lags = {floor: [tail_lag(draw(128, 20.0, 0.2, seed), 32, floor, 16.0, 24.0, random.Random(seed))
                    for seed in range(12)] for floor in (1.0, 5.0)}
    for floor, got in lags.items():
        assert all(0.0 <= lag <= floor + 1e-9 for lag in got)
    assert statistics.fmean(lags[1.0]) < statistics.fmean(lags[5.0])
