"""The naive runner batchgen is measured against: asyncio.gather over every row, one semaphore
of C slots, a result read every second, downloads streamed to disk, no state file.

It uses the wire contract directly (aiohttp), with the same connection limit batchgen gets,
so the comparison is about scheduling, not about HTTP plumbing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import aiohttp

from batchgen.jobs import JobSpec
from batchgen.models import ModelTable
from batchgen.providers.wavespeed import WaveSpeedProvider
from batchgen.run_providers import connection_limit

POLL_EVERY = 1.0
RETRY_429 = 1.0


async def run_baseline(base_url: str, api_key: str, jobs: list[JobSpec], concurrency: int, out_dir: Path) -> Counter:
    """Run every job to a file; returns client-side counts (submits, reads, 429s, downloads, failed)."""
    counts: Counter = Counter()
    auth = {"Authorization": f"Bearer {api_key}"}
    models = ModelTable()
    connector = aiohttp.TCPConnector(limit=connection_limit(concurrency))
    async with aiohttp.ClientSession(connector=connector, headers=auth) as session:
        urls: dict[str, str] = {}
        for job in jobs:
            if job.image_sha256 not in urls:
                form = aiohttp.FormData()
                form.add_field("file", Path(job.image_path).read_bytes(), filename=Path(job.image_path).name,
                               content_type="image/png")
                async with session.post(f"{base_url}/api/v3/media/upload/binary", data=form) as resp:
                    urls[job.image_sha256] = (await resp.json())["data"]["download_url"]
                counts["upload"] += 1
        slots = asyncio.Semaphore(concurrency)

        async def call(method: str, url: str, kind: str, **kwargs) -> dict:
            while True:
                counts[kind] += 1
                async with session.request(method, url, **kwargs) as resp:
                    payload = await resp.json()
                if resp.status == 429:
                    counts["429"] += 1
                    await asyncio.sleep(RETRY_429)
                    continue
                if resp.status != 200:
                    raise RuntimeError(f"{kind}: HTTP {resp.status}: {payload.get('message')}")
                return payload["data"]

        async def one(job: JobSpec) -> None:
            body = WaveSpeedProvider.build_body(models.get(job.model), urls[job.image_sha256], job.prompt, job.params)
            async with slots:
                task = await call("POST", f"{base_url}/api/v3/{job.model}", "submit", json=body)
                while task["status"] not in ("completed", "failed"):
                    await asyncio.sleep(POLL_EVERY)
                    task = await call("GET", f"{base_url}/api/v3/predictions/{task['id']}/result", "result")
            if task["status"] == "failed":
                counts["failed"] += 1
                return
            target = out_dir / job.output
            target.parent.mkdir(parents=True, exist_ok=True)
            async with session.get(task["outputs"][0]) as resp:
                with open(target, "wb") as fh:
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        fh.write(chunk)
            counts["download"] += 1

        await asyncio.gather(*(one(job) for job in jobs))
    return counts
