"""The poll schedule in virtual time: batchgen's real PollSchedule against a fixed 1 s poller.

    .venv/bin/python bench/poll_model.py                       # t20 shape, 40 seeds
    .venv/bin/python bench/poll_model.py --n 2000 --c 64 --t 2.3 --jitter 0.3 --seeds 10
    .venv/bin/python bench/poll_model.py --fail 8 --fail-after 3 --floor 5   # moderation, docs' cadence

A discrete-event model of C provider slots and N jobs whose generation times are drawn uniformly
(T +- jitter) in submit order, as the simulator draws them. batchgen's jobs are read when its
``PollSchedule`` says (the same code the runner runs, on a virtual clock); the baseline reads every
second. No HTTP, no rendering: it isolates what the schedule costs in makespan and reads, so a
change to the schedule can be judged over many seeds in seconds before bench/perf.py confirms it
on the simulator. Latencies of a submit and a read are fixed small constants. ``--fail K`` makes
the first K jobs fail (as content moderation fails a row's jobs) after ``--fail-after`` seconds:
a failed job teaches the schedule nothing.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batchgen.pacing import QueueMargin  # noqa: E402
from batchgen.poll_policy import PollPolicy  # noqa: E402
from batchgen.schedule import PollSchedule  # noqa: E402

MODEL = "model"
SUBMIT_LATENCY = 0.01
READ_LATENCY = 0.005
#: Downloads at once, as bench/perf.py runs batchgen (--download-concurrency 32): the schedule puts reads
#: off to the horizon only when the jobs left fit one round of them.
DOWNLOADS = 32


class _Sim:
    """Slots, a virtual clock and a heap of wake-ups; each job is a generator of waits.

    ``queue``: the provider queues over its C slots (API.md v2), starting queued jobs oldest first
    the moment a slot frees; batchgen then keeps C plus its QueueMargin in flight. Otherwise a job
    starts at submit and the client holds one of C slots until a read sees it end."""

    def __init__(self, n: int, c: int, times: list[float], failing: int = 0, queue: bool = False):
        self.now = 0.0
        self.n, self.c = n, c
        self.queue = queue
        self.free = [0.0] * c  # when each provider slot frees (a heap)
        self.margin: QueueMargin | None = None
        self.in_flight = 0
        self.times = times
        self.failing = failing
        self.watches: dict[int, object] = {}
        self.heap: list[tuple[float, int, int]] = []
        self.seq = 0
        self.jobs: dict[int, object] = {}
        self.token: dict[int, int] = {}
        self.reads: dict[int, int] = {}
        self.lags: dict[int, float] = {}
        self.finished_at = 0.0
        #: When the last job ended at the provider (finished_at is when the runner noticed).
        self.last_end = 0.0
        self.next_job = 0
        self.submitted = 0
        self.blind: set[int] = set()
        self.learned = False
        self.draining = False

    def at(self, when: float, job: int) -> None:
        self.seq += 1
        self.token[job] = self.seq
        heapq.heappush(self.heap, (when, self.seq, job))

    def start(self, job: int, body) -> None:
        self.jobs[job] = body
        self.at(self.now, job)

    def limit(self) -> int:
        return self.c + (self.margin.value if self.margin else 0)

    def start_at(self, gen: float) -> float:
        """When a job submitted now starts generating: FIFO over the provider's slots."""
        start = max(self.now, self.free[0])
        heapq.heapreplace(self.free, start + gen)
        return start

    def run(self, spawn) -> None:
        # The first spawn creates the margin (see _batchgen): the limit is asked after each one.
        while self.next_job < self.n and self.in_flight < self.limit():
            self._spawn(spawn)
        while self.heap:
            when, seq, job = heapq.heappop(self.heap)
            if self.token.get(job) != seq:
                continue  # superseded wake-up (a blind nap woken early)
            self.now = when
            self.blind.discard(job)
            try:
                wait = next(self.jobs[job])
            except StopIteration:
                del self.jobs[job]
                self.in_flight -= 1
                while self.next_job < self.n and self.in_flight < self.limit():
                    self._spawn(spawn)
                continue
            kind, seconds = wait
            if kind == "nap" and not self.learned:
                self.blind.add(job)
            self.at(self.now + max(0.0, seconds), job)

    def _spawn(self, spawn) -> None:
        job = self.next_job
        self.next_job += 1
        self.in_flight += 1
        self.draining = self.next_job == self.n
        self.start(job, spawn(self, job, self.times[job]))

    def done(self, job: int, started: float, gen: float) -> None:
        self.lags[job] = self.now - started - gen
        self.last_end = max(self.last_end, started + gen)
        self.finished_at = max(self.finished_at, self.now)

    def wake_handed(self) -> None:
        """Wake the blind jobs a failed prober handed its place to, as PollSchedule.nap does."""
        for job in [j for j in self.blind if self.watches[j].handed.is_set()]:
            self.watches[job].handed.clear()
            self.blind.discard(job)
            self.at(self.now, job)

    def learn(self) -> None:
        if not self.learned:
            self.learned = True
            for job in self.blind:
                if job in self.jobs:
                    self.at(self.now, job)
            self.blind.clear()


def _batchgen(policy: PollPolicy, seed: int, queue: bool = False):
    state: dict = {}

    def spawn(sim: _Sim, job: int, gen: float):
        schedule = state.get("schedule")
        if schedule is None:
            schedule = state["schedule"] = PollSchedule(policy, random.Random(seed), clock=lambda: sim.now,
                                                        capacity=sim.c if queue else None, downloads=DOWNLOADS)
            sim.margin = QueueMargin(sim.c) if queue else None
        return _batchgen_job(sim, schedule, gen, job)
    return spawn


def _until_read(schedule: PollSchedule, watch):
    while True:
        delay = watch.delay()
        watch.handed.clear()  # as PollSchedule.nap: a place handed before the nap is in its delay
        if not watch.before_window or delay <= schedule.policy.recheck:
            yield ("nap", delay)
            rest = watch.floor_wait()
            if rest > 1e-9:
                yield ("sleep", rest)  # woken early: the read floor holds all the same
            return
        yield ("nap", schedule.policy.recheck)


def _batchgen_job(sim: _Sim, schedule: PollSchedule, gen: float, job: int):
    submitted = sim.now
    yield ("sleep", SUBMIT_LATENCY)
    started = sim.start_at(gen)
    if sim.draining:
        schedule.drain()  # as the runner does once the last job has its slot
    watch = sim.watches[job] = schedule.watch(MODEL, 4)
    # The time the provider reports counts from the submit, its wait in the queue included, as the
    # simulator's timings.inference does (server_queue.py tells the two apart).
    took = started + gen - submitted
    yield from _until_read(schedule, watch)
    while True:
        watch.asking()
        yield from _read(sim, job)
        if sim.now >= started + gen:
            sim.done(job, started, gen)
            if job >= sim.failing:  # as the runner: observed, then the watch closed
                schedule.observe(MODEL, 4, schedule.queue.generation(watch, took))
                sim.learn()
            watch.close(took)
            if sim.margin is not None:
                schedule.size_margin(sim.margin, MODEL, 4, SUBMIT_LATENCY)
            sim.wake_handed()
            return
        watch.missed()
        yield from _until_read(schedule, watch)


def _baseline(sim: _Sim, job: int, gen: float):
    yield ("sleep", SUBMIT_LATENCY)
    started = sim.start_at(gen)
    while True:
        yield ("sleep", 1.0)
        yield from _read(sim, job)
        if sim.now >= started + gen:
            sim.done(job, started, gen)
            return


def _read(sim: _Sim, job: int):
    sim.reads[job] = sim.reads.get(job, 0) + 1
    yield ("sleep", READ_LATENCY)


def simulate(times: list[float], c: int, policy: PollPolicy | None, seed: int = 0, failing: int = 0,
             queue: bool = False) -> _Sim:
    """One batch with these generation times (in submit order); ``policy`` None is the 1 s poller.
    The first ``failing`` jobs fail (their time is how long until the provider says so)."""
    sim = _Sim(len(times), c, times, failing, queue)
    sim.run(_baseline if policy is None else _batchgen(policy, seed, queue))
    return sim


def list_bound(times: list[float], c: int) -> float:
    """Every job queued at once at the provider, started oldest first as slots free: the ideal."""
    free = [0.0] * c
    for gen in times:
        heapq.heapreplace(free, free[0] + gen)
    return max(free)


def draw(n: int, t: float, jitter: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [t * (1 + rng.uniform(-jitter, jitter)) for _ in range(n)]


def compare(batches: list[list[float]], c: int, policy: PollPolicy, failing: int = 0, queue: bool = False) -> dict:
    """Mean figures over the batches, and per wave of C jobs (in submit order)."""
    rows = {"batchgen": [simulate(times, c, policy, seed, failing, queue) for seed, times in enumerate(batches)],
            "poller": [simulate(times, c, None, failing=failing) for times in batches]}
    got = {"ratio": [o.finished_at / b.finished_at for o, b in zip(rows["batchgen"], rows["poller"])],
           "ideal": [list_bound(times, c) / b.finished_at for times, b in zip(batches, rows["poller"])]}
    for name, sims in rows.items():
        got[name] = {
            "makespan": statistics.mean(x.finished_at for x in sims),
            "reads": statistics.mean(sum(x.reads.values()) / x.n for x in sims),
            "lag": statistics.mean(statistics.mean(x.lags.values()) for x in sims),
            "waves": [(statistics.mean(x.reads[j] for x in sims for j in range(w, min(w + c, x.n))),
                       statistics.mean(x.lags[j] for x in sims for j in range(w, min(w + c, x.n))))
                      for w in range(0, sims[0].n, c)],
        }
    return got


def _times_from(path: Path) -> list[float]:
    if path.suffix != ".jsonl":
        return [float(x) for x in json.loads(path.read_text())]
    submitted: dict[str, float] = {}
    took: dict[str, float] = {}
    for line in path.read_text().splitlines():
        ev = json.loads(line)
        if ev.get("ev") == "submitting":
            submitted.setdefault(ev["key"], ev["t"])
        elif ev.get("ev") == "completed" and ev.get("inference_ms"):
            took.setdefault(ev["key"], ev["inference_ms"] / 1000)
    return [took[k] for k in sorted(submitted, key=submitted.get) if k in took]


def batch_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the batch's shape (--n jobs on --c slots, --t seconds +- --jitter), q20's by default."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--c", type=int, default=32)
    parser.add_argument("--t", type=float, default=20.0, help="mean generation time, seconds")
    parser.add_argument("--jitter", type=float, default=0.2)
    return parser


def _parser() -> argparse.ArgumentParser:
    parser = batch_parser(__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--times", type=Path, help="generation times in submit order instead of drawn ones: a JSON "
                        "list, or a state.jsonl (e.g. from bench/perf.py --keep) whose inference times are used")
    parser.add_argument("--fail", type=int, default=0, help="the first K jobs fail (nothing is learned from them)")
    parser.add_argument("--fail-after", type=float, default=3.0, help="seconds until a failing job says so")
    parser.add_argument("--floor", type=float, default=0.0, help="read floor: fewest seconds between reads of a job")
    parser.add_argument("--queue", action="store_true", help="the provider queues over its C slots (API.md v2): "
                        "batchgen keeps C plus its margin in flight")
    parser.add_argument("--waves", action="store_true", help="also print reads and lag per wave of C jobs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.times:
        batches = [_times_from(args.times)]
        shape = f"{len(batches[0])} | {args.c} | from {args.times.name} | 1"
    else:
        batches = [draw(args.n, args.t, args.jitter, seed) for seed in range(args.seeds)]
        shape = f"{args.n} | {args.c} | {args.t:g} +-{args.jitter:.0%} | {args.seeds}"
    for times in batches:
        times[:args.fail] = [args.fail_after] * min(args.fail, len(times))
    got = compare(batches, args.c, PollPolicy(min_interval=1.0, read_floor=args.floor), args.fail, args.queue)
    ours, poller = got["batchgen"], got["poller"]
    print("| N | C | T s | batches | batchgen makespan s | 1 s poller s | ratio (mean) | ratio (worst) | ideal ratio | "
          "reads/job | poller reads/job | mean lag s | poller lag s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {shape} | {ours['makespan']:.1f} | {poller['makespan']:.1f} | {statistics.mean(got['ratio']):.3f} | "
          f"{max(got['ratio']):.3f} | {statistics.mean(got['ideal']):.3f} | {ours['reads']:.2f} | "
          f"{poller['reads']:.2f} | {ours['lag']:.2f} | {poller['lag']:.2f} |")
    if args.waves:
        print("\n| wave | batchgen reads/job | batchgen lag s | poller reads/job | poller lag s |")
        print("|---|---|---|---|---|")
        for i, ((r, lag), (pr, plag)) in enumerate(zip(ours["waves"], poller["waves"])):
            print(f"| {i + 1} | {r:.2f} | {lag:.2f} | {pr:.2f} | {plag:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
