"""The provider's queue as the run models it (server_queue.py): jobs that leave it for a slot get
starts that rise in the order they left, however out of order the ends that freed those slots are
noticed."""

from __future__ import annotations

import random

import pytest

from batchgen.poll_policy import PollPolicy
from batchgen.schedule import PollSchedule, Watch
from test_schedule import FakeTime


def _jobs(capacity: int, count: int) -> tuple[FakeTime, float, PollSchedule, list[Watch]]:
    """``count`` jobs submitted at once to a provider with ``capacity`` slots: the clock, its start,
    the schedule and the jobs' watches."""
    t = FakeTime()
    schedule = PollSchedule(PollPolicy(min_interval=1.0, read_floor=5.0), random.Random(1), clock=t.clock,
                            capacity=capacity)
    return t, t.now, schedule, [schedule.watch("m", 4) for _ in range(count)]


def test_ends_noticed_out_of_order_still_give_the_queue_rising_starts():
    t, start, schedule, (a, b, c, d) = _jobs(2, 4)
    assert c.queued and d.queued
    t.now = start + 20.0
    a.close(12.0)  # noticed first, but ended at +12
    assert c.started == pytest.approx(start + 12.0)
    b.close(10.0)  # ended at +10: the oldest waiting job (c) took that slot, d the one freed at +12
    assert (c.started, d.started) == (pytest.approx(start + 10.0), pytest.approx(start + 12.0))


def test_an_end_noticed_after_the_queue_emptied_moves_a_later_start_back():
    t, start, schedule, (a, b, c) = _jobs(2, 3)
    t.now = start + 20.0
    a.close(12.0)
    assert c.started == pytest.approx(start + 12.0) and not schedule.queue.waiting
    b.close(10.0)  # nobody waits now, but c did at +10: it started then
    assert c.started == pytest.approx(start + 10.0)
    b2 = schedule.watch("m", 4)  # a slot is free: starts at once
    t.now += 1.0
    b2.close(0.5)  # an end later than c's start moves nothing
    assert c.started == pytest.approx(start + 10.0)


def test_a_job_given_up_frees_its_slot_without_moving_starts_back():
    t, start, schedule, (a, b, c) = _jobs(1, 3)
    t.now = start + 20.0
    a.close(15.0)
    assert b.started == pytest.approx(start + 15.0)
    t.now = start + 30.0
    b.close(None)  # given up: when it ended is unknown, so c is taken to start now
    assert c.started == pytest.approx(start + 30.0) and b.started == pytest.approx(start + 15.0)


def test_whether_reported_times_count_the_wait_is_learned_once_and_kept():
    """The simulator's reported time counts a job's wait in the queue (upstream: undocumented). A job
    that waited 15 s says so beyond doubt; one that waited 1 s does not, and was taken alone to have
    ended a second after it did, which handed the next job a start a second late."""
    t, start, schedule, (a, b, c, d) = _jobs(1, 4)
    t.now = start + 16.0
    a.close(15.0)  # b starts at +15
    t.now = start + 40.0
    b.close(35.0)  # counted from its start it would end at +50, after it was noticed: the wait counts
    assert schedule.queue.wait_counted is True
    assert c.started == pytest.approx(start + 35.0)
    t.now = start + 41.0
    c.close(35.5)
    assert d.started == pytest.approx(start + 35.5)
    e, f = schedule.watch("m", 4), schedule.watch("m", 4)  # submitted at +41, both wait
    t.now = start + 50.0
    d.close(48.0)
    assert e.started == pytest.approx(start + 48.0)
    t.now = start + 60.0
    e.close(17.0)  # 7 s of wait and 10 of work, ended at +58; alone, that 7 s would be counted twice
    assert f.started == pytest.approx(start + 58.0)


def test_reported_times_without_the_wait_are_learned_from_a_read_that_found_the_job_running():
    t, start, schedule, (a, b, c) = _jobs(1, 3)
    t.now = start + 21.0
    a.close(20.0)  # b starts at +20
    t.now = start + 35.0
    b.asking()
    b.missed()  # running at +35
    t.now = start + 46.0
    b.close(25.0)  # from its submit it would have ended at +25, before it was seen running
    assert schedule.queue.wait_counted is False
    assert c.started == pytest.approx(start + 45.0)
