"""batchgen's own cost at scale: loading a 100,000-line state file, group-committed fsyncs,
and memory while downloading a 1 GB file.

    .venv/bin/python bench/scale.py            # all three (about 30 s)
    .venv/bin/python bench/scale.py --gb 0.2   # a smaller download

The download comes from a tiny local aiohttp server that generates its body as it goes (one
reused 1 MiB chunk), so only the client's memory can grow; it is written to /dev/null so the
figure is the client's buffering, not the disk's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web  # noqa: E402

from batchgen.providers.wavespeed import WaveSpeedProvider  # noqa: E402
from batchgen.state import StateLog, load  # noqa: E402

CHUNK = 1 << 20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_state(path: Path, lines: int) -> int:
    """A realistic log: each job's life as job, submitting, submitted, completed, downloaded lines."""
    jobs = lines // 5
    t = 1_700_000_000.0
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(jobs):
            key = f"{i:020x}"
            pid = f"{i:032x}"
            for ev in (
                {"ev": "job", "key": key, "id": f"job{i:06d}", "output": f"clips/job{i:06d}.mp4",
                 "model": "openai/sora-2/image-to-video-pro", "params": {"duration": 4, "resolution": "720p"},
                 "prompt": "slow push in on the product, soft daylight", "image": f"images/p{i % 50}.jpg",
                 "where": f"batch.yaml:{i + 3}", "cost": 1.2},
                {"ev": "submitting", "key": key, "attempt": 1, "body_hash": f"{i:064x}",
                 "model": "openai/sora-2/image-to-video-pro", "cost": 1.2},
                {"ev": "submitted", "key": key, "pid": pid, "model": "openai/sora-2/image-to-video-pro"},
                {"ev": "completed", "key": key, "pid": pid, "outputs": [f"https://cdn.example/{pid}/video.mp4"],
                 "model_used": "openai/sora-2/image-to-video-pro", "inference_ms": 61234},
                {"ev": "downloaded", "key": key, "path": f"clips/job{i:06d}.mp4", "bytes": 2_345_678,
                 "sha256": f"{i:064x}", "model_used": "openai/sora-2/image-to-video-pro"},
            ):
                ev["t"] = t
                fh.write(json.dumps(ev, separators=(",", ":")) + "\n")
    return jobs * 5


def bench_state_load(folder: Path, lines: int) -> dict:
    path = folder / "state.jsonl"
    written = write_state(path, lines)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        state = load(path)
        best = min(best, time.perf_counter() - started)
    assert len(state.jobs) == written // 5 and all(r.status.value == "downloaded" for r in state.jobs.values())
    log = StateLog(path)
    log.open()
    log.compact()
    log.close()
    started = time.perf_counter()
    load(path)
    compacted = time.perf_counter() - started
    return {"lines": written, "bytes": path.stat().st_size, "load_s": best, "compacted_load_s": compacted,
            "jobs": written // 5}


async def _durable_submits(log: StateLog, count: int, concurrent: bool) -> tuple[float, list[bool]]:
    """``count`` intent lines; each caller checks an fsync finished after its own write."""
    covered: list[bool] = []

    async def one(i: int) -> None:
        before = log.fsyncs
        lines_before = log._appended  # this caller's line is the next one
        await log.append_durable({"ev": "submitting", "key": f"k{i}", "attempt": 1, "body_hash": "x", "cost": 1})
        covered.append(log.fsyncs > before and log._synced > lines_before)

    started = time.perf_counter()
    if concurrent:
        await asyncio.gather(*(one(i) for i in range(count)))
    else:
        for i in range(count):
            await one(i)
    return time.perf_counter() - started, covered


def bench_fsync(folder: Path, count: int) -> dict:
    rows = {}
    for concurrent in (False, True):
        log = StateLog(folder / f"fsync-{concurrent}.jsonl")
        log.open()
        took, covered = asyncio.run(_durable_submits(log, count, concurrent))
        rows["concurrent" if concurrent else "one_by_one"] = {
            "submits": count, "fsyncs": log.fsyncs, "seconds": took, "all_durable_before_ack": all(covered)}
        log.close()
    return rows


async def _serve_bytes(total: int) -> tuple[web.AppRunner, str]:
    block = os.urandom(CHUNK)

    async def handler(request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("bytes", total))
        resp = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        resp.content_length = size
        await resp.prepare(request)
        sent = 0
        while sent < size:
            piece = block[:min(CHUNK, size - sent)]
            await resp.write(piece)
            sent += len(piece)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/video.mp4", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/video.mp4"


async def _download(total: int) -> dict:
    runner, url = await _serve_bytes(total)
    provider = WaveSpeedProvider("bench-key", "http://127.0.0.1:9")
    try:
        # A small download first, so the baseline includes the session's own buffers.
        await provider.download(f"{url}?bytes={CHUNK * 4}", Path(os.devnull), max_bytes=4 << 30)
        before = peak_rss_mb()
        started = time.perf_counter()
        got = await provider.download(url, Path(os.devnull), max_bytes=4 << 30)
        took = time.perf_counter() - started
    finally:
        await provider.close()
        await runner.cleanup()
    assert got.bytes == total
    return {"bytes": got.bytes, "seconds": took, "peak_rss_before_mb": before, "peak_rss_after_mb": peak_rss_mb()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000, help="state file lines (default 100,000)")
    parser.add_argument("--submits", type=int, default=1000, help="durable intent lines (default 1,000)")
    parser.add_argument("--gb", type=float, default=1.0, help="download size in GB (default 1)")
    args = parser.parse_args(argv)
    # First, while the process is small: ru_maxrss is a high-water mark that the state load would raise.
    total = int(args.gb * (1 << 30))
    dl = asyncio.run(_download(total))
    print(f"download: {dl['bytes'] / (1 << 30):.2f} GiB streamed in {dl['seconds']:.1f} s "
          f"({dl['bytes'] / dl['seconds'] / 1e6:.0f} MB/s); peak RSS {dl['peak_rss_before_mb']:.0f} MB before, "
          f"{dl['peak_rss_after_mb']:.0f} MB after")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        folder = Path(tmp)
        state = bench_state_load(folder, args.lines)
        print(f"state load: {state['lines']:,} lines ({state['bytes'] / 1e6:.1f} MB, {state['jobs']:,} jobs) "
              f"in {state['load_s']:.2f} s; compacted to one line per job: {state['compacted_load_s']:.2f} s")
        for mode, row in bench_fsync(folder, args.submits).items():
            print(f"durable intents, {mode.replace('_', ' ')}: {row['submits']:,} in {row['seconds']:.2f} s "
                  f"with {row['fsyncs']:,} fsyncs; every ack after an fsync that followed its write: "
                  f"{row['all_durable_before_ack']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
