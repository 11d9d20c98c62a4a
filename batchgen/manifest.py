"""Manifest (YAML or CSV) -> a list of fully expanded JobSpec, or every problem at once.

A manifest is read in three passes: the reader (manifest_read) turns text into raw rows
with line numbers; manifest_rows gives each row meaning, expands globs, duration and
resolution lists and takes into jobs, renders templates and validates everything against
the model table; then this module checks outputs and ids across the whole batch. Nothing
is raised until every row has been looked at, so the user fixes the file in one go. The
network is never touched: URLs are accepted as written.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import ManifestError, ModelTableError, Problem
from .images import ImageCache
from .jobs import JobSpec
from .manifest_read import Problems, RawManifest, decode, read_csv, read_yaml
from .manifest_providers import providers_setting
from .manifest_rows import BUILTIN_PLACEHOLDERS, CORE_FIELDS, DEFAULT_OUTPUT, Candidate, Expander, job_fields
from .models import ModelTable

__all__ = ["BUILTIN_PLACEHOLDERS", "CORE_FIELDS", "DEFAULT_OUTPUT", "Manifest", "job_fields", "load_manifest"]

#: Jobs one manifest may expand to unless it says 'max_jobs: N': a typo like 'takes: 300000'
#: must be caught before anything is built, let alone paid for.
DEFAULT_MAX_JOBS = 10_000
#: A manifest is text: 100 MB is far past 10,000 rows of long prompts, and short of a video named by mistake.
MAX_MANIFEST_BYTES = 100 * 10**6
#: A row past either figure gets a warning: probably a glob or a list wider than meant.
WARN_ROW_JOBS = 50
WARN_ROW_DOLLARS = 100.0
#: The longest name the runner makes from an output's stem: a set-aside copy's sidecar being
#: written, NAME.prev-XXXXXXXX-NN.json.tmp (NAME.mp4.part and NAME.json.tmp are shorter).
NAME_SUFFIX_RESERVE = len(".prev-XXXXXXXX-99.json.tmp")


@dataclass
class Manifest:
    path: Path
    jobs: list[JobSpec]
    models: ModelTable
    max_cost: float | None = None
    fallback_model: str | None = None
    fallback_after: int = 3
    max_jobs: int = DEFAULT_MAX_JOBS
    #: Other accepted top-level keys, e.g. {"concurrency": 4}.
    settings: dict[str, Any] = field(default_factory=dict)
    #: Worth a look but not blocking: tiny or huge images, rows over 50 jobs or $100.
    warnings: list[Problem] = field(default_factory=list)


def _warn_retired(candidates: list[Candidate], manifest: Manifest, problems: Problems) -> None:
    """Once per retired model the manifest uses (at its first row): what happened and what to do."""
    seen: set[str] = set()
    for candidate in candidates:
        spec = manifest.models.get(candidate.spec.model)
        if spec.retired is None or spec.id in seen:
            continue
        seen.add(spec.id)
        fallback = candidate.spec.fallback_model
        what = (f"its jobs move to fallback_model {fallback} on any sign of the retirement" if fallback else
                f"name a fallback_model: (e.g. {spec.retired.replacement}) so its jobs move there on any sign of "
                "the retirement, or switch the rows to that model")
        problems.warn(candidate.spec.where.line, f"{spec.id} is retired upstream since {spec.retired.date} "
                                                 f"({spec.retired.message}); {what}{_stuck(spec.id, candidates, manifest)}")


def _stuck(model: str, candidates: list[Candidate], manifest: Manifest) -> str:
    """The jobs of a retired model that their fallback refuses: they would wait for a model that is gone."""
    stuck = [(c.spec, problems) for c in candidates if c.spec.model == model and c.spec.fallback_model
             for problems in [manifest.models.get(c.spec.fallback_model).check(c.spec.params)] if problems]
    if not stuck:
        return ""
    job, problems = stuck[0]
    return (f"; but {len(stuck)} of its jobs cannot move there (first: {job.where.file}:{job.where.line} job "
            f"{job.id}: {problems[0]}): give them values the fallback takes, or they wait for a retired model")


def load_manifest(
    path: str | os.PathLike, models: ModelTable | None = None, *, image_cache: ImageCache | None = None,
    notes: Mapping[tuple[int, str], str] | None = None,
) -> Manifest:
    """Read, expand and validate a manifest; ManifestError lists every problem found. ``{note}`` is
    empty unless ``notes`` (by row line and image as written: a reviewer's redo notes) gives one."""
    path = Path(path)
    problems = Problems(str(path))
    manifest = Manifest(path=path, jobs=[], models=models if models is not None else ModelTable.builtin())
    raw = _read(path, manifest.models, problems)
    unreadable = _settings(raw, manifest, problems)
    expander = Expander(path, manifest.models, problems, raw.vars, manifest.fallback_model, image_cache,
                        manifest.max_jobs)
    expander.notes, expander.unreadable_models = notes or {}, unreadable
    candidates: list[Candidate] = []
    for row in raw.rows:
        jobs = expander.row(row, raw.defaults)
        _warn_big_row(jobs, manifest.models, row.line, problems)
        candidates.extend(jobs)
    providers_setting(raw.settings, manifest, candidates, problems)
    _check_unique(candidates, problems)
    _check_folders(candidates, problems)
    _check_name_lengths(candidates, problems, _name_max(path.resolve().parent))
    _warn_retired(candidates, manifest, problems)
    if problems.items:
        raise ManifestError(problems.items)
    if image_cache is not None:
        image_cache.save()
    manifest.jobs = [c.spec for c in candidates]
    manifest.warnings = problems.warnings
    return manifest


def _read(path: Path, table: ModelTable, problems: Problems) -> RawManifest:
    try:
        data = _bytes(path)
    except FileNotFoundError as exc:
        raise ManifestError([Problem(str(path), None, "manifest file not found; check the path")]) from exc
    except OSError as exc:
        raise ManifestError([Problem(str(path), None, f"manifest cannot be read ({exc.strerror})")]) from exc
    kind = path.suffix.lower()
    if kind not in (".yaml", ".yml", ".csv", ".tsv"):
        raise ManifestError([Problem(str(path), None, f"unknown manifest type {kind or '(none)'!r}; name it .yaml or .csv")])
    text = decode(data, problems, excel_hint=kind in (".csv", ".tsv"))
    if text is None:
        raise ManifestError(problems.items)
    if kind in (".yaml", ".yml"):
        return read_yaml(text, problems)
    return read_csv(text, problems, job_fields(table))


def _bytes(path: Path) -> bytes:
    """The manifest's bytes; a folder, a device, a pipe or a huge file (a video named by mistake) is
    refused instead of read forever. O_NONBLOCK: opening a pipe must not wait for a writer."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ManifestError([Problem(str(path), None, "the manifest is not a regular file (a folder, device "
                                                          "or pipe); give the path of a .yaml or .csv file")])
        if st.st_size > MAX_MANIFEST_BYTES:
            raise ManifestError([Problem(str(path), None, f"the manifest is {st.st_size / 1e6:.0f} MB, over the "
                                         f"{MAX_MANIFEST_BYTES // 10**6} MB a manifest may be; is it the right file? "
                                         "Split a batch that big into several manifests")])
        chunks, size = [], 0
        while size <= MAX_MANIFEST_BYTES and (chunk := os.read(fd, 1 << 20)):  # a file still growing stops too
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _settings(raw: RawManifest, manifest: Manifest, problems: Problems) -> set[str]:
    """Apply the top-level settings; returns the models a broken models: block failed to add."""
    values = raw.settings
    unreadable = _models(*values["models"], manifest, problems) if "models" in values else set()
    if "max_cost" in values:
        value, line = values["max_cost"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            problems.add(line, f"max_cost {value!r} must be a dollar amount above zero, like 25 or 12.50{_hint(value)}")
        else:
            manifest.max_cost = float(value)
    if "fallback_model" in values:
        value, line = values["fallback_model"]
        if not isinstance(value, str):
            problems.add(line, f"fallback_model {value!r} must be one model id, like {manifest.models.ids()[0]!r}")
        elif value in unreadable:
            pass  # the models: block's own problem says why
        elif value not in manifest.models:
            problems.add(line, f"fallback_model {value!r} is not a known model; known: {', '.join(manifest.models.ids())}")
        else:
            manifest.fallback_model = value
    for key in ("fallback_after", "concurrency", "max_jobs"):
        if key in values:
            value, line = values[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.add(line, f"{key} {value!r} must be a whole number of at least 1{_hint(value)}")
            elif key == "concurrency":
                manifest.settings[key] = value
            else:
                setattr(manifest, key, value)
    return unreadable


def _hint(value: Any) -> str:
    """Why a number the user meant was not read as one: YAML left it empty, or read it as text."""
    if value is None:
        return " (it is empty)"
    if isinstance(value, str):
        return (" (YAML read it as text: write the bare number, without quotes or '$'; "
                "YAML reads 1e3 as text too, write 1000)")
    return ""


def _models(block: Any, line: int, manifest: Manifest, problems: Problems) -> set[str]:
    if block is not None and not isinstance(block, dict):
        problems.add(line, "models: must map a model path to its fields (durations, price_per_second, ...)")
        return set()
    try:
        manifest.models = manifest.models.extended(block)
    except ModelTableError as exc:
        problems.add(line, str(exc))
        return {str(model) for model in block if model not in manifest.models}
    return set()


def _warn_big_row(jobs: list[Candidate], table: ModelTable, line: int, problems: Problems) -> None:
    if not jobs:
        return
    cost = sum(table.get(c.spec.model).price(c.spec.resolution, c.spec.duration) for c in jobs)
    if len(jobs) > WARN_ROW_JOBS or cost > WARN_ROW_DOLLARS:
        problems.warn(line, f"this row expands to {len(jobs)} jobs costing ${cost:.2f} at list price; "
                      "check its globs, lists and takes: are as wide as you mean ('batchgen plan' lists them)")


def _where(c: Candidate) -> str:
    return f"{c.spec.where.file}:{c.spec.where.line} (job {c.spec.id})"


def _check_unique(candidates: list[Candidate], problems: Problems) -> None:
    """One problem per output (or id) that several jobs share, however many: a CSV of 10,000 rows over
    one picture, without an output: template, is one mistake, not 9,999."""
    # Case-insensitive: on macOS and Windows 'A.mp4' and 'a.mp4' are the same file.
    by_output = _groups(candidates, lambda c: c.spec.output.casefold())
    for first, c, *rest in (group for group in by_output.values() if len(group) > 1):
        problems.add(c.output_line, f"output {c.spec.output!r} is written by {_two_or_more(first, c, rest)}; give "
                     "them different output: names, e.g. add {take} or a variable", c.spec.id)
    by_id = _groups([group[0] for group in by_output.values()], lambda c: c.spec.id)
    for first, c, *rest in (group for group in by_id.values() if len(group) > 1):
        line = c.id_line if c.explicit_id else c.spec.where.line
        lines = f"lines {first.spec.where.line} and {c.spec.where.line}" + (
            f" and {len(rest)} more, the last on line {rest[-1].spec.where.line}" if rest else "")
        problems.add(line, f"id {c.spec.id!r} is used {'twice' if not rest else f'{len(rest) + 2} times'} ({lines}); "
                     "ids must be unique", c.spec.id)


def _groups(candidates: list[Candidate], key) -> dict[str, list[Candidate]]:
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        groups.setdefault(key(c), []).append(c)
    return groups


def _two_or_more(first: Candidate, second: Candidate, rest: list[Candidate]) -> str:
    if not rest:
        return f"two jobs: {_where(first)} and {_where(second)}"
    return (f"{len(rest) + 2} jobs: {_where(first)}, {_where(second)} and {len(rest)} more, the last at "
            f"{_where(rest[-1])}")


#: What the runner writes beside a video NAME.mp4: its sidecar, and both files' temporaries.
_COMPANIONS = (".mp4", ".json", ".mp4.part", ".json.tmp")
#: Names the run itself uses at the top of the output folder (unmatched/: paid videos no job claims). Its
#: hidden ones (.batchgen.lock, .report/) need no entry: output names never start with a dot.
_RUN_NAMES = ("state.jsonl", "state.jsonl.lock", "batchgen.log", "report.html", "picks.json", "unmatched")


def _check_folders(candidates: list[Candidate], problems: Problems) -> None:
    """A job's folder that is another job's file ('clip' and 'clip.mp4/x') or one of the run's own
    names makes the jobs fail at download, after they were paid for."""
    files: dict[str, Candidate | None] = dict.fromkeys(_RUN_NAMES)
    for c in candidates:
        for suffix in _COMPANIONS:
            files.setdefault(c.spec.output[:-4].casefold() + suffix, c)
    for c in candidates:
        folders = c.spec.output.split("/")[:-1]
        for depth in range(1, len(folders) + 1):
            folder = "/".join(folders[:depth])
            if folder.casefold() in files:
                other = files[folder.casefold()]
                what = "a name the run itself uses" if other is None else f"a file of {_where(other)}"
                problems.add(c.output_line, f"output {c.spec.output!r} needs a folder {folder!r}, but that is "
                             f"{what}; change one of the output: names", c.spec.id)
                break


def _name_max(folder: Path) -> int:
    """The file system's longest file name, asked of the nearest existing folder."""
    for candidate in (folder, *folder.parents):
        try:
            return os.pathconf(candidate, "PC_NAME_MAX")
        except (OSError, ValueError, AttributeError):
            continue
    return 255


def _check_name_lengths(candidates: list[Candidate], problems: Problems, name_max: int) -> None:
    """An output whose temporary or set-aside name is too long fails only after it was paid for."""
    for c in candidates:
        *folders, name = c.spec.output.split("/")
        longest = max([len(f.encode()) for f in folders] + [len(name[:-4].encode()) + NAME_SUFFIX_RESERVE])
        if longest > name_max:
            problems.add(c.output_line, f"output {c.spec.output!r} is too long for this file system: with the "
                         f"runner's temporary suffixes a name reaches {longest} bytes, over its limit of {name_max}; "
                         "shorten the output: template", c.spec.id)
