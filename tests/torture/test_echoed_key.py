"""A key echoed back by the server never reaches the state or the report (issue 15 item 3, storage side).

The simulator's moderation failure is fixed text; a key chosen to be a phrase of that text makes the
server "echo" it, so the real run path (server -> error -> state -> report) is exercised unmocked."""

from __future__ import annotations

from runner_helpers import make_images, run_cli, write_manifest

from batchgen.cli import main
from batchgen.simulator import Faults
from batchgen.simulator.tasks import MODERATION_ERROR

ECHOED = "content moderation system"


def test_a_key_echoed_in_a_failure_is_masked_in_the_state_and_the_report(make_sim, tmp_path, capsys):
    assert ECHOED in MODERATION_ERROR
    sim = make_sim(faults=Faults(rate_fail=1.0))
    make_images(tmp_path / "img", 1)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} turns", "duration": 4}])
    out = tmp_path / "out"
    assert run_cli(sim, manifest, out, key=ECHOED) == 1
    assert main(["report", str(out / "state.jsonl")]) == 0
    capsys.readouterr()
    state, page = (out / "state.jsonl").read_text(), (out / "report.html").read_text()
    assert "rejected by the ***:" in state, "the failure was recorded, masked"
    assert ECHOED not in state and ECHOED not in page
