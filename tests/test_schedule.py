"""Timing decisions tested alone: injected clocks, sleeps and RNGs, no network."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import re

import pytest

from batchgen.pacing import Pacer, Slots, TokenBucket
from batchgen.poll_policy import PollPolicy
from batchgen.schedule import PollSchedule


class FakeTime:
    """A clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class VirtualTime:
    """A clock and a sleep for many tasks at once: the clock jumps to the earliest sleeper's wake-up
    only when every task waits, so a sleep cut short (by PollSchedule.nap) costs no virtual time."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), wake))
        await wake

    async def run(self, *coros):
        tasks = [asyncio.ensure_future(coro) for coro in coros]
        while True:
            for _ in range(50):  # let every task run until it waits
                await asyncio.sleep(0)
            if all(task.done() for task in tasks):
                return [task.result() for task in tasks]
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)  # a nap cut short cancelled its sleep
            assert self._sleepers, "every task waits for something other than time"
            when, _, wake = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            wake.set_result(None)


# -- PollSchedule ---------------------------------------------------------------------------
def _reads_for(schedule: PollSchedule, t: FakeTime, finish: float, elapsed: float = 0.0) -> tuple[int, float]:
    """Follow one job's watch until a read sees it finished: (reads, seconds late)."""
    start = t.now - elapsed
    watch = schedule.watch("m", 4, elapsed)
    reads = 0
    while True:
        t.now += watch.delay()
        reads += 1
        if t.now - start >= finish:
            watch.close()
            return reads, t.now - start - finish
        watch.missed()


def test_schedule_learns_the_window_and_reads_few_times_near_the_finish():
    t = FakeTime()
    rng = random.Random(3)
    schedule = PollSchedule(PollPolicy(min_interval=1.0), rng, clock=t.clock)
    assert schedule.window("m", 4) is None
    for _ in range(40):
        schedule.observe("m", 4, rng.uniform(16, 24))
    low, high = schedule.window("m", 4)
    assert 17.5 <= low <= 20 and 22 <= high <= 24  # first read at about the 35th percentile
    reads, lags = [], []
    for _ in range(2000):
        r, lag = _reads_for(schedule, t, rng.uniform(16, 24))
        reads.append(r)
        lags.append(lag)
    # The goal: at most 3 reads per job, and close to the finish. The fastest third
    # finish before the first read and wait for it (the window's low end minus ~16 s at most).
    assert sum(reads) / len(reads) <= 2.5
    assert sum(lags) / len(lags) <= 1.5
    assert max(lags) <= 4.5


def test_a_window_narrower_than_one_read_interval_reaches_back_for_a_second_read():
    """T ~ 2.6 s +-30 %: the 35-90 % window is under 1 s wide, so one read would sit at its end and
    the fastest jobs would wait ~1.5 s; with the whole spread over 1 s, two reads 1 s apart fit."""
    t = FakeTime()
    rng = random.Random(11)
    schedule = PollSchedule(PollPolicy(min_interval=1.0, jitter=0.0), rng, clock=t.clock)
    for _ in range(200):
        schedule.observe("m", 8, 2.6 * (1 + rng.uniform(-0.3, 0.3)))
    low, high = schedule.window("m", 8)
    assert high - low == pytest.approx(1.0)
    watch = schedule.watch("m", 8)
    first = watch.delay()
    assert first == pytest.approx(low)
    # A tight spread keeps its single read at the end.
    tight = PollSchedule(PollPolicy(min_interval=1.0, jitter=0.0), rng, clock=t.clock)
    for _ in range(200):
        tight.observe("m", 4, 1.0 * (1 + rng.uniform(-0.2, 0.2)))
    low, high = tight.window("m", 4)
    assert high - low < 0.5
    assert tight.watch("m", 4).delay() == pytest.approx(high)


def test_only_reads_count_as_evidence_that_a_job_is_still_running():
    """500 jobs in flight, not read for 1.5 s, are not "longer than 1.5 s": most of them are done
    and wait for their read. Counting them as running pushed the window late, which made reads
    later still (the big scenario's window drifted from 1.16 s to 1.6 s). A read that finds a job
    unfinished is evidence, and it does count."""
    t = FakeTime()
    rng = random.Random(12)
    schedule = PollSchedule(PollPolicy(min_interval=1.0), rng, clock=t.clock)
    for _ in range(256):
        schedule.observe("m", 4, rng.uniform(0.8, 1.2))
    unread = [schedule.watch("m", 4, elapsed=1.5) for _ in range(500)]
    low, high = schedule.window("m", 4)
    assert 0.9 <= low <= 1.0 and 1.1 <= high <= 1.2
    for watch in unread[:300]:
        watch.missed()  # read just now (1.5 s in), still running: these are slow
    t.now += 1.0
    low, high = schedule.window("m", 4)
    assert high >= 1.4


def test_first_read_waits_for_the_window_minus_time_already_spent():
    t = FakeTime()
    schedule = PollSchedule(PollPolicy(jitter=0.0, min_interval=1.0), random.Random(4), clock=t.clock)
    for s in (20.0, 20.0, 20.0, 20.0, 20.0):
        schedule.observe("m", 4, s)
    assert schedule.window("m", 4) == (20.0, 20.0)
    assert schedule.watch("m", 4).delay() == pytest.approx(20.0)
    assert schedule.watch("m", 4, elapsed=15.0).delay() == pytest.approx(5.0)


def test_unseen_duration_is_estimated_from_seconds_per_second_of_video():
    schedule = PollSchedule(PollPolicy(spread=0.2), random.Random(5))
    schedule.observe("m", 4, 8.0)
    assert schedule.expected("m", 8) == pytest.approx(16.0)
    low, high = schedule.window("m", 8)
    assert (low, high) == (pytest.approx(12.8), pytest.approx(19.2))


def test_a_prior_gives_a_window_before_anything_finished():
    schedule = PollSchedule(PollPolicy(prior=10.0, spread=0.1), random.Random(6))
    assert schedule.window("m", 4) == (pytest.approx(9.0), pytest.approx(11.0))


def test_blind_phase_lets_only_a_few_jobs_probe_and_frees_their_place():
    policy = PollPolicy(probers=2, min_interval=1.0, probe_cap=2.0, max_interval=30.0, jitter=0.0)
    schedule = PollSchedule(policy, random.Random(7))
    watches = [schedule.watch("m", 4) for _ in range(5)]
    delays = [w.delay() for w in watches]
    assert delays == [1.0, 1.0, 30.0, 30.0, 30.0]
    for _ in range(6):
        watches[0].missed()
    assert watches[0].delay() == 2.0  # growth is capped while blind
    watches[0].close()  # its job failed: nothing learned
    assert watches[2].handed.is_set() and watches[2].delay() == 1.0  # the place goes to a waiting job
    assert schedule.watch("m", 4).delay() == 30.0
    for watch in watches[1:]:
        watch.close()
    assert schedule.watch("m", 4).delay() == 1.0  # with nobody waiting, the next job to ask takes it


async def _job_failing_at_read(schedule: PollSchedule, t: VirtualTime, fail_at: int, after: float = 0.0):
    """One job submitted ``after`` s in, read on the schedule until its ``fail_at``-th read finds it
    failed: the times of its reads."""
    await t.sleep(after)
    watch = schedule.watch("m", 4)
    reads = []
    while True:
        await schedule.until_read(watch, t.sleep)
        reads.append(t.now)
        if len(reads) == fail_at:
            watch.close()  # failed: nothing learned
            return reads
        watch.missed()


def test_a_waiting_job_takes_a_failed_probers_place_at_once():
    """Issue 11: all three jobs fail at their first read. The two probers read after 1 s; the third
    waited blind and read only at max_interval (30 s), as a freed place was retaken only by a read."""
    t = VirtualTime()
    policy = PollPolicy(probers=2, min_interval=1.0, max_interval=30.0, jitter=0.0)
    schedule = PollSchedule(policy, random.Random(14), clock=t.clock)
    reads = asyncio.run(t.run(*(_job_failing_at_read(schedule, t, 1) for _ in range(3))))
    assert reads == [[1.0], [1.0], [1.0]]


def test_a_handed_place_goes_to_the_longest_waiter_and_it_keeps_probing():
    """Two probers fail at 1 s: the two oldest of four waiters probe from then on (at once, then
    every 1 s), the other two wait blind until something is learned (3.5 s)."""
    t = VirtualTime()
    policy = PollPolicy(probers=2, min_interval=1.0, max_interval=30.0, jitter=0.0, growth=1.0)
    schedule = PollSchedule(policy, random.Random(15), clock=t.clock)

    async def learning() -> None:
        await t.sleep(3.5)
        schedule.observe("m", 4, 3.5)  # a job of this kind finished

    *reads, _ = asyncio.run(t.run(
        _job_failing_at_read(schedule, t, 1), _job_failing_at_read(schedule, t, 1),
        *(_job_failing_at_read(schedule, t, 4, after) for after in (0.1, 0.2)),
        *(_job_failing_at_read(schedule, t, 1, after) for after in (0.3, 0.4)), learning()))
    assert reads[:2] == [[1.0], [1.0]]
    assert reads[2:4] == [[1.0, 2.0, 3.0, 3.5]] * 2
    assert reads[4:] == [[3.5], [3.5]]


async def _job_read_until(schedule: PollSchedule, t: VirtualTime, model: str, gen: float | None, after: float):
    """A job submitted ``after`` s in that ends ``gen`` s later (None: fails at its first read),
    read on the schedule: (seconds from submit to first read, gaps between reads)."""
    await t.sleep(after)
    started = t.now
    watch = schedule.watch(model, 4)
    reads = []
    while True:
        await schedule.until_read(watch, t.sleep)
        reads.append(t.now)
        if gen is None or t.now - started >= gen:
            if gen is not None:
                schedule.observe(model, 4, gen)
            watch.close()
            return reads[0] - started, [b - a for a, b in zip(reads, reads[1:])]
        watch.missed()


def test_reads_never_come_sooner_than_the_models_floor():
    """Blind probing, a wake when something is learned or a place is handed, the window and past
    it: no read of a video job comes within 5 s of its submit or of its last read. Image jobs
    keep the default floor (0.5 s) and are read sooner."""
    t = VirtualTime()
    rng = random.Random(16)
    policy = PollPolicy(min_interval=1.0, read_floor=0.5, read_floors={"video": 5.0}, jitter=0.1)
    schedule = PollSchedule(policy, rng, clock=t.clock)
    jobs = [_job_read_until(schedule, t, model, None if i < 2 else rng.uniform(3.0, 40.0), i * 0.3)
            for model in ("video", "image") for i in range(12)]
    got = asyncio.run(t.run(*jobs))
    video, image = got[:12], got[12:]
    assert all(first >= 5.0 - 1e-9 and all(gap >= 5.0 - 1e-9 for gap in gaps) for first, gaps in video)
    assert all(first >= 0.5 - 1e-9 and all(gap >= 0.5 - 1e-9 for gap in gaps) for first, gaps in image)
    assert min(first for first, _ in image) < 5.0 and min(min(gaps, default=9) for _, gaps in image) < 5.0


def test_the_floor_holds_for_blind_probes_and_within_the_window():
    t = FakeTime()
    policy = PollPolicy(min_interval=1.0, jitter=0.0, read_floors={"video": 5.0})
    schedule = PollSchedule(policy, random.Random(17), clock=t.clock)
    probe = schedule.watch("video", 4)
    assert probe.delay() == 5.0  # a blind probe would read after min_interval
    for _ in range(5):
        schedule.observe("video", 4, 10.0)
        schedule.observe("other", 4, 10.0)
    late = schedule.watch("video", 4, elapsed=9.0)
    assert late.delay() == pytest.approx(1.0)  # 9 s since submit: the window's read at 10 s is due
    t.now += 1.0
    late.missed()
    assert late.delay() == pytest.approx(5.0)  # past the window the plan says 1 s, the floor 5
    assert schedule.watch("other", 4, elapsed=9.0).delay() == pytest.approx(1.0)  # no floor for it
    t.now += 2.0
    assert late.delay() == pytest.approx(3.0)


@pytest.mark.parametrize(("fields", "named"), [
    ({"min_interval": 0}, "min_interval"), ({"min_interval": -1.0}, "min_interval"),
    ({"min_interval": float("nan")}, "min_interval"), ({"max_interval": float("inf")}, "max_interval"),
    ({"min_interval": 5.0, "max_interval": 2.0}, "max_interval"), ({"prior": 0.0}, "prior"),
    ({"growth": 0.5}, "growth"), ({"jitter": 1.0}, "jitter"), ({"probers": 0}, "probers"),
    ({"low_quantile": 0.95}, "low_quantile"), ({"floor_quantile": 0.0}, "floor_quantile"),
    ({"read_floor": -1.0}, "read_floor"), ({"read_floors": {"video": float("nan")}}, "read_floors['video']"),
    ({"recheck": 0.0}, "recheck"), ({"probe_cap": -2.0}, "probe_cap"),
])
def test_poll_policy_refuses_nonsense_naming_the_field(fields, named):
    """Issue 14: --poll-min 0 used to overflow deep in a run, after jobs were paid."""
    with pytest.raises(ValueError, match=re.escape(f"PollPolicy.{named} must be")):
        PollPolicy(**fields)


def test_poll_policy_floors_are_data_that_cannot_change_behind_its_back():
    floors = {"video": 5.0}
    policy = PollPolicy(read_floor=1.0, read_floors=floors)
    floors["video"] = 0.0
    assert policy.floor("video") == 5.0 and policy.floor("image") == 1.0
    assert PollPolicy().floor("video") == 0.0  # no floor unless one is given: today's schedule
    assert PollPolicy(read_floors={"video": 5.0}) == PollPolicy(read_floors={"video": 5.0})


def test_draining_puts_off_reads_that_cannot_move_the_end_of_the_batch():
    t = FakeTime()
    schedule = PollSchedule(PollPolicy(jitter=0.0, min_interval=1.0), random.Random(10), clock=t.clock)
    for seconds in (16.0, 18.0, 20.0, 22.0, 24.0):
        schedule.observe("m", 4, seconds)
    early = schedule.watch("m", 4)
    t.now += 8.0
    late = schedule.watch("m", 4)
    assert schedule.horizon() is None  # jobs still wait for slots: every early read frees one
    normal = early.delay()
    assert normal < 16.0
    schedule.drain()
    # The late job cannot end before 8 + 16 s (the fastest seen): reading the early one sooner is waste.
    assert schedule.horizon() == pytest.approx(t.now + 16.0)
    assert early.delay() == pytest.approx(16.0)
    assert late.delay() == pytest.approx(normal + 8.0)  # the job that may end last keeps its own reads
    late.close()
    t.now += 1.0  # past the cache
    assert early.delay() == pytest.approx(normal - 1.0)  # alone now: it sets the end itself


def test_nap_wakes_early_when_the_batch_learns_something():
    async def scenario() -> float:
        schedule = PollSchedule(PollPolicy(), random.Random(8))
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, schedule.observe, "m", 4, 3.0)
        started = loop.time()
        await schedule.nap(30.0)
        return loop.time() - started

    assert asyncio.run(scenario()) < 5.0


def test_nap_sleeps_the_full_time_once_something_is_known():
    t = FakeTime()

    async def scenario() -> None:
        schedule = PollSchedule(PollPolicy(), random.Random(9))
        schedule.observe("m", 4, 3.0)
        await schedule.nap(12.0, t.sleep)

    asyncio.run(scenario())
    assert t.slept == [12.0]


@pytest.mark.parametrize("event", ["learned", "handed", "delivered"])
def test_a_nap_wakes_on_each_of_its_events_without_starting_a_task(event):
    """50,000 naps in a 10,000-job batch: each waits on one future, not a task per event and sleep."""
    async def scenario() -> float:
        schedule = PollSchedule(PollPolicy(), random.Random(8))
        watch = schedule.watch("m", 4)
        napper = asyncio.current_task()
        tasks = []

        def fire() -> None:
            tasks.extend(asyncio.all_tasks())
            if event == "learned":
                schedule.observe("m", 4, 3.0)
            else:
                getattr(watch, event).set()

        loop = asyncio.get_running_loop()
        loop.call_later(0.05, fire)
        started = loop.time()
        await schedule.nap(30.0, watch=watch)
        assert tasks == [napper]
        return loop.time() - started

    assert asyncio.run(scenario()) < 5.0


def test_a_nap_times_out_through_the_injected_sleep_and_cancels_it_when_woken():
    t = FakeTime()
    cancelled = []

    async def endless(seconds: float) -> None:
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            cancelled.append(seconds)
            raise

    async def scenario() -> None:
        schedule = PollSchedule(PollPolicy(), random.Random(9))
        watch = schedule.watch("m", 4)
        await schedule.nap(12.0, t.sleep, watch)  # nothing learned yet: it waits on three flags
        assert t.slept == [12.0]
        asyncio.get_running_loop().call_soon(watch.delivered.set)
        await schedule.nap(7.0, endless, watch)
        await asyncio.sleep(0)
        assert cancelled == [7.0]
        assert not watch.delivered.waiters and not watch.handed.waiters, "a woken nap leaves no waiter behind"

    asyncio.run(scenario())


# -- Slots ----------------------------------------------------------------------------------
def test_slots_shrink_on_429_and_probe_back_up_ever_more_rarely():
    async def scenario() -> None:
        slots = Slots(10, probe_every=2)
        for _ in range(7):
            await slots.acquire()
        slots.shrink()  # the 7th submit was refused: 6 run at the provider
        assert slots.target == 6 and slots.probe_every == 4
        await slots.release()
        for _ in range(3):
            await slots.accepted()
        assert slots.target == 6
        await slots.accepted()
        assert slots.target == 7
        assert not slots.shrink()  # 6 run, and 6 were accepted before: a sporadic 429, not the cap
        assert slots.target == 7 and slots.probe_every == 4
        await slots.acquire()  # the 7th, probing above what was proven, is refused: that is the cap
        assert slots.shrink()
        assert slots.target == 6 and slots.probe_every == 8
        for _ in range(20):
            slots.shrink()
        assert slots.probe_every == 64 and slots.target == 6

    asyncio.run(scenario())


def test_slots_block_at_target_and_wake_on_release():
    async def scenario() -> list[str]:
        slots = Slots(2)
        order = []
        await slots.acquire()
        await slots.acquire()

        async def third() -> None:
            await slots.acquire()
            order.append("third")

        task = asyncio.ensure_future(third())
        await asyncio.sleep(0)
        order.append("released")
        await slots.release()
        await task
        return order

    assert asyncio.run(scenario()) == ["released", "third"]


def test_resumed_jobs_count_even_over_target():
    slots = Slots(2)
    for _ in range(3):
        slots.take()
    assert slots.in_flight == 3


# -- Pacer ----------------------------------------------------------------------------------
def test_pacer_sends_the_first_wave_at_the_floor_and_after_a_pause_ramps_up():
    t = FakeTime()

    async def scenario() -> tuple[list[float], list[float]]:
        pacer = Pacer(0.2, floor=0.01, ramp=0.5, clock=t.clock, sleep=t.sleep)
        first, after = [], []
        for _ in range(4):
            await pacer.wait()
            first.append(t.now)
        pacer.pause(1.0)
        for _ in range(8):
            await pacer.wait()
            after.append(t.now)
        return first, after

    first, after = asyncio.run(scenario())
    assert [b - a for a, b in zip(first, first[1:])] == [pytest.approx(0.01)] * 3  # nothing refused yet
    gaps = [b - a for a, b in zip(after, after[1:])]
    assert gaps[0] == pytest.approx(0.2)
    assert gaps[1] == pytest.approx(0.1)
    assert gaps[-1] == pytest.approx(0.01)
    assert after[-1] - after[0] < 0.5  # 8 submits in well under 8 x 0.2 s


def test_pacer_holds_every_submit_during_a_pause_and_starts_gently_again():
    t = FakeTime()

    async def scenario() -> list[float]:
        pacer = Pacer(0.2, floor=0.0, ramp=0.5, clock=t.clock, sleep=t.sleep)
        for _ in range(5):
            await pacer.wait()
        pacer.pause(3.0)
        paused_at = t.now
        times = []
        for _ in range(3):
            await pacer.wait()
            times.append(t.now - paused_at)
        return times

    times = asyncio.run(scenario())
    assert times[0] == pytest.approx(3.0)
    assert times[1] - times[0] == pytest.approx(0.2)  # back to the gentle interval after a 429
    assert times[2] - times[1] == pytest.approx(0.1)


def test_a_read_put_off_to_the_horizon_does_not_age_its_back_off():
    """Re-planning a postponed read every few seconds must not count as unfinished reads: after the
    horizon, a job past its window is read again about a step later, not 30 s later."""
    t = FakeTime()
    schedule = PollSchedule(PollPolicy(jitter=0.0, min_interval=1.0), random.Random(13), clock=t.clock)
    for seconds in (10.0, 11.0, 12.0, 13.0, 14.0):
        schedule.observe("m", 4, seconds)
    slow = schedule.watch("m", 4)
    t.now += 20.0  # past its window, never read
    schedule.watch("m", 4, elapsed=0.0)  # a job started now: the batch cannot end for 10 s
    schedule.drain()
    horizon = t.now + 10.0
    for _ in range(5):
        assert slow.delay() == pytest.approx(horizon - t.now)  # put off, re-planned
        t.now += 2.0
        schedule._horizon = None  # the horizon's 0.25 s cache
    assert t.now == pytest.approx(horizon)
    slow.missed()  # the read at the horizon found it still running
    assert slow.delay() <= 2.0


# -- TokenBucket ----------------------------------------------------------------------------
def _acquired(bucket: TokenBucket, t: FakeTime, n: int) -> list[float]:
    """Times of ``n`` acquires in a row, from now."""
    async def scenario() -> list[float]:
        start, times = t.now, []
        for _ in range(n):
            await bucket.acquire()
            times.append(t.now - start)
        return times
    return asyncio.run(scenario())


def test_token_bucket_spaces_submits_by_the_per_minute_limit():
    t = FakeTime()
    bucket = TokenBucket(6, clock=t.clock, sleep=t.sleep)
    assert _acquired(bucket, t, 4) == [0.0, pytest.approx(10.0), pytest.approx(20.0), pytest.approx(30.0)]
    t.now += 600.0  # idle for ten minutes: still only ``burst`` (1) saved
    assert _acquired(bucket, t, 2) == [0.0, pytest.approx(10.0)]


def test_token_bucket_burst_goes_out_at_once_then_paces():
    t = FakeTime()
    bucket = TokenBucket(6, burst=3, clock=t.clock, sleep=t.sleep)
    assert _acquired(bucket, t, 5) == [0.0, 0.0, 0.0, pytest.approx(10.0), pytest.approx(20.0)]
    t.now += 15.0  # one and a half tokens back
    assert _acquired(bucket, t, 3) == [0.0, pytest.approx(5.0), pytest.approx(15.0)]


def test_a_429_without_retry_after_waits_one_window_every_time_not_a_growing_backoff():
    t = FakeTime()
    bucket = TokenBucket(60, burst=10, clock=t.clock, sleep=t.sleep)
    _acquired(bucket, t, 3)
    waits = []
    for _ in range(4):  # refused again and again
        for _ in range(5):
            bucket.pause_until_window()  # five submits in flight refused at once: still one window
        waits.append(_acquired(bucket, t, 1)[0])
    assert waits == [pytest.approx(60.0)] * 4
    # Saved tokens were void, but the window refilled the bucket: the rest of its burst goes at once.
    assert _acquired(bucket, t, 10)[-2:] == [0.0, pytest.approx(1.0)]


def test_a_429_with_retry_after_pauses_that_long_and_never_shortens_a_pause():
    t = FakeTime()
    bucket = TokenBucket(60, burst=5, clock=t.clock, sleep=t.sleep)
    bucket.pause(5.0)
    assert _acquired(bucket, t, 6) == [pytest.approx(5.0)] * 5 + [pytest.approx(6.0)]
    bucket.pause(10.0)
    bucket.pause(2.0)
    assert _acquired(bucket, t, 1) == [pytest.approx(10.0)]


def test_token_bucket_serves_concurrent_submitters_in_turn_and_a_pause_holds_them_all():
    t = VirtualTime()
    bucket = TokenBucket(12, clock=t.clock, sleep=t.sleep)
    sent = []

    async def submitter(name: str) -> None:
        for _ in range(3):
            await bucket.acquire()
            sent.append((t.now, name))
            if t.now == 10.0:
                bucket.pause_until_window()  # the third submit was refused without Retry-After

    asyncio.run(t.run(*(submitter(name) for name in "abc")))
    times = [when for when, _ in sent]
    assert times == [0.0, 5.0, 10.0] + [pytest.approx(70.0 + 5.0 * i) for i in range(6)]
    # In turn: each waits behind those already waiting ("a" took its second before "b" queued).
    assert "".join(name for _, name in sent) == "aabcabcbc"


@pytest.mark.parametrize(("per_minute", "burst", "named"), [
    (0, 1, "per_minute"), (-5, 1, "per_minute"), (float("nan"), 1, "per_minute"), (float("inf"), 1, "per_minute"),
    (60, 0.5, "burst"), (60, float("inf"), "burst"),
])
def test_token_bucket_refuses_nonsense_naming_the_field(per_minute, burst, named):
    with pytest.raises(ValueError, match=f"TokenBucket.{named} must be"):
        TokenBucket(per_minute, burst)


def test_draining_reads_every_job_on_time_while_more_run_than_one_round_of_downloads():
    """Reads put off to the horizon would bring every video in at once at the end, to be downloaded
    in rounds after it: with more jobs running than download slots, each job is read on its window."""
    t = FakeTime()
    schedule = PollSchedule(PollPolicy(jitter=0.0, min_interval=1.0), random.Random(10), clock=t.clock, downloads=1)
    for seconds in (16.0, 18.0, 20.0, 22.0, 24.0):
        schedule.observe("m", 4, seconds)
    early = schedule.watch("m", 4)
    t.now += 8.0
    late = schedule.watch("m", 4)
    normal = early.delay()
    schedule.drain()
    assert schedule.horizon() is None  # two jobs, one download slot
    assert early.delay() == pytest.approx(normal)
    late.close()
    t.now += 1.0  # past the horizon's cache
    assert schedule.horizon() is not None  # one job left: its download fits


def test_draining_puts_off_no_read_while_a_job_is_thought_to_wait_in_the_providers_queue():
    """A queued job is thought started only when a read notices a job ahead of it end: putting
    that read off would start it late in the run's eyes, and put its own reads off further."""
    t = FakeTime()
    schedule = PollSchedule(PollPolicy(jitter=0.0, min_interval=1.0), random.Random(10), clock=t.clock, capacity=1)
    for seconds in (16.0, 18.0, 20.0, 22.0, 24.0):
        schedule.observe("m", 4, seconds)
    first, second = schedule.watch("m", 4), schedule.watch("m", 4)
    assert second.queued
    schedule.drain()
    assert schedule.horizon() is None
    t.now += 20.0
    first.close(took=20.0)
    t.now += 1.0  # past the horizon's cache
    # Its start (20 s in) is an estimate: the horizon counts from its submit, a bound that holds.
    assert not second.queued and second.started == pytest.approx(second.submitted + 20.0)
    assert schedule.horizon() == pytest.approx(second.submitted + 16.0)
