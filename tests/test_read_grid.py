"""Reads in step at the end of a batch (read_grid.py): the grid itself, and the schedule using it."""

from __future__ import annotations

import math
import random

import pytest

from batchgen.read_grid import SLACK, ReadGrid
from batchgen.poll_policy import PollPolicy
from batchgen.schedule import PollSchedule
from test_schedule import FakeTime


def test_no_grid_before_draining_begins():
    grid = ReadGrid()
    assert grid.align(100.0, 1.3, 4.0, 5.0) == 4.0 and grid.align(100.0, 7.0, 4.0, 5.0) == 7.0


def test_a_read_moves_to_the_nearest_grid_time_the_floor_allows():
    grid = ReadGrid()
    grid.begin(100.0)  # grid times 100, 105, 110, ...
    assert grid.align(101.0, 1.0, 0.0, 5.0) == 0.0  # planned 102: 100 is nearest, just past: read now
    assert grid.align(101.0, 3.5, 0.0, 5.0) == pytest.approx(4.0)  # planned 104.5: 105
    assert grid.align(101.0, 8.0, 0.0, 5.0) == pytest.approx(9.0)  # planned 109: 110, not 105
    assert grid.align(101.0, 10.0, 0.0, 5.0) == pytest.approx(9.0)  # planned 111: 110 is nearer than 115
    assert grid.align(101.0, 1.0, 8.0, 5.0) == pytest.approx(9.0)  # the floor allows 109 at the soonest: 110
    # A read made at 105 that ended at 105.05: its floor allows 110.05, and 110 counts (the caller
    # sleeps the last 0.05 s); without that slack every job would skip a grid time.
    assert grid.align(105.05, 0.0, 5.0, 5.0) == pytest.approx(4.95)
    # More than SLACK of a step short of the floor: that grid time is too early, the next one is taken.
    late = 5.0 * SLACK + 0.2
    assert grid.align(105.0 + late, 0.0, 5.0, 5.0) == pytest.approx(115.0 - 105.0 - late)
    assert grid.align(100.0, 2.0, 0.0, 0.0) == 2.0  # no floor: no grid


def test_draining_jobs_whose_reads_the_floor_spaces_are_read_at_common_times():
    """20 s jobs read at a 5 s floor: started at scattered times, once the batch drains every read
    lands on one grid, so the last end is noticed at the first grid time after it."""
    t = FakeTime()
    schedule = PollSchedule(PollPolicy(min_interval=1.0, read_floor=5.0), random.Random(3), clock=t.clock)
    for seconds in (17.0, 18.5, 20.0, 21.5, 23.0, 19.0, 22.0):
        schedule.observe("m", 4, seconds)
    watches = [schedule.watch("m", 4, elapsed) for elapsed in (0.3, 1.1, 2.7, 3.9)]
    spread = {round((t.now + w.delay()) % 5.0, 6) for w in watches}
    assert len(spread) > 1, "before draining each job keeps its own phase"
    schedule.drain()
    anchor = t.now
    for w in watches:
        steps = (t.now + w.delay() - anchor) / 5.0
        assert steps == pytest.approx(round(steps))


def test_jobs_whose_window_spaces_reads_wider_than_the_floor_keep_their_own_times():
    """3-minute jobs are read every ~8 s across their window: moving those reads to 5 s multiples
    would put them off the window's times, for nothing (few of them end together)."""
    t = FakeTime()
    schedule = PollSchedule(PollPolicy(min_interval=1.0, read_floor=5.0, jitter=0.0), random.Random(3),
                            clock=t.clock)
    for seconds in (150.0, 165.0, 180.0, 195.0, 210.0, 172.0, 188.0):
        schedule.observe("m", 4, seconds)
    watch = schedule.watch("m", 4, 100.0)
    before = watch.delay()
    schedule.drain()
    t.now += 0.7  # the grid starts here: off the job's own times
    assert watch.delay() == pytest.approx(before - 0.7)


def test_the_read_floor_counts_from_when_a_read_was_sent_not_from_its_late_answer():
    """Hundreds of reads sent at one grid time are answered over a second or so: counted from the
    answer, each job's floor would end just after the next grid time and skip it, a floor later."""
    t = FakeTime()
    schedule = PollSchedule(PollPolicy(min_interval=1.0, read_floor=5.0), random.Random(3), clock=t.clock)
    watch = schedule.watch("m", 4, 30.0)
    watch.asking()
    t.now += 0.8  # a slow answer: still running
    watch.missed()
    assert watch.floor_wait() == pytest.approx(4.2)
    t.now += 1.0
    watch.missed()  # a read with no asking() (as before): the floor counts from its answer
    assert watch.floor_wait() == pytest.approx(5.0)


GENS = [16.0 + 8.0 * i / 199 for i in range(200)]  # measured generation times, 16-24 s


def _next_grid_time(grid: ReadGrid, after: float, step: float = 5.0) -> float:
    return grid.anchor + math.ceil((after - grid.anchor) / step) * step


def test_the_grid_moves_to_just_after_a_sharply_predicted_end():
    """400 jobs started within a second of each other: the latest of their ends falls within a few
    tenths of a second of 105 (start 81 plus 24 s); a grid time is put just after it."""
    grid = ReadGrid()
    grid.begin(90.3)  # grid times ..., 100.3, 105.3: an end at 104.9 would be noticed at 105.3
    jobs = [(80.0 + i / 400, None, GENS) for i in range(400)]
    assert grid.aim(90.0, 5.0, jobs)
    after = _next_grid_time(grid, 104.9)
    assert 104.9 <= after <= 105.2


def test_a_broad_or_unknowable_or_near_end_leaves_the_grid_alone():
    grid = ReadGrid()
    grid.begin(90.3)
    # Three jobs: the latest end lies anywhere in several seconds.
    assert not grid.aim(90.0, 5.0, [(80.0, None, GENS), (82.0, None, GENS), (84.0, None, GENS)])
    # A job read unfinished past every time measured: when it ends says nothing measured.
    many = [(80.0 + i / 400, None, GENS) for i in range(400)]
    assert not grid.aim(90.0, 5.0, many + [(60.0, 85.0, GENS)])
    # The end is predicted less than a step ahead: jobs read since cannot all move in time.
    assert not grid.aim(101.0, 5.0, many)
    assert grid.anchor == 90.3


def test_draining_aims_the_grid_only_once_no_job_waits_in_the_queue():
    """While jobs wait in the provider's queue their starts are guesses: no aim until the last has a slot."""
    t = FakeTime()
    schedule = PollSchedule(PollPolicy(min_interval=1.0, read_floor=5.0, jitter=0.0), random.Random(3),
                            clock=t.clock, capacity=300)
    for seconds in GENS[::20]:
        schedule.observe("m", 4, seconds)
    watches = [schedule.watch("m", 4) for _ in range(301)]
    schedule.drain()
    anchor = schedule.grid.anchor
    t.now += 6.0
    watches[0].delay()
    assert schedule.grid.anchor == anchor  # one job still waits
    t.now += 4.0
    watches[0].close(1.0)  # ended at once: the job that waited had a slot from then on
    watches[1].delay()
    latest = watches[1].started + max(GENS[::20])  # 299 jobs end by then, the one that waited most likely too
    assert schedule.grid.anchor != anchor
    assert latest <= _next_grid_time(schedule.grid, latest) <= latest + 1.0


def test_a_floor_under_a_second_is_not_aimed():
    grid = ReadGrid()
    grid.begin(90.3)
    assert not grid.aim(90.0, 0.05, [(80.0 + i / 400, None, GENS) for i in range(400)])
    assert grid.anchor == 90.3
