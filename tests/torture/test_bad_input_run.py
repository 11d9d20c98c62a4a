"""Every bad manifest of test_manifest.BAD through ``batchgen run`` against a live simulator: exit 2, one
message naming the file and line (or row), and not one request on the wire (the ledger says so)."""

from __future__ import annotations

import pytest
from runner_helpers import run_cli
from test_manifest import BAD, make_manifest_folder

from batchgen.images import clear_memory_cache
from batchgen.simulator import SimulatorThread


@pytest.fixture(scope="module")
def quiet_sim(tmp_path_factory):
    """One simulator for all cases: any request from any case would show in its ledger."""
    from batchgen.simulator import SimConfig
    with SimulatorThread(SimConfig(gen_base=0.05)) as sim:
        yield sim


@pytest.fixture(autouse=True)
def sora_pro_default(monkeypatch):
    """test_manifest.BAD was written when Sora 2 Pro was the default model (see test_manifest.py)."""
    monkeypatch.setattr("batchgen.manifest_rows.DEFAULT_MODEL", "openai/sora-2/image-to-video-pro")


@pytest.fixture
def folder(tmp_path):
    clear_memory_cache()
    return make_manifest_folder(tmp_path)


def test_there_are_at_least_30_cases():
    assert len(BAD) >= 30


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_manifest_run_exits_2_names_the_line_and_sends_nothing(quiet_sim, folder, case, capsys):
    content, name, expected = BAD[case]
    manifest = folder / name
    if isinstance(content, bytes):
        manifest.write_bytes(content)
    else:
        manifest.write_text(content, encoding="utf-8")
    assert run_cli(quiet_sim, manifest, folder / "out") == 2
    err = capsys.readouterr().err
    assert err.startswith("batchgen: "), err
    for line, text in expected:
        where = f"{manifest}:{line}:" if line else str(manifest)
        assert where in err, (where, err)
        assert text in err, (text, err)
    assert "Traceback" not in err
    assert quiet_sim.ledger()["requests"] == {}, "a bad manifest must not cost a single request"
    assert not (folder / "out" / "state.jsonl").exists()
