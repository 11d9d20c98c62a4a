"""State files written by the released code (tests/fixtures/v0_1, see its README) load and resume to
completion under the current code, against a fresh simulator, without paying any job twice."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from pathlib import Path

import pytest

from batchgen.lifecycle import JobStatus
from batchgen.manifest import load_manifest
from batchgen.providers.wavespeed import WaveSpeedProvider
from batchgen.runner import RunOptions, Runner
from batchgen.poll_policy import PollPolicy
from batchgen.state import StateLog, load
from batchgen.verifier import Verifier

FIXTURES = Path(__file__).parent / "fixtures" / "v0_1"
#: Past the fixtures' upload lifetime (6 days: their image URLs named a simulator that is gone), yet inside
#: the 7 days the provider lists predictions for, so the listing can still prove a lost submit absent.
LATER = 1796359482.0 + 6.5 * 86400


def _resume(sim, folder: Path):
    manifest = load_manifest(folder / "batch.yaml")
    out = folder / "out"

    async def go():
        provider = WaveSpeedProvider("k", sim.base_url)
        verifier = Verifier()
        try:
            with StateLog(out / "state.jsonl") as log:
                log.open()
                runner = Runner(manifest.jobs, provider, log, manifest.models,
                                RunOptions(out_dir=out, retry_failed=True, poll=PollPolicy(min_interval=0.05)),
                                verifier=verifier, clock=lambda: LATER)
                return await runner.run()
        finally:
            verifier.shutdown()
            await provider.close()

    return manifest, asyncio.run(go())


@pytest.mark.parametrize("name", ["mixed", "compacted"])
def test_an_old_state_loads_as_it_was_written(name):
    state = load(FIXTURES / name / "out" / "state.jsonl")
    by_id = {}
    for rec in state.jobs.values():
        by_id.setdefault(rec.id, []).append(rec)
    assert [r.status for r in by_id["shot0"]] == [JobStatus.DOWNLOADED]
    old, new = sorted(by_id["shot2"], key=lambda r: bool(r.superseded_by))[::-1]
    assert old.superseded_by == new.key and old.status is JobStatus.DOWNLOADED
    assert new.status is JobStatus.UNKNOWN and new.body_hash
    assert by_id["shot3"][0].status is JobStatus.FAILED and by_id["shot3"][0].error_class == "task"
    assert len(state.uploads) == 4 and round(state.committed, 2) == 4.8


@pytest.mark.parametrize("name", ["mixed", "compacted"])
def test_an_old_state_resumes_to_completion_paying_each_job_once(sim, tmp_path, name):
    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    kept = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (folder / "out").glob("shot0[01]*.mp4")}
    manifest, result = _resume(sim, folder)
    assert result.exit_code == 0, result
    ledger = sim.ledger()
    # shot2 (lost answer, not on the new provider: never created) and shot3 (failed task, --retry-failed).
    assert len(ledger["submissions"]) == 2 and ledger["uploads"] == 2
    assert sorted(ledger["accepted_by_body_hash"].values()) == [1, 1]
    state = load(folder / "out" / "state.jsonl")
    for job in manifest.jobs:
        rec = state.jobs[job.key]
        assert rec.status is JobStatus.DOWNLOADED and (folder / "out" / rec.path).stat().st_size == rec.bytes
    for name_, digest in kept.items():
        assert hashlib.sha256((folder / "out" / name_).read_bytes()).hexdigest() == digest, "paid videos untouched"
    superseded = [r for r in state.jobs.values() if r.superseded_by]
    assert len(superseded) == 1 and (folder / "out" / superseded[0].path).exists(), "the edited row's video is kept"
