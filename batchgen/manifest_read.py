"""Manifest text (YAML or CSV) -> raw rows with line numbers, before any meaning is given.

Both readers produce the same shape, so expansion and validation (manifest.py) are written
once. Every job-field value is kept as the text the user wrote (a str, or a list of str for
YAML lists): YAML 1.1 would otherwise turn ``aspect_ratio: 16:9`` into the integer 969
and ``id: 007`` into 7.
"""

from __future__ import annotations

import csv
import difflib
import io
from dataclasses import dataclass, field
from typing import Any, Iterable

import yaml

from .errors import Problem
from .manifest_fields import placeholders

TOP_LEVEL_KEYS = ("defaults", "vars", "models", "max_cost", "max_jobs", "fallback_model", "fallback_after",
                  "providers", "concurrency", "jobs")
_NULL = "tag:yaml.org,2002:null"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"


class Problems:
    """Collects problems for one manifest; the same message on the same line is kept once,
    so a bad default shared by 10,000 rows is reported once."""

    def __init__(self, file: str):
        self.file = file
        self.items: list[Problem] = []
        #: Things worth a look that do not stop the batch (a tiny image, a row costing $100+).
        self.warnings: list[Problem] = []
        self._seen: set[tuple[int | None, str]] = set()

    def add(self, line: int | None, message: str, job: str | None = None) -> None:
        if (line, message) in self._seen:
            return
        self._seen.add((line, message))
        self.items.append(Problem(self.file, line, message, job))

    def warn(self, line: int | None, message: str, job: str | None = None) -> None:
        if (line, "warning: " + message) in self._seen:
            return
        self._seen.add((line, "warning: " + message))
        self.warnings.append(Problem(self.file, line, message, job))


@dataclass
class Value:
    value: Any          # str, list[str] (YAML lists), or None when the user left it empty
    line: int
    reported: bool = False  # unusable, and a problem already says so


@dataclass
class RawRow:
    line: int
    fields: dict[str, Value]
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class RawManifest:
    rows: list[RawRow] = field(default_factory=list)
    defaults: dict[str, Value] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    #: Top-level settings as plain Python data, with the line each was written on.
    settings: dict[str, tuple[Any, int]] = field(default_factory=dict)


def closest(name: str, candidates: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


def suggest(name: str, candidates: Iterable[str]) -> str:
    close = closest(name, candidates)
    return f"; did you mean {close!r}?" if close else ""


def decode(raw: bytes, problems: Problems, excel_hint: bool = True) -> str | None:
    """UTF-8 text (a BOM is fine), or one problem saying where the first bad byte is (and, for a CSV,
    how Excel saves UTF-8)."""
    bom = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    try:
        return raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = exc.start + bom
        line = raw.count(b"\n", 0, at) + 1
        problems.add(line, f"the file is not UTF-8 at byte {at}; save it as UTF-8"
                     + (" (in Excel: 'CSV UTF-8')" if excel_hint else " (your editor's encoding setting)"))
        return None


# -- YAML ---------------------------------------------------------------------------------


def read_yaml(text: str, problems: Problems) -> RawManifest:
    out = RawManifest()
    root = _compose(text, problems)
    if root is None:
        return out
    if not isinstance(root, yaml.MappingNode):
        problems.add(_line(root), "the manifest must be a mapping with a 'jobs:' list (and optional defaults:, vars:, ...)")
        return out
    jobs_node = None
    for key, node in _pairs(root, problems):
        if key not in TOP_LEVEL_KEYS:
            problems.add(_line(node), f"unknown top-level key {key!r}{suggest(key, TOP_LEVEL_KEYS)} "
                         f"(allowed: {', '.join(TOP_LEVEL_KEYS)})")
        elif key == "jobs":
            jobs_node = node
        elif key == "defaults":
            if isinstance(node, yaml.MappingNode):
                out.defaults = _fields(node, problems, allow_vars=False)[0]
            elif _tag(node) != _NULL:
                problems.add(_line(node), "defaults: must be a mapping of job fields")
        elif key == "vars":
            out.vars = _vars(node, problems)
        else:
            _setting(out, key, node, problems)
    _jobs(jobs_node, out, problems)
    return out


def _compose(text: str, problems: Problems) -> yaml.Node | None:
    """The YAML node tree, or None after adding the problem (a syntax error, an empty file)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "cannot parse"
        if exc.context and exc.context_mark and exc.problem_mark:
            what += f" ({exc.context} that began on line {exc.context_mark.line + 1})"
        problems.add(mark.line + 1 if mark else None, f"YAML syntax error: {what}; check indentation and quoting there")
        return None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        problems.add(line, f"the file contains the control character U+{exc.character:04X}, which YAML does not "
                     "allow; delete it (or write it as an escape inside double quotes)")
        return None
    except yaml.YAMLError as exc:
        problems.add(None, f"YAML error: {exc}")
        return None
    if root is None:
        problems.add(None, "the manifest is empty; it needs a 'jobs:' list")
    return root


def _jobs(jobs_node: yaml.Node | None, out: RawManifest, problems: Problems) -> None:
    if jobs_node is None or _tag(jobs_node) == _NULL:
        problems.add(None if jobs_node is None else _line(jobs_node), "the manifest has no 'jobs:' list; add one job per item")
    elif not isinstance(jobs_node, yaml.SequenceNode):
        problems.add(_line(jobs_node), "jobs: must be a list; start each job with '- '")
    elif not jobs_node.value:
        problems.add(_line(jobs_node), "jobs: is empty; add at least one job")
    else:
        for item in jobs_node.value:
            if not isinstance(item, yaml.MappingNode):
                problems.add(_line(item), "each job must be a mapping like '- image: a.jpg' with 'prompt: ...' under it")
                continue
            fields, row_vars = _fields(item, problems, allow_vars=True)
            out.rows.append(RawRow(_line(item), fields, row_vars))


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _tag(node: yaml.Node) -> str:
    return node.tag


def _construct(node: yaml.Node) -> Any:
    return yaml.SafeLoader("").construct_document(node)


def _setting(out: RawManifest, key: str, node: yaml.Node, problems: Problems) -> None:
    """A top-level setting as plain data; a tag the safe loader refuses ('!!python/object',
    '!!int zz', '!!timestamp 2020-13-45') is a problem on its line, not a traceback."""
    try:
        out.settings[key] = (_construct(node), _line(node))
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        problems.add(_line(node), f"{key}: cannot be read ({str(exc).splitlines()[0]}); "
                     "write a plain value without a '!!' tag")


def _pairs(node: yaml.MappingNode, problems: Problems) -> list[tuple[str, yaml.Node]]:
    """Key/value pairs with '<<' merges applied; a key written twice is a problem because
    YAML would silently keep only the last one."""
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        if _tag(key_node) == _MERGE or not isinstance(key_node, yaml.ScalarNode):
            continue
        if key_node.value in seen:
            problems.add(_line(key_node), f"{key_node.value!r} is given twice (also on line {seen[key_node.value]}); "
                         "YAML keeps only the last one, so remove one")
        seen.setdefault(key_node.value, _line(key_node))
    try:
        yaml.SafeLoader("").flatten_mapping(node)
    except yaml.MarkedYAMLError as exc:
        problems.add(_line(node), f"YAML merge ('<<') error: {exc.problem}")
    pairs = []
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            problems.add(_line(key_node), "keys must be plain names")
            continue
        pairs.append((key_node.value, value_node))
    return pairs


def _text(node: yaml.Node) -> str | list[str] | None:
    if isinstance(node, yaml.ScalarNode):
        return None if _tag(node) == _NULL else node.value
    return [_text(x) for x in node.value]  # sequences; mappings are rejected by the caller


def _fields(node: yaml.MappingNode, problems: Problems, allow_vars: bool) -> tuple[dict[str, Value], dict[str, Any]]:
    fields: dict[str, Value] = {}
    row_vars: dict[str, Any] = {}
    for key, value in _pairs(node, problems):
        if key == "vars" and allow_vars:
            row_vars = _vars(value, problems)
        elif key == "vars":
            problems.add(_line(value), "vars: does not go under defaults:; move it to the top level, where its "
                         "variables apply to every job")
        elif isinstance(value, yaml.MappingNode) or (
            isinstance(value, yaml.SequenceNode) and any(not isinstance(x, yaml.ScalarNode) for x in value.value)
        ):
            problems.add(_line(value), f"{key}: must be a value or a list of values, not a nested structure")
            fields[key] = Value(None, _line(value), reported=True)
        else:
            fields[key] = Value(_text(value), _line(value))
    return fields, row_vars


def _vars(node: yaml.Node, problems: Problems) -> dict[str, Any]:
    if _tag(node) == _NULL:
        return {}
    if not isinstance(node, yaml.MappingNode):
        problems.add(_line(node), "vars: must be a mapping of name: value")
        return {}
    out: dict[str, Any] = {}
    for key, value in _pairs(node, problems):
        if not isinstance(value, yaml.ScalarNode):
            problems.add(_line(value), f"vars.{key} must be a single value (text or number)")
            continue
        out[key] = _var_value(value)
    return out


def _var_value(node: yaml.ScalarNode) -> Any:
    """Plain decimal numbers stay numbers (so '{n:03d}' works); everything else is the text
    as written, so 16:9 and 'yes' do not turn into 969 and True."""
    if _tag(node) == _NULL:
        return ""
    text = node.value
    if _tag(node) == _INT and text.lstrip("+-").isdigit():
        return int(text)
    if _tag(node) == _FLOAT and text.lstrip("+-").replace(".", "", 1).isdigit():
        return float(text)
    return text


# -- CSV ----------------------------------------------------------------------------------


def read_csv(text: str, problems: Problems, job_fields: Iterable[str]) -> RawManifest:
    """Header + rows; columns named like job fields are fields, the others template vars."""
    out = RawManifest()
    job_fields = set(job_fields)
    records = _records(text, problems)
    if records is None:
        return out
    if not records:
        problems.add(None, "the CSV file is empty; it needs a header row (prompt, image, ...) and one row per job")
        return out
    header_line, header = records[0]
    names = [c.strip() for c in header]
    while names and not names[-1]:
        names.pop()
    columns = _columns(header_line, names, job_fields, problems)
    if columns is None:
        return out
    unnamed = [i for i, name in enumerate(names) if not name]
    for line, cells in records[1:]:
        row = _csv_row(line, cells, len(names), columns, unnamed, problems)
        if row is not None:
            out.rows.append(row)
    if len(records) == 1:
        problems.add(header_line, "the CSV file has a header but no rows; add one row per job")
    _unused_near_fields(header_line, [name for _, name, is_field in columns if not is_field], out.rows,
                        job_fields - {name for _, name, _ in columns}, problems)
    return out


def _unused_near_fields(header_line: int, var_columns: list[str], rows: list[RawRow], job_fields: set[str],
                        problems: Problems) -> None:
    """A column named almost like a job field the header lacks ('duraton', 'Images') that no template
    uses is a typo: as a template variable it would do nothing, and every job would silently get the
    field's default (and be paid for at it)."""
    used: set[str] = set()
    for row in rows:
        for name in ("prompt", "output", "id"):
            text = row.fields[name].value if name in row.fields else None
            if isinstance(text, str):
                try:
                    used.update(placeholders(text))
                except ValueError:
                    pass  # a malformed template is a problem of its own, said where the row is rendered
    for column in var_columns:
        close = difflib.get_close_matches(column.lower().replace(" ", "_"), sorted(job_fields), n=1, cutoff=0.8)
        if close and column not in used:
            problems.add(header_line, f"column {column!r} is not a job field and no prompt, output or id uses it, "
                         f"so it would do nothing; did you mean {close[0]!r}? Rename the column (a column kept as a note "
                         "needs a name less like a job field)")


def _records(text: str, problems: Problems) -> list[tuple[int, list[str]]] | None:
    """Non-blank records with the line each starts on, or None after a CSV syntax problem."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), strict=True)
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for cells in reader:
            records.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as exc:
        problems.add(start, f"CSV error in the record starting here: {exc}; a quoted cell is probably not closed")
        return None
    return [(line, cells) for line, cells in records if any(c.strip() for c in cells)]


def _columns(header_line: int, names: list[str], job_fields: set[str],
             problems: Problems) -> list[tuple[int, str, bool]] | None:
    """(index, name, is_job_field) per named column, or None when prompt or image is missing."""
    columns: list[tuple[int, str, bool]] = []
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if not name:
            continue
        key = name.lower().replace(" ", "_") if name.lower().replace(" ", "_") in job_fields else name
        if key in seen:
            problems.add(header_line, f"column {key!r} appears twice (columns {seen[key] + 1} and {index + 1}); rename one")
            continue
        seen[key] = index
        columns.append((index, key, key in job_fields))
    for required in ("prompt", "image"):
        if required not in seen:
            hint = suggest(required, [n for n in seen if n not in job_fields])
            problems.add(header_line, f"no {required!r} column in the header row{hint} "
                         "(the first row must name the columns: image, prompt, duration, ...)")
    return columns if "prompt" in seen and "image" in seen else None


def _csv_row(line: int, cells: list[str], width: int, columns: list[tuple[int, str, bool]], unnamed: list[int],
             problems: Problems) -> RawRow | None:
    if len(cells) > width and any(c.strip() for c in cells[width:]):
        problems.add(line, f"this row has {len(cells)} cells but the header names {width} columns; "
                     "quote cells that contain the delimiter, or add a header for the extra column")
        return None
    bad = [i for i in unnamed if i < len(cells) and cells[i].strip()]
    if bad:
        problems.add(line, f"column {bad[0] + 1} has a value but no header; name the column or clear the cell")
        return None
    row = RawRow(line, {})
    for index, name, is_field in columns:
        cell = cells[index] if index < len(cells) else ""
        if is_field:
            if cell.strip():
                row.fields[name] = Value(cell.strip() if name != "prompt" else cell.strip("\r\n "), line)
        else:
            row.vars[name] = cell
    return row


def _delimiter(text: str) -> str:
    """The delimiter the header row uses most: ';' (European Excel), tab, or ','."""
    header = next((ln for ln in text.splitlines() if ln.strip()), "")
    unquoted = "".join(part for i, part in enumerate(header.split('"')) if i % 2 == 0)
    counts = {d: unquoted.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","
