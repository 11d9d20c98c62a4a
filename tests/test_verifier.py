"""Verification in worker processes: batched calls, one result per file, a dead worker replaced."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from conftest import image_bytes

from batchgen.errors import TransientError, VerificationError
from batchgen.simulator.render import render_mp4
from batchgen.verifier import Verifier


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "good.mp4"
    path.write_bytes(render_mp4(image_bytes(), 640, 360, 4, 0, 0))
    return path


def test_files_that_queue_up_share_worker_calls_and_each_gets_its_own_answer(clip, tmp_path):
    good = []
    for i in range(24):
        path = tmp_path / f"good{i}.mp4"
        path.write_bytes(clip.read_bytes())
        good.append(path)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])

    async def run():
        verifier = Verifier(workers=1, batch=8)
        try:
            calls = [verifier.verify(str(p), "360p", 4.0, None, 0.6, True) for p in good + [cut]]
            results = await asyncio.gather(*calls, return_exceptions=True)
            return results, verifier.calls
        finally:
            verifier.shutdown()

    results, calls = asyncio.run(run())
    assert all(min(r.width, r.height) == 360 for r in results[:-1])
    assert isinstance(results[-1], VerificationError)
    assert calls <= 25 // 8 + 2, f"{calls} worker calls for 25 files"


def test_a_dead_worker_fails_its_batch_as_transient_and_a_new_one_takes_over(clip):
    async def run():
        verifier = Verifier(workers=1)
        try:
            await verifier.verify(str(clip), "360p", 4.0, None, 0.6, True)
            for pid in list(verifier._pool._processes):
                os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.5)
            with pytest.raises(TransientError, match="worker died"):
                await verifier.verify(str(clip), "360p", 4.0, None, 0.6, True)
            return await verifier.verify(str(clip), "360p", 4.0, None, 0.6, True)
        finally:
            verifier.shutdown()

    info = asyncio.run(run())
    assert info.height == 360


def test_errors_come_back_as_raised_so_the_job_keeps_its_download_class(monkeypatch):
    """An OSError or ValueError from verifying is a download failure (--retry-failed fetches the
    video again); wrapped in RuntimeError it became 'internal', which the plan resubmitted."""
    import batchgen.verifier as verifier_module

    def failing(path, *args):
        raise {"io": OSError(5, "Input/output error"), "value": ValueError("bad"), "bug": KeyError("x")}[path]

    monkeypatch.setattr(verifier_module, "verify", failing)
    io, value, bug = verifier_module.verify_many([(name, "720p", 4.0, None, 0.6, True) for name in ("io", "value", "bug")])
    assert type(io) is OSError and io.errno == 5
    assert type(value) is ValueError
    assert type(bug) is RuntimeError and "KeyError" in str(bug)  # anything else, as text that always pickles
