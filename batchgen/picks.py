"""Rows of takes, and the reviewer's picks among them (``<out>/picks.json``).

A *row* is what a manifest row made for one source image: its jobs share ``where``
(``manifest.yaml:LINE``) and ``image`` and differ by take (or by a listed duration or
resolution). Jobs without a ``where`` (older states) are grouped by their source image alone.
Only the newest record of each job id counts: a job edited since it ran is one take, not two.
A row key names the manifest by its file name only (``shots.yaml:4#img/mug.png``): ``where`` holds
the path as typed on the command line, and ``batchgen run ./shots.yaml`` from another folder must
not split a row in two or lose its picks (keys written with the whole path are read the same way).

``picks.json`` holds one entry per row, keyed by the row key::

    {"version": 1,
     "rows": {"batch.yaml:4#img/mug.png": {"status": "picked", "take": "<job key>",
                                            "job": "<job id>", "note": "", "time": "2026-12-04T05:00:00Z"}}}

``status`` is ``picked`` (``take`` names the chosen job), ``rejected`` or ``redo`` (``note`` may
say what to change, e.g. a prompt tweak). It is rewritten whole on every change (temp file,
fsync, os.replace), so a crash leaves the old picks or the new ones, never half a file.

For ``batchgen run MANIFEST --redo``: ``redo_rows(load_picks(out), state)`` gives each row marked
redo with its current jobs (the takes to add one to) and its note.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from .errors import StateError
from .lifecycle import JobStatus
from .state import JobRecord, State

PICKS_FILE = "picks.json"
VERSION = 1
STATUSES = ("picked", "rejected", "redo")
_TAKE = re.compile(r"-take(\d+)$")
_KEY = re.compile(r"(?P<where>.*?:\d+)#(?P<image>.*)", re.DOTALL)


@dataclass
class Row:
    """One manifest row's takes for one source image, in the order they were planned."""

    key: str
    where: str
    image: str
    takes: list[JobRecord] = field(default_factory=list)

    def take_number(self, rec: JobRecord) -> int:
        """The manifest's take number when the id carries it (``...-take2``), else the position in the row."""
        found = _TAKE.search(rec.id)
        return int(found.group(1)) if found else self.takes.index(rec) + 1


@dataclass
class RedoRow:
    """A row the reviewer wants generated again, with the note to apply."""

    row: Row
    note: str


def row_key(rec: JobRecord) -> str:
    return f"{_manifest_line(rec.where)}#{rec.image}" if rec.where else rec.image


def _manifest_line(where: str) -> str:
    """``/any/path/shots.yaml:4`` -> ``shots.yaml:4``."""
    path, colon, line = where.rpartition(":")
    return f"{PurePath(path).name}:{line}" if colon and line.isdigit() else PurePath(where).name


def _short(key: str) -> str:
    """A key written with the manifest's whole path, as the row key now reads; other keys stay as they are."""
    found = _KEY.fullmatch(key)
    return f"{_manifest_line(found['where'])}#{found['image']}" if found else key


def latest_records(state: State) -> list[tuple[JobRecord, list[JobRecord]]]:
    """The newest record of each job id, in the order ids first appeared, with the older ones."""
    order: dict[str, list[JobRecord]] = {}
    for rec in state.jobs.values():
        if rec.id:
            order.setdefault(rec.id, []).append(rec)
    return [(recs[-1], recs[:-1]) for recs in order.values()]


def group_rows(state: State) -> list[Row]:
    """Every row of the batch, in the order their first job appeared."""
    rows: dict[str, Row] = {}
    for rec, _ in latest_records(state):
        key = row_key(rec)
        row = rows.get(key)
        if row is None:
            row = rows[key] = Row(key, rec.where, rec.image)
        row.takes.append(rec)
    return list(rows.values())


def load_picks(out_dir: Path) -> dict[str, dict[str, Any]]:
    """The picks by row key; empty when nobody reviewed yet. StateError for a file this version cannot read."""
    path = Path(out_dir) / PICKS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StateError(f"{path}: cannot read the picks ({exc}); fix or remove the file and review again") from exc
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("rows"), dict):
        raise StateError(f"{path}: not a picks file of version {VERSION}; it was written by another batchgen "
                         "version: move it aside and review again")
    for key, entry in data["rows"].items():
        if not isinstance(entry, dict) or entry.get("status") not in STATUSES or not all(
                isinstance(entry.get(name, ""), str) for name in ("take", "note", "redo_take")):
            raise StateError(f"{path}: the entry for row {key!r} is not a pick ({json.dumps(entry)[:80]}); fix or "
                             "remove it (or the file) and review again")
    return {_short(key): entry for key, entry in data["rows"].items()}


def save_picks(out_dir: Path, rows: dict[str, dict[str, Any]]) -> Path:
    """Write all picks atomically: a temp file in the same folder, fsynced, then renamed over the old one."""
    out_dir = Path(out_dir)
    path = out_dir / PICKS_FILE
    text = json.dumps({"version": VERSION, "rows": rows}, indent=1, sort_keys=True, ensure_ascii=False)
    fd, tmp = tempfile.mkstemp(prefix=".picks-", suffix=".tmp", dir=out_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(out_dir, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return path


def make_pick(row: Row, status: str, take: str = "", note: str = "", now: float | None = None) -> dict[str, Any]:
    """A validated picks entry for ``row``; ValueError says what is wrong with the request."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    chosen = next((r for r in row.takes if r.key == take), None)
    if status == "picked" and (chosen is None or chosen.status is not JobStatus.DOWNLOADED):
        raise ValueError(f"take {take!r} is not a downloaded take of row {row.key}")
    if status != "picked" and take:
        raise ValueError("only a pick names a take")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))
    return {"status": status, "take": take, "job": chosen.id if chosen else "", "note": str(note).strip(),
            "time": stamp}


def kept_redo_link(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``new``, keeping the take an earlier --redo made for the row when it is marked redo again with the
    same note (pressing r to read the note must not order, and pay for, another take); a new note is
    a new request."""
    if (old and old.get("redo_take") and old.get("status") == new["status"] == "redo"
            and old.get("note", "") == new["note"]):
        return {**new, "redo_take": old["redo_take"]}
    return new


def picked_records(picks: dict[str, dict[str, Any]], state: State) -> list[tuple[Row, JobRecord]]:
    """Each picked row with its chosen job, in row order; picks naming a job no longer in the state are left out."""
    found = []
    for row in group_rows(state):
        entry = picks.get(row.key) or {}
        if entry.get("status") == "picked":
            chosen = next((r for r in row.takes if r.key == entry.get("take")), None)
            if chosen is not None:
                found.append((row, chosen))
    return found


def redo_rows(picks: dict[str, dict[str, Any]], state: State) -> list[RedoRow]:
    """The rows marked redo, in row order, each with its jobs and the reviewer's note ('' when none).

    Pure: reads nothing but its arguments. A redo entry whose row is no longer in the state
    (the manifest was edited so its jobs moved to other lines) is left out."""
    return [RedoRow(row, str(picks[row.key].get("note", ""))) for row in group_rows(state)
            if picks.get(row.key, {}).get("status") == "redo"]
