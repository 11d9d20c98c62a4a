"""The command line as a layer: parse-time checks, help text, validate's output, the import graph."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from runner_helpers import make_images, write_manifest

import batchgen
from batchgen.cli import build_parser, main
from batchgen.plan_table import warning_lines
from batchgen.manifest import load_manifest

PACKAGE = Path(batchgen.__file__).parent


@pytest.fixture
def manifest(tmp_path):
    make_images(tmp_path / "img", 2)
    return write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} spins", "duration": 4}])


# -- numbers and URLs are refused at parse time (exit 2, the option named, nothing done) ----------
@pytest.mark.parametrize("option, value", [
    ("--poll-min", "0"), ("--poll-min", "-1"), ("--poll-min", "nan"), ("--poll-min", "inf"),
    ("--concurrency", "0"), ("--concurrency", "-3"), ("--concurrency", "two"),
    ("--download-concurrency", "0"),
    ("--max-cost", "nan"), ("--max-cost", "inf"), ("--max-cost", "-5"), ("--max-cost", "0"),
    ("--confirm-above", "nan"), ("--confirm-above", "-1"),
    ("--base-url", "notaurl"), ("--base-url", "ftp://example.com"), ("--base-url", "http://"),
    ("--base-url", "http://host:port"),
])
def test_run_refuses_an_out_of_range_option_before_doing_anything(manifest, tmp_path, capsys, monkeypatch,
                                                                  option, value):
    monkeypatch.setenv("WAVESPEED_API_KEY", "k")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        main(["run", str(manifest), "--out", str(out), "--yes", f"{option}={value}"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"argument {option}" in err and "batchgen run --help" in err
    assert not out.exists(), "nothing was prepared for a run that cannot start"


def test_sensible_values_parse_to_numbers():
    args = build_parser().parse_args(["run", "m.yaml", "--poll-min", "0.05", "--concurrency", "8",
                                      "--download-concurrency", "2", "--max-cost", "12.5", "--confirm-above", "0",
                                      "--base-url", "http://127.0.0.1:8000"])
    assert (args.poll_min, args.concurrency, args.download_concurrency) == (0.05, 8, 2)
    assert (args.max_cost, args.confirm_above, args.base_url) == (12.5, 0.0, "http://127.0.0.1:8000")


def test_a_negative_budget_from_the_real_command_line_is_one_line_and_exit_2(manifest):
    done = subprocess.run([sys.executable, "-m", "batchgen", "run", str(manifest), "--max-cost", "-5"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("batchgen run: argument --max-cost: must be more than $0 (got -5)")
    assert "Traceback" not in done.stderr


# -- help ---------------------------------------------------------------------------------------
def _subparsers(parser):
    action = next(a for a in parser._actions if a.dest == "command")
    return action, action.choices


def test_every_subcommand_has_a_description_and_the_top_help_lists_them(capsys):
    parser = build_parser()
    action, commands = _subparsers(parser)
    top = parser.format_help()
    for choice in action._choices_actions:
        assert choice.help, choice.dest
        assert any(line.split()[:1] == [choice.dest] and choice.help in line for line in top.splitlines())
    for name, sub in commands.items():
        assert sub.description and len(sub.description) > 40, f"'batchgen {name} --help' has no description"
    with pytest.raises(SystemExit) as stopped:
        main(["validate", "--help"])
    assert stopped.value.code == 0
    assert "Nothing is sent and nothing is paid" in capsys.readouterr().out


# -- validate -----------------------------------------------------------------------------------
def test_validate_prints_jobs_seconds_and_price(manifest, capsys):
    assert main(["validate", str(manifest)]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{manifest}: OK, 2 jobs, 8 s of video, $2.40 at list price\n"
    # The test pictures are 96x64 and the test model is Sora 2 (retired): only those are flagged, on stderr.
    assert [line for line in captured.err.splitlines()
            if "under 256 px" not in line and "retired upstream" not in line] == []


def test_validate_prints_each_warning_the_manifest_loader_reports(manifest):
    loaded = load_manifest(manifest)
    loaded.warnings = ["batch.yaml:3: the row expands to 60 jobs", "img/a.png is 16x16 px"]
    assert warning_lines(loaded.warnings) == ["warning: batch.yaml:3: the row expands to 60 jobs",
                                              "warning: img/a.png is 16x16 px"]


# -- one layer, no import cycle -----------------------------------------------------------------
def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            names.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_estimate_and_status_build_data_and_only_the_entry_points_import_the_cli():
    for name in ("estimate.py", "status.py"):
        source = (PACKAGE / name).read_text(encoding="utf-8")
        calls = {n.func.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Name)}
        assert "print" not in calls and "argparse" not in _imports(PACKAGE / name), name
    importers = {p.stem for p in PACKAGE.rglob("*.py") if {".cli", "batchgen.cli"} & _imports(p)}
    assert importers == {"__main__"}, "only the entry point imports the CLI: no cycle"
    for name in ("cli_common.py", "run_env.py"):
        assert not any(n.startswith((".cli", "batchgen.cli")) for n in _imports(PACKAGE / name)), name


def test_simulate_help_explains_every_fault_name():
    """Issue 14 item 14: each --fault name is explained, not only listed."""
    from batchgen.simulator.config import FAULT_FLAGS

    _, commands = _subparsers(build_parser())
    text = commands["simulate"].format_help()
    for name in FAULT_FLAGS:
        assert any(line.split()[:1] == [name] and len(line.split()) > 4 for line in text.splitlines()), name
