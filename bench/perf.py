"""batchgen against a naive runner, on the simulator, in one run: the issue-7 and issue-13 tables.

    .venv/bin/python bench/perf.py                 # all scenarios (about 25 minutes)
    .venv/bin/python bench/perf.py --quick         # scaled-down variants (about 5 minutes)
    .venv/bin/python bench/perf.py --scenario q5   # one scenario
    .venv/bin/python bench/perf.py --scenario gold --runner batchgen --repeat 5   # medians of five runs

Scenarios: ``t20`` (a provider that answers 429 at its cap, as before API.md v2), ``q5``/``q20`` (the
simulator queues over its cap, as WaveSpeed does: batchgen primes the queue), ``hook`` (queueing,
results by webhook), ``gold`` (10,000 jobs on 2,000 slots, batchgen alone) and ``faults`` (20 % 429
bursts and 5xx, against batchgen's own fault-free run). "bound" is list scheduling over the
simulator's own generation times (every job queued at once, started oldest first as slots free).

One simulator subprocess per scenario serves both runners; it is reset (same seed, so the same
generation times in submit order) before each. Each runner runs in its own subprocess so its CPU
time and peak RSS are its own. Request counts come from the simulator's ledger, not the clients.
"runner CPU ms/job event" is the runner process's CPU over its submits, reads, downloads and
deliveries; "verify CPU ms/video" is its children's (the worker that probes each downloaded video).
CPU time for the same work varies by up to a quarter between runs on a shared 2-core machine (the
simulator's own CPU moves with it): ``--repeat N`` runs each scenario N times and adds a table of
medians, and each figure's range.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODEL = "bytedance/seedance-2.0/image-to-video"
RESOLUTION = "480p"
PROMPTS = ("slow push in on the product", "gentle pan across the table")
KEY = "bench-key"
SEED = 7
#: batchgen run --download-concurrency for the bench (the CLI default is 4).
DOWNLOADS = 32
#: The most times batchgen is run on one scenario (the same command again while jobs are unfinished).
RERUNS = 5


@dataclass(frozen=True)
class Scenario:
    name: str
    n: int
    c: int
    gen_base: float
    gen_per_second: float = 0.0
    jitter: float = 0.2
    durations: tuple[int, ...] = (4,)
    rpm: int | None = None
    rpm_window: float = 60.0
    #: The simulator over its cap: "queue" (API.md v2, WaveSpeed) or "429" (batchgen is told so).
    at_cap: str = "queue"
    #: batchgen's --poll-min (it lowers the read floor); None: the documented 5 s floor.
    poll_min: float | None = 1.0
    webhook: bool = False
    #: Fault name -> rate, as `batchgen simulate --fault`.
    faults: tuple[tuple[str, float], ...] = ()
    #: What batchgen is compared with: the 1 s poller, or its own run without the faults.
    against: str = "baseline"
    note: str = ""


SCENARIOS = {
    "t20": Scenario("t20", 128, 32, 20.0, at_cap="429", note="429 at the cap (before API.md v2), T=20 s +-20 %"),
    "q5": Scenario("q5", 128, 8, 5.0, note="queueing, T=5 s +-20 %, --poll-min 1"),
    "q20": Scenario("q20", 128, 32, 20.0, poll_min=None, note="queueing, T=20 s +-20 %, 5 s read floor"),
    "hook": Scenario("hook", 128, 32, 20.0, poll_min=None, webhook=True, note="queueing + webhooks, T=20 s +-20 %"),
    "gold": Scenario("gold", 10000, 2000, 20.0, poll_min=None, against="", note="Gold: 10,000 jobs, 2,000 slots, T=20 s"),
    "faults": Scenario("faults", 128, 8, 5.0, faults=(("429", 0.2), ("5xx", 0.2)), against="faultfree",
                       note="queueing, T=5 s, 20 % 429 bursts + 20 % 5xx vs no faults"),
    "mixed": Scenario("mixed", 2000, 64, 1.4, 0.15, 0.3, durations=(4, 6, 8), at_cap="429",
                      note="T~2 s, durations 4/6/8 s, 429 at the cap"),
    "rpm": Scenario("rpm", 200, 8, 2.0, rpm=60, rpm_window=6.0, at_cap="429",
                    note="60 videos/min at time scale 1/10 (60 per 6 s), T=2 s, 429 at the cap"),
}
QUICK = {
    "t20": replace(SCENARIOS["t20"], n=64, gen_base=4.0, note="429 at the cap, T=4 s +-20 % (quick)"),
    "q5": replace(SCENARIOS["q5"], n=48, note="queueing, T=5 s (quick)"),
    "q20": replace(SCENARIOS["q20"], n=64, gen_base=8.0, note="queueing, T=8 s, 5 s floor (quick)"),
    "hook": replace(SCENARIOS["hook"], n=64, gen_base=4.0, note="queueing + webhooks, T=4 s (quick)"),
    "gold": replace(SCENARIOS["gold"], n=2000, c=400, gen_base=5.0, note="2,000 jobs, 400 slots, T=5 s (quick)"),
    "faults": replace(SCENARIOS["faults"], n=48, note="queueing, T=5 s, 20 % 429s + 5xx (quick)"),
    "mixed": replace(SCENARIOS["mixed"], n=400, note="T~2 s mixed (quick)"),
    "rpm": replace(SCENARIOS["rpm"], n=48, note="60 per 6 s, T=2 s (quick)"),
}


# -- the simulator subprocess -------------------------------------------------------------
def _scenario(raw: dict) -> Scenario:
    return Scenario(**{**raw, "durations": tuple(raw["durations"]), "faults": tuple(map(tuple, raw["faults"]))})


async def _serve(spec: dict) -> None:
    from aiohttp import web

    from batchgen.models import output_size
    from batchgen.simulator import SimConfig, start
    from batchgen.simulator.config import FAULT_FLAGS
    from batchgen.simulator.tasks import motion_for, upright_size

    sc = _scenario(spec["scenario"])
    config = SimConfig(api_key=KEY, seed=SEED, gen_base=sc.gen_base, gen_per_second=sc.gen_per_second,
                       gen_jitter=sc.jitter, concurrency_cap=sc.c, at_cap=sc.at_cap, rpm=sc.rpm,
                       rpm_window=sc.rpm_window, render_cache_items=64)
    running = await start(config)
    sim = running.simulator

    async def gens(request: web.Request) -> web.Response:
        """Each task's own generation time, in the order the simulator accepted them (the bench's bound)."""
        return web.json_response([t.gen for t in sorted(sim.tasks.values(), key=lambda t: t.accepted_at)])

    async def faults(request: web.Request) -> web.Response:
        """Switch the scenario's faults on or off for the next run."""
        on = (await request.json())["on"]
        for name, rate in sc.faults:
            setattr(sim.config.faults, FAULT_FLAGS[name], rate if on else 0.0)
        return web.json_response({"on": on})

    bench_app = web.Application()
    bench_app.router.add_get("/gens", gens)
    bench_app.router.add_post("/faults", faults)
    bench_runner = web.AppRunner(bench_app, access_log=None)
    await bench_runner.setup()
    site = web.TCPSite(bench_runner, "127.0.0.1", 0)
    await site.start()
    # Render every clip once now: a cold render would add to the first wave's generation time.
    for path in spec["images"]:
        image = Path(path).read_bytes()
        width, height = output_size(RESOLUTION, upright_size(image))
        for duration in sc.durations:
            for prompt in PROMPTS:
                running.simulator.cache.get_or_render(image, width, height, duration, motion_for(prompt, SEED), SEED)
    print(running.base_url, f"http://127.0.0.1:{bench_runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


# -- the runner subprocesses --------------------------------------------------------------
def make_jobs(sc: Scenario, images: list[str]):
    from batchgen.images import image_info
    from batchgen.jobs import JobSpec

    hashes = {p: image_info(p).sha256 for p in images}
    jobs = []
    for i in range(sc.n):
        image = images[i % len(images)]
        params = {"duration": sc.durations[i % len(sc.durations)], "resolution": RESOLUTION}
        jobs.append(JobSpec(id=f"job{i:05d}", model=MODEL, prompt=PROMPTS[i % len(PROMPTS)], image=image,
                            image_path=image, image_url=None, image_sha256=hashes[image], params=params,
                            take=i, output=f"clips/job{i:05d}.mp4"))
    return jobs


def _batchgen_options(sc: Scenario, out: Path, margin: int | None = None):
    import socket

    from batchgen.runner import RunOptions
    from batchgen.run_flags import VIDEO_READ_FLOOR
    from batchgen.poll_policy import PollPolicy

    # Wired as cli_run.py does for a remote API: nothing known about generation times up front.
    floor = VIDEO_READ_FLOOR if sc.poll_min is None else sc.poll_min
    hooks = {}
    if sc.webhook:
        with socket.socket() as probe:  # a free loopback port for the listener
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        hooks = {"webhook_url": f"http://127.0.0.1:{port}/hook", "listen": ("127.0.0.1", port)}
    return RunOptions(out_dir=out, concurrency=sc.c, download_concurrency=DOWNLOADS, seed=1, queue_margin=margin,
                      poll=PollPolicy(min_interval=min(1.0, floor), read_floor=floor), **hooks)


async def _run_batchgen(url: str, sc: Scenario, jobs, out: Path, margin: int | None) -> dict:
    from batchgen.lifecycle import JobStatus
    from batchgen.models import ModelTable
    from batchgen.providers.wavespeed import POLICY, WaveSpeedProvider
    from batchgen.run_providers import connection_limit
    from batchgen.runner import Runner
    from batchgen.state import StateLog
    from batchgen.verifier import Verifier

    provider = WaveSpeedProvider(KEY, url, max_connections=connection_limit(sc.c))  # as `batchgen run` does
    if sc.at_cap == "429":
        provider.policy = replace(POLICY, queues_over_limit=False)  # a provider that refuses at its cap
    state_log = StateLog(out / "state.jsonl")
    state_log.open()
    verifier = Verifier()
    started, runs, deliveries = None, 0, 0
    try:
        # A submit whose answer a fault cut off is left unknown, never sent again blindly: the same
        # command settles it from the listing, as a user would run it again (counted in the makespan).
        while True:
            runs += 1
            runner = Runner(jobs, provider, state_log, ModelTable(), _batchgen_options(sc, out, margin),
                            verifier=verifier)
            plan = await runner.plan()
            started = time.monotonic() if started is None else started  # the first plan is not timed
            result = await runner.run(plan)
            deliveries += runner.hooks.recorded
            settled = result.counts[JobStatus.DOWNLOADED] + result.counts[JobStatus.FAILED]
            if settled == len(jobs) or runs == RERUNS:
                break
        makespan = time.monotonic() - started
    finally:
        verifier.shutdown()
        await provider.close()
        state_log.close()
    return {"makespan": makespan, "done": result.counts[JobStatus.DOWNLOADED], "fsyncs": state_log.fsyncs,
            "deliveries": deliveries, "runs": runs,
            "margin": runner.priming.margin.value if runner.priming.margin else 0}


async def _run_baseline(url: str, sc: Scenario, jobs, out: Path, margin: int | None) -> dict:
    from baseline import run_baseline

    started = time.monotonic()
    counts = await run_baseline(url, KEY, jobs, sc.c, out)
    return {"makespan": time.monotonic() - started, "done": counts["download"]}


def _child_run(spec: dict) -> None:
    sc = _scenario(spec["scenario"])
    jobs = make_jobs(sc, spec["images"])
    import batchgen.download, batchgen.runner, batchgen.providers.wavespeed, baseline  # noqa: E401,F401 - not timed
    out = Path(spec["out"])
    before = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    run = _run_baseline if spec["runner"] == "baseline" else _run_batchgen
    main = run(spec["url"], sc, jobs, out, spec.get("margin"))
    if spec.get("profile"):
        import cProfile  # the profiler slows the run: its makespan is not comparable
        profile = cProfile.Profile()
        got = profile.runcall(asyncio.run, main)
        profile.dump_stats(spec["profile"])
    else:
        got = asyncio.run(main)
    after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    # The runner's own process, and its children: batchgen verifies downloads in a worker process it
    # reaps at the end of a run (work per video, whatever the number of requests).
    got["cpu"], got["cpu_children"] = ((a.ru_utime - b.ru_utime) + (a.ru_stime - b.ru_stime)
                                       for a, b in zip(after, before))
    got["rss_mb"] = max(a.ru_maxrss for a in after) / 1024  # the runner or its largest child
    print(json.dumps(got), flush=True)


# -- the parent ---------------------------------------------------------------------------
def _sim_call(url: str, path: str, post: bool = False) -> dict:
    req = urllib.request.Request(url + path, data=b"{}" if post else None, method="POST" if post else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _images(folder: Path) -> list[str]:
    from PIL import Image

    paths = []
    for i, color in enumerate(((200, 80, 40), (40, 120, 200))):
        path = folder / f"product{i}.png"
        Image.new("RGB", (320, 240), color).save(path)
        paths.append(str(path))
    return paths


def _runners(sc: Scenario, only) -> list[str]:
    """batchgen first, then what it is compared with (the 1 s poller, or itself without the faults)."""
    names = ["batchgen"] + ([{"baseline": "baseline", "faultfree": "batchgen-faultfree"}[sc.against]]
                            if sc.against else [])
    return [name for name in names if not only or name.split("-")[0] in only]


def list_bound(gens: list[float], c: int) -> float:
    """Every job queued at once, started oldest first as one of ``c`` slots frees: the ideal makespan."""
    free = [0.0] * c
    for gen in gens:
        heapq.heapreplace(free, free[0] + gen)
    return max(free, default=0.0)


def _row(sc: Scenario, runner: str, got: dict, ledger: dict, bound: float, sim_cpu: float) -> dict:
    req = ledger["requests"]
    events = sum(req.get(k, 0) for k in ("submit", "result")) + ledger["downloads"] + got.get("deliveries", 0)
    return {
        "scenario": sc.name, "runner": runner, "n": sc.n, "c": sc.c, "bound": bound, "makespan": got["makespan"],
        "ratio": got["makespan"] / bound if bound else 0.0, "done": got["done"], "vs": None,
        "reads_per_job": req.get("result", 0) / sc.n, "submits_per_job": req.get("submit", 0) / sc.n,
        # The bench's jobs share bodies (2 images x 2 prompts): a task beyond one per job is a paid repeat.
        "paid_twice": len(ledger["submissions"]) - sc.n,
        "r429": int(ledger["responses"].get("429", 0)), "r5xx": sum(v for k, v in ledger["responses"].items()
                                                                   if k.startswith("5")),
        "deliveries": got.get("deliveries", 0), "margin": got.get("margin", 0),
        "cpu_ms_per_event": got["cpu"] / max(1, events) * 1000, "rss_mb": got["rss_mb"], "sim_cpu": sim_cpu,
        "verify_ms_per_video": got["cpu_children"] / max(1, ledger["downloads"]) * 1000,
        "max_concurrent": ledger["max_concurrent"], "runs": got.get("runs", 1),
    }


def run_scenario(sc: Scenario, work: Path, only=(), keep: bool = False, margin: int | None = None,
                 profile: Path | None = None) -> list[dict]:
    images = _images(work)
    me = str(Path(__file__).resolve())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(me).parent), str(Path(me).parent.parent)])}
    sim = subprocess.Popen([sys.executable, me, "--_serve", json.dumps({"scenario": asdict(sc), "images": images})],
                           stdout=subprocess.PIPE, text=True, env=env)
    rows = []
    try:
        url, bench = (sim.stdout.readline().split() + ["", ""])[:2]
        if not url.startswith("http"):
            raise SystemExit(f"the simulator for {sc.name} did not start (exit {sim.wait()})")
        for runner in _runners(sc, only):
            _sim_call(url, "/_sim/reset", post=True)
            _post(bench + "/faults", {"on": runner != "batchgen-faultfree"})
            sim_cpu = _cpu_of(sim.pid)
            spec = {"scenario": asdict(sc), "images": images, "url": url, "out": str(work / runner), "runner": runner,
                    "margin": margin, "profile": str(profile / f"{sc.name}-{runner}.prof") if profile else None}
            child = subprocess.run([sys.executable, me, "--_run", json.dumps(spec)], capture_output=True, text=True,
                                   env=env)
            if child.returncode != 0:
                raise SystemExit(f"{runner} failed in {sc.name}:\n{child.stderr[-3000:]}")
            ledger = _sim_call(url, "/_sim/ledger")
            gens = _sim_call(bench, "/gens")
            if keep:  # gens.json: for bench/tail_bound.py --times
                (work / runner / "ledger.json").write_text(json.dumps(ledger))
                (work / runner / "gens.json").write_text(json.dumps(gens))
            bound = list_bound(gens, sc.c)
            rows.append(_row(sc, runner, json.loads(child.stdout.strip().splitlines()[-1]), ledger, bound,
                             _cpu_of(sim.pid) - sim_cpu))
    finally:
        sim.terminate()
        sim.wait()
    if len(rows) == 2:
        rows[0]["vs"] = rows[0]["makespan"] / rows[1]["makespan"]
    for row in rows:
        print(_format_row(row), flush=True)
    return rows


def _post(url: str, body: dict) -> None:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        resp.read()


HEADER = ("| scenario | runner | runs | N | done | C | list bound s | makespan s | vs bound | vs compared | reads/job | "
          "submits/job | deliveries | margin | 429s | 5xx | paid twice | runner CPU ms/job event | verify CPU ms/video | "
          "peak RSS MB | sim CPU s |")
TABLE_HEAD = HEADER + "\n|" + "---|" * (HEADER.count("|") - 1)


def _format_row(r: dict) -> str:
    vs = f"{r['vs']:.3f}" if r["vs"] is not None else ""
    return (f"| {r['scenario']} | {r['runner']} | {r['runs']} | {r['n']} | {r['done']} | {r['c']} | {r['bound']:.1f} | "
            f"{r['makespan']:.1f} | "
            f"{r['ratio']:.3f} | {vs} | {r['reads_per_job']:.2f} | {r['submits_per_job']:.2f} | {r['deliveries']} | "
            f"{r['margin']} | {r['r429']} | {r['r5xx']} | {r['paid_twice']} | {r['cpu_ms_per_event']:.2f} | "
            f"{r['verify_ms_per_video']:.2f} | "
            f"{r['rss_mb']:.0f} | {r['sim_cpu']:.1f} |")


#: Figures whose range over repeated runs is printed under the table of medians.
SPREAD = (("cpu_ms_per_event", "runner CPU ms/job event", 2), ("ratio", "makespan vs bound", 3),
          ("vs", "vs compared", 3), ("reads_per_job", "reads/job", 2), ("rss_mb", "peak RSS MB", 0),
          ("sim_cpu", "sim CPU s", 1))


def medians(rows: list[dict]) -> list[dict]:
    """Per scenario and runner, each figure's median over the repeated runs (the lower middle one for an
    even count, so every cell is a figure some run measured)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["scenario"], row["runner"]), []).append(row)
    out = []
    for group in groups.values():
        row = dict(group[0], repeats=len(group))
        for key, value in group[0].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and all(r[key] is not None for r in group):
                row[key] = statistics.median_low(r[key] for r in group)
        out.append(row)
    return out


def spread(rows: list[dict], median: dict) -> str:
    """One line: the range of the figures in SPREAD over the runs behind ``median``."""
    group = [r for r in rows if (r["scenario"], r["runner"]) == (median["scenario"], median["runner"])]
    parts = []
    for key, label, digits in SPREAD:
        values = sorted(r[key] for r in group if r[key] is not None)
        if values:
            parts.append(f"{label} {values[0]:.{digits}f}-{values[-1]:.{digits}f}")
    return f"- {median['scenario']} {median['runner']}, {len(group)} runs: " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="scaled-down variants for a fast check")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="run only this one (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (state files, clips) for a look")
    parser.add_argument("--runner", choices=("batchgen", "baseline"), action="append",
                        help="run only this runner (repeatable; default: batchgen and what it is compared with)")
    parser.add_argument("--queue-margin", type=int, help="batchgen's --queue-margin (default: sized as it runs)")
    parser.add_argument("--profile", type=Path, help="write a cProfile of each runner here (SCENARIO-RUNNER.prof); "
                        "a profiled run is slower, so its times are not comparable")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run each scenario N times, then print the medians and each figure's range")
    parser.add_argument("--_serve", help=argparse.SUPPRESS)
    parser.add_argument("--_run", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args._serve:
        asyncio.run(_serve(json.loads(args._serve)))
        return 0
    if args._run:
        _child_run(json.loads(args._run))
        return 0
    table = QUICK if args.quick else SCENARIOS
    names = args.scenario or list(table)
    for name in names:
        print(f"{name}: {table[name].note}; compared with: {table[name].against or 'nothing'}", flush=True)
    print(TABLE_HEAD)
    rows = []
    runners = args.runner or ()
    for name, n in [(name, n) for name in names for n in range(1, args.repeat + 1)]:
        if args.keep:
            kept = args.keep / name / (f"run{n}" if args.repeat > 1 else "")
            kept.mkdir(parents=True, exist_ok=True)
            rows += run_scenario(table[name], kept, runners, keep=True, margin=args.queue_margin, profile=args.profile)
            continue
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
            rows += run_scenario(table[name], Path(tmp), runners, margin=args.queue_margin, profile=args.profile)
    if args.repeat > 1:
        table_of_medians = medians(rows)
        print(f"\nMedians of {args.repeat} runs:\n{TABLE_HEAD}")
        for row in table_of_medians:
            print(_format_row(row))
        print("\nRanges:")
        for row in table_of_medians:
            print(spread(rows, row))
        rows += [dict(row, median=True) for row in table_of_medians]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
