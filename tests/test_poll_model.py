"""The poll schedule against a 1 s poller in virtual time (bench/poll_model.py): the issue's
targets as a regression guard, over many seeds, with no clock and no network."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from poll_model import compare, draw, simulate  # noqa: E402

from batchgen.poll_policy import PollPolicy  # noqa: E402


def test_t20_within_3_percent_of_the_1s_poller_with_at_most_3_reads_per_job():
    batches = [draw(128, 20.0, 0.2, seed) for seed in range(30)]
    got = compare(batches, 32, PollPolicy(min_interval=1.0))
    assert statistics.mean(got["ratio"]) <= 1.03
    assert got["batchgen"]["reads"] <= 3.0
    assert got["poller"]["reads"] > 19  # the model's poller really reads every second


def test_draining_spends_few_reads_on_the_last_wave():
    batches = [draw(128, 20.0, 0.2, seed) for seed in range(10)]
    waves = compare(batches, 32, PollPolicy(min_interval=1.0))["batchgen"]["waves"]
    last_reads, _ = waves[-1]
    assert last_reads < min(reads for reads, _ in waves[:-1]) - 0.5


@pytest.mark.parametrize("t", [180.0, 600.0])
def test_long_generations_are_read_a_few_times_not_every_second(t):
    """Real Sora jobs run for minutes: a 1 s poller reads hundreds of times per job. Blind probing
    of the first wave grows with the time run, so it costs a few reads, not one per 2 s."""
    times = draw(320, t, 0.2, 1)
    sim = simulate(times, 32, PollPolicy(min_interval=1.0))
    assert sum(sim.reads.values()) / sim.n <= 4.5
    assert sim.finished_at <= simulate(times, 32, None).finished_at * 1.07


def test_jobs_waiting_blind_are_not_held_up_when_the_first_jobs_fail():
    """Issue 11: content moderation fails the first 8 jobs after 3 s. Each failed prober hands its
    place to a waiting job at once; before, the first wave slept out max_interval (30 s) blind:
    a first-wave lag of about 7 s and a makespan 6 % over the 1 s poller's."""
    batches = [draw(128, 20.0, 0.2, seed) for seed in range(10)]
    for times in batches:
        times[:8] = [3.0] * 8
    got = compare(batches, 32, PollPolicy(min_interval=1.0), failing=8)
    assert statistics.mean(got["ratio"]) <= 1.04
    _, first_wave_lag = got["batchgen"]["waves"][0]
    assert first_wave_lag <= 5.0


# -- a provider that queues over its concurrency (API.md v2; issue 13) ---------------------
def test_queueing_short_jobs_beat_the_1s_poller_with_few_reads():
    """128 jobs, 8 slots, 5 s +-20 %, --poll-min 1: the primed queue keeps every slot busy whatever
    the read lag, so the makespan nears list scheduling (about 0.91x the poller's)."""
    batches = [draw(128, 5.0, 0.2, seed) for seed in range(10)]
    got = compare(batches, 8, PollPolicy(min_interval=1.0, read_floor=1.0), queue=True)
    assert statistics.mean(got["ratio"]) <= 0.97
    assert got["batchgen"]["reads"] <= 3.0


def test_queueing_20s_jobs_at_the_documented_5s_floor_read_little():
    """128 jobs, 32 slots, 20 s +-20 %, reads at least 5 s apart (the docs' cadence). Reads: at most 3
    per job. Time: the last job's read lag (up to the 5 s floor) is what is left over the ideal; the
    issue's 1.00x is not reached at this floor (about 1.06x), guarded here against getting worse."""
    batches = [draw(128, 20.0, 0.2, seed) for seed in range(10)]
    got = compare(batches, 32, PollPolicy(min_interval=1.0, read_floor=5.0), queue=True)
    assert got["batchgen"]["reads"] <= 3.0
    assert statistics.mean(got["ratio"]) <= 1.08


def test_queueing_3_minute_jobs_take_at_most_4_reads():
    times = draw(320, 180.0, 0.2, 1)
    sim = simulate(times, 32, PollPolicy(min_interval=1.0, read_floor=5.0), queue=True)
    assert sum(sim.reads.values()) / sim.n <= 4.0
    assert sim.finished_at <= simulate(times, 32, None).finished_at * 1.06


def test_a_large_queued_batch_ends_noticed_soon_after_its_last_end():
    """A Gold-shaped batch (many slots, a queue, the 5 s floor): the read grid is moved to just after
    the predicted end (read_grid.py, ReadGrid.aim), so the last end is noticed within about a second,
    not anywhere up to a floor later (3.4 s on average over these seeds with the grid left where the
    drain began it)."""
    lags = []
    for seed in range(8):
        sim = simulate(draw(2000, 20.0, 0.2, seed), 400, PollPolicy(min_interval=1.0, read_floor=5.0), seed,
                       queue=True)
        lags.append(sim.finished_at - sim.last_end)
    assert statistics.mean(lags) <= 1.5 and max(lags) <= 5.0
