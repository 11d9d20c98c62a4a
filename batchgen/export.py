"""``batchgen export STATE --to DIR``: a clean delivery folder of the picked takes (or, with ``--all``,
of every downloaded video), with a poster JPEG per video and an ``index.csv`` + ``index.json``.

Videos are hard-linked from the output folder when DIR is on the same device (no space used),
copied otherwise. Names come from ``--name``, a template over the manifest's ``output:``
placeholders (``{id}``, ``{stem}``, ``{duration}``, ``{resolution}``, ``{take}``,
``{model_name}``), cleaned like an output name and refused if they would land outside DIR.

Export again and nothing changes that need not: a video already in place with the recorded
size and hash (or the very same file) is left untouched, as are its poster and an identical
index; a file exported earlier that is no longer picked is removed (only files listed in the
previous index.json are ever removed). Every source video is checked against the size and
sha256 the state recorded at download: a missing or altered one is reported with its job id
and the command exits 1, after exporting the rest; so is a pick whose take is no longer one of
its row's (the job was edited and ran again, or the row moved in the manifest).

In ``index.csv`` a text cell a spreadsheet would take for a formula (a prompt starting with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return) gets a leading ``'``, so opening the delivery runs
nothing; ``index.json`` keeps every value exactly.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .cli_types import state_file
from .errors import OutputPathError, StateError, UsageError
from .fsguard import replace_whole
from .lifecycle import JobStatus
from .manifest_fields import output_name, render
from .picks import Row, group_rows, load_picks, picked_records
from .probe import poster_frame, probe_video
from .state import JobRecord, State, load

INDEX_FIELDS = ("id", "file", "source_image", "prompt", "model_used", "duration", "resolution", "cost",
                "prediction_id")
POSTER_PX = 1280
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CHUNK = 1 << 20


@dataclass
class ExportResult:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def add_export_arguments(subparsers: Any) -> None:
    export = subparsers.add_parser(
        "export", help="copy the picked videos (or --all) into a delivery folder",
        description="Hard-link (or copy) the takes picked in 'batchgen review', or every downloaded video with "
                    "--all, into DIR with a poster JPEG each and index.csv + index.json. Run it again after "
                    "changing picks: only what changed is touched. Exits 1 if a video is missing or altered.")
    export.add_argument("state", type=state_file, help="the state file of the batch, or its folder")
    export.add_argument("--to", type=Path, required=True, metavar="DIR", help="the delivery folder")
    export.add_argument("--all", action="store_true", help="every downloaded video, not only the picked takes")
    export.add_argument("--name", default="{id}", metavar="TEMPLATE",
                        help="file name template, with the manifest's output: placeholders (default '{id}')")


def export_command(args: argparse.Namespace) -> int:
    result = export(args.state, args.to, template=args.name, everything=args.all)
    print(f"exported to {args.to}: {len(result.written)} written, {len(result.unchanged)} unchanged, "
          f"{len(result.removed)} no longer picked and removed")
    for problem in result.problems:
        print(f"  {problem}")
    return 1 if result.problems else 0


def export(state_path: Path, dest: Path, *, template: str = "{id}", everything: bool = False) -> ExportResult:
    """Bring DIR in line with the picks (or every download); returns what changed and what could not be exported."""
    state_path = Path(state_path)
    if not state_path.is_file():
        raise StateError(f"{state_path}: no such state file; it is created by 'batchgen run' in the output folder")
    out_dir = state_path.resolve().parent
    state = load(state_path)
    chosen, lost = _chosen(state, out_dir, everything)
    dest = _delivery_folder(Path(dest), out_dir)
    names = plan_names(chosen, dest, template, out_dir)
    result = ExportResult(problems=lost)
    previous = _previous_entries(dest)
    entries = []
    for (_, rec), name in zip(chosen, names):
        entry = _export_one(rec, out_dir / rec.path, dest, name, result)
        # A video that could not be exported this time keeps its earlier copy, and the index keeps
        # listing it: the index says what the folder holds, and only listed files are ever removed.
        if entry is None and name in previous and (dest / name).is_file():
            entry = previous[name]
        if entry is not None:
            entries.append(entry)
    _remove_stale(dest, set(names), set(previous), result, out_dir)
    _write_index(dest, entries)
    return result


def _delivery_folder(dest: Path, out_dir: Path) -> Path:
    if dest.resolve() == out_dir:
        raise UsageError(f"export --to {dest} is the batch's own output folder; give a new folder for the delivery")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"export --to {dest}: cannot make the delivery folder there ({exc.strerror}); "
                         "give a folder, new or existing, not a file") from exc
    return dest


def _chosen(state: State, out_dir: Path, everything: bool) -> tuple[list[tuple[Row, JobRecord]], list[str]]:
    """The takes to deliver, and a line for each pick that names no current take of its row."""
    if everything:
        return [(row, rec) for row in group_rows(state) for rec in row.takes
                if rec.status is JobStatus.DOWNLOADED and rec.path], []
    picks = load_picks(out_dir)
    chosen, lost = picked_records(picks, state), lost_picks(picks, state)
    if not chosen and not lost:
        raise UsageError(f"nothing picked in {out_dir / 'picks.json'}: pick takes with 'batchgen review "
                         f"{out_dir / 'state.jsonl'}', or export every downloaded video with --all")
    return chosen, lost


def lost_picks(picks: dict[str, dict[str, Any]], state: State) -> list[str]:
    """Picks that export cannot deliver because their take is no longer one of their row's: the job was
    edited and ran again, or the manifest row moved to another line."""
    current = {row.key: {rec.key for rec in row.takes} for row in group_rows(state)}
    return [f"row {key}: the picked take (job {entry.get('job') or entry.get('take')}) is no longer one of its "
            "takes (edited and run again, or the row moved in the manifest); pick again with 'batchgen review', "
            "then export again" for key, entry in picks.items()
            if entry.get("status") == "picked" and entry.get("take") not in current.get(key, ())]


def name_context(row: Row, rec: JobRecord) -> dict[str, Any]:
    """The manifest's output placeholders, rebuilt from what the state recorded."""
    stem = PurePosixPath(rec.image.split("?", 1)[0]).stem
    return {"stem": stem, "duration": rec.params.get("duration", ""),
            "resolution": rec.params.get("resolution", ""), "take": row.take_number(rec), "id": rec.id,
            "model_name": (rec.model_used or rec.submit_model or rec.model).rsplit("/", 1)[-1]}


def plan_names(chosen: list[tuple[Row, JobRecord]], dest: Path, template: str, out_dir: Path) -> list[str]:
    """Each video's file name inside ``dest``; UsageError for a bad template, OutputPathError for a name
    outside ``dest``, inside the batch's output folder ``out_dir`` (``--to`` a folder above it), or two
    videos under one name."""
    root = dest.resolve()
    names: dict[str, tuple[str, str]] = {}
    for row, rec in chosen:
        ctx = name_context(row, rec)
        try:
            name = output_name(render("--name", template, ctx))
        except ValueError as exc:
            raise UsageError(f"export --name {template!r} for job {rec.id}: {exc}") from exc
        if not (root / name).resolve().is_relative_to(root):
            raise OutputPathError(f"export --name {template!r} puts job {rec.id} at {name}, outside {dest} "
                                  "(through a symbolic link); choose another folder or name", job=rec.id)
        if _in_batch(root / name, root, out_dir):
            raise OutputPathError(f"export --name {template!r} puts job {rec.id} at {name}, inside the batch's own "
                                  f"output folder {out_dir}, where a later export could delete a paid video; "
                                  "export --to a folder outside it", job=rec.id)
        # Casefolded, as the manifest's outputs are: a delivery is often unpacked where Mug.mp4 is mug.mp4.
        if name.casefold() in names:
            other, first = names[name.casefold()]
            raise OutputPathError(f"export --name {template!r} gives jobs {other} and {rec.id} the same file "
                                  f"{first}{'' if first == name else ' (up to case: ' + name + ')'}; add {{take}} "
                                  "or {id} to the name", job=rec.id)
        names[name.casefold()] = (rec.id, name)
    return [name for _, name in names.values()]


def _export_one(rec: JobRecord, src: Path, dest: Path, name: str, result: ExportResult) -> dict[str, Any] | None:
    problem = check_source(rec, src)
    if problem:
        result.problems.append(problem)
        return None
    target = dest / name
    placed = not _same(rec, src, target)
    if placed:
        _place(src, target)
    (result.written if placed else result.unchanged).append(name)
    poster = target.with_suffix(".jpg")
    # A placed video keeps its source's (download) time, older than the poster of whatever video
    # had this name before: comparing times alone would keep that other video's poster.
    if placed or not poster.is_file() or poster.stat().st_mtime < target.stat().st_mtime:
        poster_frame(target, poster, max_width=POSTER_PX)
    info = probe_video(target, scan_packets=False)
    return {"id": rec.id, "file": name, "source_image": rec.image, "prompt": rec.prompt,
            "model_used": rec.model_used or rec.submit_model or rec.model, "duration": round(info.duration, 3),
            "resolution": f"{info.width}x{info.height}", "cost": round(rec.cost, 2), "prediction_id": rec.pid}


def check_source(rec: JobRecord, src: Path) -> str:
    """'' when the downloaded file is still what was downloaded; otherwise what is wrong, with the job id."""
    if not src.is_file():
        return (f"job {rec.id}: {src} is missing; run 'batchgen run' on its manifest to download it again, "
                "then export again")
    size = src.stat().st_size
    if size != rec.bytes or file_sha256(src) != rec.sha256:
        return (f"job {rec.id}: {src} was altered since it was downloaded ({size} bytes, the state recorded "
                f"{rec.bytes} and its sha256); restore it, or delete it and run 'batchgen run' to download it again")
    return ""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _same(rec: JobRecord, src: Path, target: Path) -> bool:
    if not target.is_file():
        return False
    if os.path.samefile(src, target):
        return True
    return target.stat().st_size == rec.bytes and file_sha256(target) == rec.sha256


def _place(src: Path, target: Path) -> None:
    """Hard-link (same device) or copy ``src`` to ``target``, replacing it whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.export-tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, target)


def _in_batch(target: Path, root: Path, out_dir: Path) -> bool:
    """True for a delivery path that is a file of the batch itself (the delivery folder lies above it)."""
    return target.resolve().is_relative_to(out_dir) and not root.is_relative_to(out_dir)


def _remove_stale(dest: Path, keep: set[str], listed: set[str], result: ExportResult, out_dir: Path) -> None:
    """Remove videos (and their posters) the previous export listed and this one does not; never one of
    the batch's own files, whatever an index.json says."""
    root = dest.resolve()
    for name in sorted(listed - keep):
        target = (dest / name)
        if not target.resolve().is_relative_to(root) or _in_batch(target, root, out_dir):
            continue
        for path in (target, target.with_suffix(".jpg")):
            path.unlink(missing_ok=True)
        result.removed.append(name)
        _remove_empty_folders(target.parent, dest)


def _remove_empty_folders(folder: Path, dest: Path) -> None:
    """The folders a --name template made (``{stem}/...``), once a removal left them empty; never ``dest``."""
    while folder != dest and folder.is_relative_to(dest):
        try:
            folder.rmdir()
        except OSError:     # not empty (or not ours to remove): stop here
            return
        folder = folder.parent


def _previous_entries(dest: Path) -> dict[str, dict[str, Any]]:
    """The previous export's index.json entries by file name; none when it is missing or unreadable."""
    try:
        data = json.loads((dest / "index.json").read_text(encoding="utf-8"))
        return {str(v["file"]): v for v in data["videos"] if isinstance(v, dict)}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _write_index(dest: Path, entries: list[dict[str, Any]]) -> None:
    _write_if_changed(dest / "index.json", json.dumps({"version": 1, "videos": entries}, indent=1,
                                                      ensure_ascii=False) + "\n")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=INDEX_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _inert(v) for k, v in entry.items()} for entry in entries)
    _write_if_changed(dest / "index.csv", text.getvalue())


def _inert(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text, never evaluates (OWASP's advice for CSV injection)."""
    return f"'{value}" if isinstance(value, str) and value.startswith(_FORMULA_START) else value


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except FileNotFoundError:
        pass
    # Through a fresh temporary opened without following links: one planted in the delivery folder
    # (a shared or synced folder) is never written through.
    replace_whole(path, lambda out: out.write(text.encode("utf-8")))
