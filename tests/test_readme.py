"""The README's demo, as a new user runs it: the run command of its first set-up line, on the local
simulator, in a subprocess; and a second run that finds everything done and pays nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, flags=re.S)


def test_the_readme_has_two_setup_commands_the_demo_and_the_tests():
    demo, tests = _setup_commands()
    assert "batchgen run manifests/demo.yaml --provider local --yes" in demo
    assert tests.endswith("-m pytest -q")


@pytest.mark.slow
def test_the_demo_runs_on_the_local_simulator_and_a_second_run_pays_nothing(tmp_path):
    demo = _setup_commands()[0].split("&&")[-1].split()
    args = demo[demo.index("run"):] + ["--out", str(tmp_path / "demo")]
    first = subprocess.run([sys.executable, "-m", "batchgen", *args], cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stderr
    assert "6 downloaded, 0 failed, 0 unknown" in first.stderr
    assert len(list((tmp_path / "demo").glob("*.mp4"))) == 6
    again = subprocess.run([sys.executable, "-m", "batchgen", *args], cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert "about to pay: $0.00 for 0 submit(s)" in again.stderr
