"""A state belongs to one API: a rehearsal's state is never resumed against the real API, and back."""

from __future__ import annotations

import pytest
from runner_helpers import make_images, run_cli, write_manifest

from batchgen.api_origin import check_same_api, identity, is_rehearsal
from batchgen.cli import main
from batchgen.errors import UsageError
from batchgen.state import StateLog, load
from batchgen.state_events import Run

REAL = "https://api.wavespeed.ai"


def runs(base_url: str, provider: str = "wavespeed") -> list[dict]:
    return [{"phase": "start", **identity(provider, base_url)}, {"phase": "end"}]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:9", "http://[::1]:80", "http://127.3.2.1"])
def test_loopback_urls_are_rehearsals(url):
    assert is_rehearsal(url)


@pytest.mark.parametrize("url", [REAL, "https://10.0.0.2", "https://localhost.example.com"])
def test_other_urls_are_real(url):
    assert not is_rehearsal(url)


def test_old_states_without_a_record_load_as_before():
    check_same_api([{"phase": "start", "jobs": 3}], "wavespeed", REAL, "s.jsonl")


def test_rehearsals_resume_each_other_and_a_real_api_resumes_itself():
    check_same_api(runs("http://127.0.0.1:4000"), "wavespeed", "http://127.0.0.1:5000", "s.jsonl")
    check_same_api(runs(REAL), "wavespeed", REAL, "s.jsonl")


def test_a_rehearsal_state_is_refused_against_the_real_api_with_why_and_what_to_do():
    with pytest.raises(UsageError) as caught:
        check_same_api(runs("http://127.0.0.1:4000"), "wavespeed", REAL, "out/state.jsonl")
    message = str(caught.value)
    assert "out/state.jsonl" in message and "rehearsal" in message and "never paid" in message
    assert "loopback" in message and "--out" in message and "--allow-other-api" in message


def test_a_real_state_is_refused_in_a_rehearsal_and_against_another_real_url():
    with pytest.raises(UsageError, match="does not know its paid predictions"):
        check_same_api(runs(REAL), "wavespeed", "http://127.0.0.1:4000", "s.jsonl")
    with pytest.raises(UsageError, match="live there"):
        check_same_api(runs(REAL), "wavespeed", "https://eu.example.com", "s.jsonl")
    with pytest.raises(UsageError):
        check_same_api(runs(REAL, "replicate"), "wavespeed", REAL, "s.jsonl")


# -- the CLI, over real HTTP against the simulator ---------------------------------------------------
def test_a_rehearsal_state_is_refused_against_the_real_api_before_any_request(sim, tmp_path, capsys, monkeypatch):
    """Issue 12: a rehearsal, then a real run on the same manifest, reported "3 done, $0.00" and sent a dead
    loopback upload URL to the real API."""
    make_images(tmp_path / "img", 2)
    manifest, out = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "p {stem}", "duration": 4}]), tmp_path / "out"
    assert run_cli(sim, manifest, out) == 0
    before = (out / "state.jsonl").read_bytes()
    monkeypatch.setenv("WAVESPEED_API_KEY", "k")
    assert main(["run", str(manifest), "--out", str(out), "--base-url", REAL, "--yes"]) == 2
    err = capsys.readouterr().err
    assert "rehearsal" in err and "--allow-other-api" in err and "another --out" in err
    assert (out / "state.jsonl").read_bytes() == before


def test_a_real_state_is_refused_in_a_rehearsal_unless_the_flag_says_so(sim, tmp_path, capsys):
    make_images(tmp_path / "img", 1)
    manifest, out = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "p {stem}", "duration": 4}]), tmp_path / "out"
    out.mkdir()
    with StateLog(out / "state.jsonl") as log:
        log.open()
        log.append(Run({"phase": "start", "jobs": 1, **identity("wavespeed", REAL)}))
    assert run_cli(sim, manifest, out) == 2
    assert "does not know its paid predictions" in capsys.readouterr().err and sim.ledger()["submissions"] == []
    assert run_cli(sim, manifest, out, "--allow-other-api") == 0
    assert load(out / "state.jsonl").runs[-2]["base_url"] == sim.base_url
