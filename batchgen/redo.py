"""``batchgen run MANIFEST --redo``: one new take for each row the reviewer marked redo.

The new take is the row's job as the manifest makes it now, with the reviewer's note in ``{note}``
(empty in every other run), the next free take number, and its own id and output (``-take<N>``);
the row's old takes stay. It goes through the usual plan, estimate and confirmation, and only once
the user said yes is the row's picks entry linked to it (``redo_take``: its job key). A linked take
is never planned again as a new one: a second ``--redo`` resumes it (or finds it done) instead of
paying twice. Deciding is pure (``redo_jobs``); ``link_redo_takes`` writes the picks.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .jobs import JobSpec
from .picks import RedoRow, load_picks, redo_rows, save_picks
from .state import State

log = logging.getLogger("batchgen")
_TAKE = re.compile(r"-take(\d+)$")


@dataclass
class Redo:
    """What ``--redo`` adds to a run: the take jobs, the picks links to write once confirmed, and why
    a marked row got no take."""

    jobs: list[JobSpec] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    unused_notes: list[str] = field(default_factory=list)
    rows: int = 0


def notes_of(rows: list[RedoRow]) -> dict[tuple[int, str], str]:
    """The reviewer's notes by manifest row line and image as written (what load_manifest takes)."""
    return {(_line(r.row.where), r.row.image): r.note for r in rows}


def redo_jobs(rows: list[RedoRow], picks: dict[str, dict[str, Any]], noted: list[JobSpec],
              taken: list[JobSpec], state: State) -> Redo:
    """Pure: the redo takes for ``rows``. ``noted`` is the manifest's jobs rendered with the notes;
    ``taken`` the jobs the run already has (their ids and outputs are not reused)."""
    redo = Redo(rows=len(rows))
    ids = {j.id for j in taken} | {r.id for r in state.jobs.values()}
    outputs = {j.output.casefold() for j in taken} | {r.output.casefold() for r in state.jobs.values()}
    for item in rows:
        row = item.row
        first = _row_job(row, noted)
        if first is None:
            redo.skipped.append(f"{row.where} ({row.image}): no longer in the manifest; mark it again after a run")
            continue
        linked = str(picks.get(row.key, {}).get("redo_take", ""))
        if linked in state.jobs:
            again = _rebuilt(first, state, linked)
            if again is None:
                redo.skipped.append(f"{row.where} ({row.image}): its redo take {state.jobs[linked].id} was made from "
                                    "another version of the row; it stays as it is")
            else:
                redo.jobs.append(again)
            continue
        if item.note and any(j.id == first.id and j.prompt == first.prompt for j in taken):
            redo.unused_notes.append(f"{row.where} ({row.image}): the note {item.note!r} is not in the prompt, which "
                                     "has no {note}; the new take gets the same prompt (add {note} to the row's "
                                     "prompt to use it)")
        take = _new_take(first, max([row.take_number(r) for r in row.takes] + [first.take]) + 1, ids, outputs)
        ids.add(take.id)
        outputs.add(take.output.casefold())
        redo.jobs.append(take)
        redo.links[row.key] = take.key
    return redo


def _line(where: str) -> int:
    _, _, line = where.rpartition(":")
    return int(line) if line.isdigit() else 0


def _row_job(row, noted: list[JobSpec]) -> JobSpec | None:
    """The manifest's job for this row (its first take's, if the manifest still makes it)."""
    line = _line(row.where)
    same = [j for j in noted if j.where.line == line and j.image == row.image]
    first_id = row.takes[0].id if row.takes else ""
    return next((j for j in same if j.id == first_id), same[0] if same else None)


def _named(name: str, take: int) -> str:
    return f"{_TAKE.sub('', name)}-take{take}"


def _new_take(job: JobSpec, take: int, ids: set[str], outputs: set[str]) -> JobSpec:
    while True:
        spec = replace(job, take=take, id=_named(job.id, take), output=_named(job.output[:-4], take) + ".mp4")
        if spec.id not in ids and spec.output.casefold() not in outputs:
            return spec
        take += 1


def _rebuilt(job: JobSpec, state: State, key: str) -> JobSpec | None:
    """The spec of a redo take already in the state, proved by its key (model, image, params unchanged)."""
    rec = state.jobs[key]
    found = _TAKE.search(rec.id)
    spec = replace(job, take=int(found.group(1)) if found else job.take, id=rec.id, output=rec.output,
                   prompt=rec.prompt)
    return spec if spec.key == key else None


def plan_redo(out_dir: Path, state: State, load_noted: Callable[[dict[tuple[int, str], str]], list[JobSpec]],
              taken: list[JobSpec]) -> Redo:
    """Read the picks and the manifest with the notes, and decide the redo takes."""
    picks = load_picks(out_dir)
    rows = redo_rows(picks, state)
    if not rows:
        return Redo()
    redo = redo_jobs(rows, picks, load_noted(notes_of(rows)), taken, state)
    for reason in redo.skipped + redo.unused_notes:
        log.warning("--redo: %s", reason)
    return redo


def link_redo_takes(out_dir: Path, links: dict[str, str]) -> None:
    """Record each row's new take in its picks entry (re-read first: the review page may have saved since)."""
    if not links:
        return
    picks = load_picks(out_dir)
    for row_key, take_key in links.items():
        if picks.get(row_key, {}).get("status") == "redo":
            picks[row_key] = {**picks[row_key], "redo_take": take_key}
    save_picks(out_dir, picks)
