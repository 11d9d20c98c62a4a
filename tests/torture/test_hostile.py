"""Hostile server answers (batchgen/simulator/hostile.py): each one is a clear error on one job, recorded
in the state, while the rest of the batch finishes; the run never crashes."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from conftest import API_KEY, run
from runner_helpers import make_images, run_cli, write_manifest

from batchgen.errors import PermanentError
from batchgen.lifecycle import JobStatus
from batchgen.models import SORA_PRO
from batchgen.providers.wavespeed import WaveSpeedProvider
from batchgen.state import load

# mode -> what the failed job's error must say
EXPECTED = {
    "file-scheme": "the output URL uses file scheme",
    "ftp-scheme": "the output URL uses ftp scheme",
    "redirect-loop": "too many redirects",
    "huge": "10,000,000,000 bytes, over the 4,294,967,296-byte cap",
    "html-content-type": "the server sent 'text/html', not a video",
}


def set_hostile(sim, **changes) -> dict:
    request = urllib.request.Request(f"{sim.base_url}/_sim/hostile", data=json.dumps(changes).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def pair(tmp_path):
    make_images(tmp_path / "img", 2)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} turns", "duration": 4}])
    return manifest, tmp_path / "out"


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_hostile_answer_fails_one_job_and_the_batch_goes_on(sim, pair, mode, capsys):
    manifest, out = pair
    assert set_hostile(sim, mode=mode, count=1) == {"mode": mode, "left": 1, "output_base_url": None}
    assert run_cli(sim, manifest, out) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert set_hostile(sim)["left"] == 0, "the hostile answer was served"
    state = load(out / "state.jsonl")
    statuses = sorted(r.status.value for r in state.jobs.values())
    assert statuses == ["downloaded", "failed"], statuses
    failed = next(r for r in state.jobs.values() if r.status is JobStatus.FAILED)
    assert EXPECTED[mode] in failed.error, failed.error
    assert f"failed  {failed.id}" in err and EXPECTED[mode] in err
    assert not list(out.rglob("*.part")), "a refused download leaves no .part behind"
    assert not (out / failed.output).exists()
    assert len(sim.ledger()["submissions"]) == 2, "a hostile answer never causes a second submit"


@pytest.mark.parametrize("mode", ["non-json", "no-data"])
def test_one_unreadable_result_answer_is_read_again_not_failed(sim, pair, mode, capsys):
    # Issue 15 item 8: the task is paid; one HTML page or envelope without data is a glitch.
    manifest, out = pair
    set_hostile(sim, mode=mode, count=1)
    assert run_cli(sim, manifest, out) == 0, capsys.readouterr().err
    assert set_hostile(sim)["left"] == 0, "the hostile answer was served"
    state = load(out / "state.jsonl")
    assert sorted(r.status.value for r in state.jobs.values()) == ["downloaded", "downloaded"]
    assert len(sim.ledger()["submissions"]) == 2


def test_unknown_hostile_mode_is_refused_by_name(sim):
    with pytest.raises(urllib.error.HTTPError) as info:
        set_hostile(sim, mode="teapot")
    assert info.value.code == 400 and "teapot" in info.value.read().decode()


def test_endless_body_without_length_stops_at_the_size_cap(sim, tmp_path):
    async def body() -> str:
        provider = WaveSpeedProvider(API_KEY, sim.base_url)
        try:
            pred = await provider.submit(SORA_PRO, {"image": "data:image/png;base64," + _png_b64(),
                                                    "prompt": "a slow turn", "duration": 4})
            while not (pred := await provider.result(pred.id)).outputs:
                await asyncio.sleep(0.05)
            set_hostile(sim, mode="huge-stream", count=1)
            with pytest.raises(PermanentError) as info:
                await provider.download(pred.outputs[0], tmp_path / "v.mp4.part", max_bytes=1 << 20)
            return str(info.value)
        finally:
            await provider.close()

    assert "passed the 1,048,576-byte cap" in run(body())
    assert (tmp_path / "v.mp4.part").stat().st_size <= 1 << 20


def _png_b64() -> str:
    import base64

    from conftest import image_bytes
    return base64.b64encode(image_bytes()).decode()
