"""batchgen against a naive runner, on the simulator, in one run: the issue-7 performance table.

    .venv/bin/python bench/perf.py                 # all scenarios (about 10 minutes)
    .venv/bin/python bench/perf.py --quick         # scaled-down variants (about 2 minutes)
    .venv/bin/python bench/perf.py --scenario t20  # one scenario

One simulator subprocess per scenario serves both runners; it is reset (same seed, so the same
generation times in submit order) before each. Each runner runs in its own subprocess so its CPU
time and peak RSS are its own. Request counts come from the simulator's ledger, not the clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
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
    note: str = ""

    def gen_mean(self) -> float:
        return sum(self.gen_base + self.gen_per_second * d for d in self.durations) / len(self.durations)

    def bound(self) -> float:
        return math.ceil(self.n / self.c) * self.gen_mean()


SCENARIOS = {
    "t20": Scenario("t20", 128, 32, 20.0, note="T=20 s +-20 %"),
    "mixed": Scenario("mixed", 2000, 64, 1.4, 0.15, 0.3, durations=(4, 6, 8), note="T~2 s, durations 4/6/8 s"),
    "rpm": Scenario("rpm", 200, 8, 2.0, rpm=60, rpm_window=6.0,
                    note="60 req/min at time scale 1/10: 60 req per 6 s, T=2 s (=20 s at scale 1)"),
    "big": Scenario("big", 10000, 500, 1.0, note="T~1 s"),
}
QUICK = {
    "t20": replace(SCENARIOS["t20"], n=64, gen_base=4.0, note="T=4 s +-20 % (quick)"),
    "mixed": replace(SCENARIOS["mixed"], n=400, note="T~2 s mixed (quick)"),
    "rpm": replace(SCENARIOS["rpm"], n=48, note="60 req per 6 s, T=2 s (quick)"),
    "big": replace(SCENARIOS["big"], n=2000, c=250, note="T~1 s (quick)"),
}


# -- the simulator subprocess -------------------------------------------------------------
async def _serve(spec: dict) -> None:
    from batchgen.models import output_size
    from batchgen.simulator import SimConfig, start
    from batchgen.simulator.tasks import motion_for, upright_size

    sc = Scenario(**{**spec["scenario"], "durations": tuple(spec["scenario"]["durations"])})
    config = SimConfig(api_key=KEY, seed=SEED, gen_base=sc.gen_base, gen_per_second=sc.gen_per_second,
                       gen_jitter=sc.jitter, concurrency_cap=sc.c, rpm=sc.rpm, rpm_window=sc.rpm_window,
                       render_cache_items=64)
    running = await start(config)
    # Render every clip once now: a cold render would add to the first wave's generation time.
    for path in spec["images"]:
        image = Path(path).read_bytes()
        width, height = output_size(RESOLUTION, upright_size(image))
        for duration in sc.durations:
            for prompt in PROMPTS:
                running.simulator.cache.get_or_render(image, width, height, duration, motion_for(prompt, SEED), SEED)
    print(running.base_url, flush=True)
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


async def _run_batchgen(url: str, sc: Scenario, jobs, out: Path) -> dict:
    from batchgen.lifecycle import JobStatus
    from batchgen.models import ModelTable
    from batchgen.providers.wavespeed import WaveSpeedProvider
    from batchgen.runner import RunOptions, Runner
    from batchgen.schedule import PollPolicy
    from batchgen.state import StateLog
    from batchgen.verifier import Verifier

    # Wired as cli_run.py does for a remote API: nothing known about generation times up front.
    provider = WaveSpeedProvider(KEY, url, max_connections=max(16, 2 * sc.c))
    state_log = StateLog(out / "state.jsonl")
    state_log.open()
    options = RunOptions(out_dir=out, concurrency=sc.c, download_concurrency=DOWNLOADS, seed=1,
                         poll=PollPolicy(min_interval=1.0))
    verifier = Verifier()
    try:
        runner = Runner(jobs, provider, state_log, ModelTable(), options, verifier=verifier)
        plan = runner.plan()
        started = time.monotonic()
        result = await runner.run(plan)
        makespan = time.monotonic() - started
    finally:
        verifier.shutdown()
        await provider.close()
        state_log.close()
    return {"makespan": makespan, "done": result.counts[JobStatus.DOWNLOADED], "fsyncs": state_log.fsyncs}


async def _run_baseline(url: str, sc: Scenario, jobs, out: Path) -> dict:
    from baseline import run_baseline

    started = time.monotonic()
    counts = await run_baseline(url, KEY, jobs, sc.c, out)
    return {"makespan": time.monotonic() - started, "done": counts["download"]}


def _child_run(spec: dict) -> None:
    sc = Scenario(**{**spec["scenario"], "durations": tuple(spec["scenario"]["durations"])})
    jobs = make_jobs(sc, spec["images"])
    import batchgen.download, batchgen.runner, batchgen.providers.wavespeed, baseline  # noqa: E401,F401 - not timed
    out = Path(spec["out"])
    before = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    run = _run_batchgen if spec["runner"] == "batchgen" else _run_baseline
    got = asyncio.run(run(spec["url"], sc, jobs, out))
    after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    # Children count too: batchgen verifies downloads in a worker process it reaps at the end of a run.
    got["cpu"] = sum((a.ru_utime - b.ru_utime) + (a.ru_stime - b.ru_stime) for a, b in zip(after, before))
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


def run_scenario(sc: Scenario, work: Path, runners=("batchgen", "baseline"), keep: bool = False) -> list[dict]:
    images = _images(work)
    me = str(Path(__file__).resolve())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(me).parent), str(Path(me).parent.parent)])}
    sim = subprocess.Popen([sys.executable, me, "--_serve", json.dumps({"scenario": asdict(sc), "images": images})],
                           stdout=subprocess.PIPE, text=True, env=env)
    rows = []
    try:
        url = sim.stdout.readline().strip()
        if not url.startswith("http"):
            raise SystemExit(f"the simulator for {sc.name} did not start (exit {sim.wait()})")
        for runner in runners:
            _sim_call(url, "/_sim/reset", post=True)
            sim_cpu = _cpu_of(sim.pid)
            out = work / runner
            spec = {"scenario": asdict(sc), "images": images, "url": url, "out": str(out), "runner": runner}
            child = subprocess.run([sys.executable, me, "--_run", json.dumps(spec)], capture_output=True, text=True,
                                   env=env)
            if child.returncode != 0:
                raise SystemExit(f"{runner} failed in {sc.name}:\n{child.stderr[-3000:]}")
            got = json.loads(child.stdout.strip().splitlines()[-1])
            ledger = _sim_call(url, "/_sim/ledger")
            if keep:
                (out / "ledger.json").write_text(json.dumps(ledger))
            req = ledger["requests"]
            rows.append({
                "scenario": sc.name, "runner": runner, "n": sc.n, "c": sc.c, "bound": sc.bound(),
                "makespan": got["makespan"], "ratio": got["makespan"] / sc.bound(), "done": got["done"],
                "reads_per_job": req.get("result", 0) / sc.n, "submits_per_job": req.get("submit", 0) / sc.n,
                "requests": sum(v for k, v in req.items() if k in ("submit", "result", "upload_binary", "list")),
                "r429": int(ledger["responses"].get("429", 0)),
                "cpu_per_1000": got["cpu"] / sc.n * 1000, "rss_mb": got["rss_mb"],
                "sim_cpu": _cpu_of(sim.pid) - sim_cpu, "max_concurrent": ledger["max_concurrent"],
            })
            print(_format_row(rows[-1]), flush=True)
    finally:
        sim.terminate()
        sim.wait()
    return rows


HEADER = ("| scenario | runner | N | C | bound s | makespan s | ratio | result reads/job | submits/job | "
          "API requests | 429s | CPU s/1000 jobs | peak RSS MB | sim CPU s |")


def _format_row(r: dict) -> str:
    return (f"| {r['scenario']} | {r['runner']} | {r['n']} | {r['c']} | {r['bound']:.1f} | {r['makespan']:.1f} | "
            f"{r['ratio']:.3f} | {r['reads_per_job']:.2f} | {r['submits_per_job']:.2f} | {r['requests']} | "
            f"{r['r429']} | {r['cpu_per_1000']:.2f} | {r['rss_mb']:.0f} | {r['sim_cpu']:.1f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="scaled-down variants for a fast check")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="run only this one (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (state files, clips) for a look")
    parser.add_argument("--runner", choices=("batchgen", "baseline"), action="append",
                        help="run only this runner (repeatable; default both)")
    parser.add_argument("--_serve", help=argparse.SUPPRESS)
    parser.add_argument("--_run", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._serve:
        asyncio.run(_serve(json.loads(args._serve)))
        return 0
    if args._run:
        _child_run(json.loads(args._run))
        return 0
    table = QUICK if args.quick else SCENARIOS
    names = args.scenario or list(table)
    for name in names:
        print(f"{name}: {table[name].note}; bound ceil(N/C) x T = {table[name].bound():.1f} s", flush=True)
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    rows = []
    runners = args.runner or ("batchgen", "baseline")
    for name in names:
        if args.keep:
            (args.keep / name).mkdir(parents=True, exist_ok=True)
            rows += run_scenario(table[name], args.keep / name, runners, keep=True)
            continue
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
            rows += run_scenario(table[name], Path(tmp), runners)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
