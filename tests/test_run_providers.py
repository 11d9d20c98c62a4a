"""``batchgen run`` on a manifest that uses two providers: a client (or a local simulator) per provider,
each keyed from its own variable."""

from __future__ import annotations

import pytest
from runner_helpers import make_images, write_manifest

from batchgen.cli import main
from batchgen.lifecycle import JobStatus
from batchgen.models import SEEDANCE
from batchgen.state import load

REPLICATE = "replicate:bytedance/seedance-2.0"


@pytest.fixture
def mixed(tmp_path):
    make_images(tmp_path / "img", 2)
    rows = [{"image": f"img/shot{i:02d}.png", "prompt": "The {stem} spins", "duration": 4, "resolution": "480p",
             "model": model} for i, model in enumerate([SEEDANCE, REPLICATE])]
    return write_manifest(tmp_path, rows), tmp_path / "out"


def test_local_starts_a_simulator_per_provider_and_routes_each_job(mixed, capsys, monkeypatch):
    manifest, out = mixed
    monkeypatch.delenv("WAVESPEED_API_KEY", raising=False)
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    assert main(["run", str(manifest), "--out", str(out), "--provider", "local", "--yes", "--poll-min", "0.05"]) == 0
    err = capsys.readouterr().err
    assert err.count("using the local simulator at") == 2
    assert "(wavespeed: no key" in err and "(replicate: no key" in err
    assert "2 downloaded" in err
    by_id = {r.id: r for r in load(out / "state.jsonl").jobs.values()}
    ws, rep = by_id["shot00-4s-480p"], by_id["shot01-4s-480p"]
    assert ws.status is rep.status is JobStatus.DOWNLOADED
    assert not ws.pid.startswith("replicate:") and rep.pid.startswith("replicate:")
    assert (out / "shot01-4s-480p.mp4").stat().st_size > 0


def test_a_missing_key_names_its_variable_and_the_jobs_that_need_it(mixed, capsys, monkeypatch):
    manifest, out = mixed
    monkeypatch.setenv("WAVESPEED_API_KEY", "k")
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    assert main(["run", str(manifest), "--out", str(out), "--yes"]) == 2
    err = capsys.readouterr().err
    assert "set the REPLICATE_API_TOKEN environment variable for the 1 job(s) on replicate (shot01-4s-480p)" in err
    assert "WAVESPEED_API_KEY" not in err and not (out / "state.jsonl").exists()


def test_base_url_is_ambiguous_when_the_manifest_uses_two_providers(mixed, capsys, monkeypatch):
    manifest, out = mixed
    monkeypatch.setenv("WAVESPEED_API_KEY", "k")
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r")
    assert main(["run", str(manifest), "--out", str(out), "--yes", "--base-url", "http://127.0.0.1:9"]) == 2
    assert "--base-url is ambiguous: the manifest uses wavespeed, replicate; set WAVESPEED_BASE_URL / " \
           "REPLICATE_BASE_URL instead" in capsys.readouterr().err


def test_provider_must_be_one_the_manifest_uses(tmp_path, capsys, monkeypatch):
    make_images(tmp_path / "img", 1)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "p", "duration": 4, "model": SEEDANCE}])
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r")
    assert main(["run", str(manifest), "--out", str(tmp_path / "out"), "--yes", "--provider", "replicate"]) == 2
    assert "--provider replicate: none of the manifest's models is on replicate" in capsys.readouterr().err


@pytest.mark.parametrize("concurrency,limit", [(1, 16), (8, 16), (20, 40), (128, 256), (2000, 256)])
def test_each_provider_keeps_two_connections_per_slot_up_to_a_few_hundred(mixed, monkeypatch, concurrency, limit):
    """A Gold account's 2,000 slots once opened 4,000 connections at the first wave: a handshake each,
    and 25 MB of the runner's memory, where a few hundred reused serve the same requests."""
    import asyncio

    from batchgen.manifest import load_manifest
    from batchgen.poll_policy import PollPolicy
    from batchgen.run_providers import real_clients

    manifest, _ = mixed
    monkeypatch.setenv("WAVESPEED_API_KEY", "k")
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r")

    async def limits():
        clients = await real_clients(load_manifest(manifest).jobs, None, None, PollPolicy(), concurrency)
        try:
            return {name: member._session.connector.limit for name, member in clients.provider.members.items()}
        finally:
            await clients.provider.close()

    assert asyncio.run(limits()) == {"wavespeed": limit, "replicate": limit}
