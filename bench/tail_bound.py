"""How late, at best, a run notices a batch's last video when each task may be read only every F seconds.

    .venv/bin/python bench/tail_bound.py                  # q20's shape: 128 jobs, 32 slots, 20 s +-20 %, F = 5
    .venv/bin/python bench/tail_bound.py --floor 1        # what the 1 s poller's cadence would allow

The provider queues (API.md v2), so its slots run the batch as list scheduling: its last task ends at
the list bound whatever the runner does, and the run ends when a read notices that end. With a read
floor of F seconds per task (API.md: the docs ask for 5 s between checks of a video task), no schedule
can notice it sooner on average than the schedule below, which is given more than any runner knows:
every task's exact start, and which tasks are still running at each of its reads. From the moment the
last job starts it reads every running task together, each read timed to minimise the expected wait
to the batch's end, sampled from the generation-time distribution conditioned on what it has seen.
The 1 s poller (bench/poll_model.py, which reads every task every second) is the comparison.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from poll_model import READ_LATENCY, batch_parser, draw, list_bound, simulate  # noqa: E402

SAMPLES = 400
STEP = 0.05


def starts_of(times: list[float], c: int) -> list[float]:
    """When each job starts at the provider: every job queued at once, oldest first as slots free."""
    free = [0.0] * c
    starts = []
    for gen in times:
        starts.append(free[0])
        heapq.heapreplace(free, free[0] + gen)
    return starts


def _samples(running: list[float], seen: float, low: float, high: float, rng: random.Random) -> list[float]:
    """The batch's end, drawn for tasks started at ``running`` and still running at ``seen``."""
    return [max(s + rng.uniform(max(low, seen - s), high) for s in running) for _ in range(SAMPLES)]


def _best_read(ends: list[float], earliest: float, floor: float) -> float:
    """The read time from ``earliest`` on that minimises the expected wait to the end, the reads after
    it coming every ``floor`` seconds."""
    def wait(first: float) -> float:
        return statistics.fmean(first + max(0.0, -((first - e) // floor)) * floor - e for e in ends)

    return min((earliest + i * STEP for i in range(int(floor / STEP) + 1)), key=wait)


def tail_lag(times: list[float], c: int, floor: float, low: float, high: float, rng: random.Random) -> float:
    """Seconds from the batch's last end to the read that sees it, for the informed schedule."""
    starts = starts_of(times, c)
    ends = [s + g for s, g in zip(starts, times)]
    last = max(ends)
    seen = earliest = max(starts)
    while True:
        running = [s for s, e in zip(starts, ends) if e > seen]
        if not running:
            return seen - last
        read = _best_read(_samples(running, seen, low, high, rng), earliest, floor)
        if read >= last:
            return read - last
        seen, earliest = read, read + floor


def _parser() -> argparse.ArgumentParser:
    parser = batch_parser(__doc__.splitlines()[0])
    parser.add_argument("--floor", type=float, default=5.0, help="fewest seconds between two reads of one task")
    parser.add_argument("--seeds", type=int, default=40, help="batches drawn (with --times: samplings of one batch)")
    parser.add_argument("--times", type=Path, help="one batch's generation times in submit order (a JSON list: "
                        "the gens.json that bench/perf.py --keep writes), instead of drawn ones")
    parser.add_argument("--poller", type=float, help="the 1 s poller's measured makespan for --times, instead of "
                        "poll_model's")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    low, high = args.t * (1 - args.jitter), args.t * (1 + args.jitter)
    rows = []
    for seed in range(args.seeds):
        times = json.loads(args.times.read_text()) if args.times else draw(args.n, args.t, args.jitter, seed)
        lag = tail_lag(times, args.c, args.floor, low, high, random.Random(seed))
        bound = list_bound(times, args.c)
        poller = args.poller if args.times and args.poller else simulate(times, args.c, None).finished_at
        rows.append((lag, bound, poller, (bound + lag + READ_LATENCY) / poller))
    lags, bounds, pollers, ratios = zip(*rows)
    shape = f"{len(times)} | {args.c} | " + (args.times.name if args.times else f"{args.t:g} +-{args.jitter:.0%}")
    print("| N | C | T s | floor s | runs | tail lag s (mean) | tail lag s (worst) | list bound s | 1 s poller s | "
          "ratio (mean) | ratio (best) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {shape} | {args.floor:g} | {args.seeds} | {statistics.fmean(lags):.2f} | {max(lags):.2f} | "
          f"{statistics.fmean(bounds):.2f} | {statistics.fmean(pollers):.2f} | {statistics.fmean(ratios):.3f} | "
          f"{min(ratios):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
