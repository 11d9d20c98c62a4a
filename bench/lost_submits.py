"""What became of the torture run's paid predictions: on disk or left on the server, and whether each
lost submit answer was matched to its own job (bench/torture.py's money figures)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from batchgen.state import State

#: reconcile.py's log line when a lost submit is adopted.
_FOUND = re.compile(r"job (\S+): found its lost submit on the provider as (\S+) \((same request|its output matches)\)")


def found_in_log(log_file: Path) -> list[tuple[str, str, str]]:
    """(job id, prediction id, how) for every lost submit adopted, as batchgen.log recorded them."""
    try:
        text = log_file.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return _FOUND.findall(text)


def _shas_on_disk(out: Path) -> set[str]:
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*.mp4") if p.is_file()}


def money_figures(state: State, ledger: dict[str, Any], out: Path) -> dict[str, Any]:
    """Paid videos left on the server, and how the lost submits were matched."""
    on_disk = _shas_on_disk(out)
    completed = [s for s in ledger["submissions"] if s["status"] == "completed"]
    left = [s["id"] for s in completed if ledger["outputs"].get(s["id"]) not in on_disk]
    body_of = {s["id"]: s["body_hash"] for s in ledger["submissions"]}
    job_hash = {r.id: r.body_hash for r in state.jobs.values()}
    found = found_in_log(out / "batchgen.log")
    own = [f for f in found if body_of.get(f[1]) == job_hash.get(f[0])]
    by_output = [f for f in found if f[2] == "its output matches"]
    unmatched = sorted(p.stem for p in (out / "unmatched").glob("*.mp4")) if (out / "unmatched").is_dir() else []
    return {
        "paid videos left on the server": len(left),
        "lost submits found": len(found),
        "  of them by their output (no input)": len(by_output),
        "  matched to their own job": f"{len(own)} of {len(found)}" + (
            f" ({100 * len(own) / len(found):.0f} %)" if found else ""),
        "kept in unmatched/": len(unmatched),
        "_left_ids": left,
        "_wrong": [f for f in found if f not in own],
    }
