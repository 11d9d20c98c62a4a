"""Helpers for end-to-end runner tests: manifests on disk and the CLI against a simulator thread."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from batchgen import settling
from batchgen.cli import main
from batchgen.models import SORA_PRO
from batchgen.state import load
from conftest import API_KEY, image_bytes

COLORS = [(200, 80, 40), (40, 160, 90), (90, 60, 200), (220, 200, 40), (20, 20, 20), (250, 250, 250)]


def make_images(folder: Path, count: int, fmt: str = "PNG") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"shot{i:02d}.{fmt.lower()}"
        path.write_bytes(image_bytes(96, 64, fmt, COLORS[i % len(COLORS)]))
        paths.append(path)
    return paths


def write_manifest(folder: Path, jobs: list[dict[str, Any]], **top: Any) -> Path:
    """A manifest of ``jobs``; a job naming no model runs Sora 2 Pro, the default these tests' figures
    (4 s jobs, $0.30/s) were written for before Seedance 2.0 became the default model."""
    if "model" not in top.get("defaults", {}):
        jobs = [job if "model" in job else {**job, "model": SORA_PRO} for job in jobs]
    path = folder / "batch.yaml"
    path.write_text(yaml.safe_dump({**top, "jobs": jobs}, sort_keys=False), encoding="utf-8")
    return path


def run_cli(sim, manifest: Path, out: Path, *extra: str, key: str = API_KEY) -> int:
    """``batchgen run`` in this process against the simulator thread, with fast polling."""
    os.environ["WAVESPEED_API_KEY"] = key
    try:
        return main(["run", str(manifest), "--out", str(out), "--base-url", sim.base_url, "--yes",
                     "--poll-min", "0.05", "--seed", "1", *extra])
    finally:
        os.environ.pop("WAVESPEED_API_KEY", None)


@contextmanager
def lost_submits_left_unknown() -> Iterator[None]:
    """Runs in this block leave their lost submits unknown, as a run killed before settling them (or
    one by a release before settling.py) did: the state the next run's reconciliation starts from."""
    rounds, settling.MAX_ROUNDS = settling.MAX_ROUNDS, 0
    try:
        yield
    finally:
        settling.MAX_ROUNDS = rounds


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_batch_intact(sim, out: Path, expect_jobs: int) -> dict[str, Any]:
    """Every job downloaded once, matching the ledger, and no job paid twice."""
    state = load(out / "state.jsonl")
    ledger = sim.ledger()
    done = [r for r in state.jobs.values() if r.status.value == "downloaded"]
    assert len(done) == expect_jobs, {r.id: r.status.value for r in state.jobs.values()}
    for rec in done:
        path = out / rec.path
        assert path.exists() and path.stat().st_size == rec.bytes
        assert sha256(path) == rec.sha256 == ledger["outputs"][rec.pid]
        assert not path.with_name(path.name + ".part").exists()
        side = json.loads(path.with_suffix(".json").read_text())
        assert side["prediction_id"] == rec.pid and side["sha256"] == rec.sha256
    per_hash: dict[str, int] = {}
    for rec in state.jobs.values():
        per_hash[rec.body_hash] = per_hash.get(rec.body_hash, 0) + 1
    for digest, count in ledger["accepted_by_body_hash"].items():
        assert count == per_hash.get(digest, 0), f"body {digest[:12]} accepted {count} times"
    return ledger


def files_written(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file()]
