"""Manifest (YAML or CSV) -> a list of fully expanded JobSpec, or every problem at once.

A manifest is read in three passes: the reader (manifest_read) turns text into raw rows
with line numbers; this module gives each row meaning, expands globs, duration and
resolution lists and takes into jobs, renders templates and validates everything against
the model table; then outputs and ids are checked across the whole batch. Nothing is
raised until every row has been looked at, so the user fixes the file in one go. The
network is never touched: URLs are accepted as written.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ManifestError, ModelTableError, Problem
from .images import ImageCache, ImageInfo, image_info
from .jobs import JobSpec, Location
from .manifest_fields import (
    as_list, check_id, output_name, placeholders, render, resolve_image, single, whole_number,
)
from .manifest_read import Problems, RawManifest, RawRow, Value, decode, read_csv, read_yaml, suggest
from .models import DEFAULT_MODEL, ModelSpec, ModelTable

CORE_FIELDS = ("image", "prompt", "duration", "resolution", "model", "output", "id", "takes")
BUILTIN_PLACEHOLDERS = ("stem", "duration", "resolution", "take", "id", "model_name")
DEFAULT_OUTPUT = "{stem}-{duration}s-{resolution}"
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Manifest:
    path: Path
    jobs: list[JobSpec]
    models: ModelTable
    max_cost: float | None = None
    fallback_model: str | None = None
    fallback_after: int = 3
    #: Other accepted top-level keys, e.g. {"concurrency": 4}.
    settings: dict[str, Any] = field(default_factory=dict)


def load_manifest(
    path: str | os.PathLike, models: ModelTable | None = None, *, image_cache: ImageCache | None = None
) -> Manifest:
    """Read, expand and validate a manifest; ManifestError lists every problem found."""
    path = Path(path)
    problems = Problems(str(path))
    table = models if models is not None else ModelTable()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError([Problem(str(path), None, "manifest file not found; check the path")]) from None
    except OSError as exc:
        raise ManifestError([Problem(str(path), None, f"manifest cannot be read ({exc.strerror})")]) from None
    kind = path.suffix.lower()
    if kind not in (".yaml", ".yml", ".csv", ".tsv"):
        raise ManifestError([Problem(str(path), None, f"unknown manifest type {kind or '(none)'!r}; name it .yaml or .csv")])
    text = decode(data, problems)
    if text is None:
        raise ManifestError(problems.items)
    if kind in (".yaml", ".yml"):
        raw = read_yaml(text, problems)
    else:
        raw = read_csv(text, problems, job_fields(table))
    manifest = Manifest(path=path, jobs=[], models=table)
    _settings(raw, manifest, problems)
    expander = _Expander(path, manifest.models, problems, raw.vars, manifest.fallback_model, image_cache)
    candidates = [job for row in raw.rows for job in expander.row(row, raw.defaults)]
    _check_unique(candidates, problems)
    if problems.items:
        raise ManifestError(problems.items)
    if image_cache is not None:
        image_cache.save()
    manifest.jobs = [c.spec for c in candidates]
    return manifest


def job_fields(table: ModelTable) -> list[str]:
    extras = {name for spec in table for name in spec.extra_fields}
    return [*CORE_FIELDS, *sorted(extras - set(CORE_FIELDS))]


def _settings(raw: RawManifest, manifest: Manifest, problems: Problems) -> None:
    values = raw.settings
    if "models" in values:
        block, line = values["models"]
        if block is not None and not isinstance(block, dict):
            problems.add(line, "models: must map a model path to its fields (durations, price_per_second, ...)")
        else:
            try:
                manifest.models = manifest.models.extended(block)
            except ModelTableError as exc:
                problems.add(line, str(exc))
    if "max_cost" in values:
        value, line = values["max_cost"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            problems.add(line, f"max_cost {value!r} must be a dollar amount like 25 or 12.50")
        else:
            manifest.max_cost = float(value)
    if "fallback_model" in values:
        value, line = values["fallback_model"]
        if value not in manifest.models:
            problems.add(line, f"fallback_model {value!r} is not a known model; known: {', '.join(manifest.models.ids())}")
        else:
            manifest.fallback_model = value
    for key in ("fallback_after", "concurrency"):
        if key in values:
            value, line = values[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.add(line, f"{key} {value!r} must be a whole number of at least 1")
            elif key == "fallback_after":
                manifest.fallback_after = value
            else:
                manifest.settings[key] = value


@dataclass
class _Candidate:
    spec: JobSpec
    output_line: int
    id_line: int
    explicit_id: bool


class _Expander:
    """Turns one raw row into its jobs, adding problems as it goes."""

    def __init__(self, path: Path, table: ModelTable, problems: Problems, top_vars: dict[str, Any],
                 fallback_model: str | None, image_cache: ImageCache | None):
        self.file = str(path)
        self.base = str(path.resolve().parent)
        self.table = table
        self.problems = problems
        self.top_vars = top_vars
        self.fallback_model = fallback_model
        self.cache = image_cache
        self.fields = job_fields(table)
        self._images: dict[str, ImageInfo | str] = {}
        self._refs: dict[str, list[tuple[str, str | None, str | None, str]] | str] = {}

    def row(self, row: RawRow, defaults: dict[str, Value]) -> list[_Candidate]:
        f = {**defaults, **row.fields}
        job = _text_of(f.get("id"))
        failed: list[str] = []

        def bad(line: int, message: str) -> None:
            failed.append(message)
            self.problems.add(line, message, job)

        def one(name: str) -> str | None:
            if name not in f:
                return None
            try:
                return single(name, f[name].value)
            except ValueError as exc:
                bad(f[name].line, str(exc))
                return None

        if any(v.reported for v in f.values()):
            failed.append("a field was reported by the reader")
        model_id = one("model") or DEFAULT_MODEL
        spec: ModelSpec | None = None
        try:
            spec = self.table.get(model_id)
        except ModelTableError as exc:
            bad(f["model"].line if "model" in f else row.line, str(exc))
        self._unknown_fields(f, spec, bad)

        context_vars = {**self.top_vars, **row.vars}
        for name in BUILTIN_PLACEHOLDERS:
            if name in context_vars:
                bad(row.line, f"template variable {name!r} clashes with the built-in {{{name}}}; rename the variable")

        durations = self._numbers(f, "duration", [spec.default_duration] if spec else [], bad)
        resolutions = [r.lower() for r in as_list(f["resolution"].value)] if "resolution" in f else []
        if not resolutions and spec:
            resolutions = [spec.default_resolution]
        takes_list = self._numbers(f, "takes", [1], bad, minimum=1)
        takes = takes_list[0] if len(takes_list) == 1 else 1
        if len(takes_list) > 1:
            bad(f["takes"].line, "takes must be a single number")

        extras: dict[str, Any] = {}
        if spec:
            for name in spec.extra_fields:
                value = one(name)
                if value is not None and name == "last_image":
                    value = self._last_image(value, f[name].line, bad)
                if value is not None:
                    extras[name] = spec.typed(name, value)

        prompt_t = one("prompt")
        if "prompt" not in f:
            bad(row.line, "prompt is required; add 'prompt: ...' describing the motion and camera")
        elif f["prompt"].value is None and not f["prompt"].reported:
            bad(f["prompt"].line, "prompt is empty; describe the motion and camera")
        images = self._images_of(f, row.line, bad)
        output_t = one("output")
        if output_t is None:
            output_t = DEFAULT_OUTPUT + ("-take{take}" if takes > 1 else "")
        id_t = one("id")

        if spec is None or failed:
            return []
        _check_params(spec, f, row.line, durations, resolutions, extras, bad)
        if failed:
            return []

        many = len(images) * len(durations) * len(resolutions) * takes > 1
        suffix = "".join([
            "-{stem}" if len(images) > 1 else "", "-{duration}s" if len(durations) > 1 else "",
            "-{resolution}" if len(resolutions) > 1 else "", "-take{take}" if takes > 1 else "",
        ])
        out: list[_Candidate] = []
        for written, abs_path, url, stem in images:
            for duration in durations:
                for resolution in resolutions:
                    for take in range(1, takes + 1):
                        ctx = {**context_vars, "stem": stem, "duration": duration, "resolution": resolution,
                               "take": take, "model_name": model_id.rsplit("/", 1)[-1]}
                        candidate = self._job(row, f, bad, ctx, written, abs_path, url, model_id,
                                              {"duration": duration, "resolution": resolution, **extras},
                                              prompt_t, output_t, id_t, suffix if many else "")
                        if candidate:
                            out.append(candidate)
        return out

    def _job(self, row, f, bad, ctx, written, abs_path, url, model_id, params, prompt_t, output_t, id_t, suffix):
        line_of = lambda name: f[name].line if name in f else row.line  # noqa: E731
        try:
            if id_t is not None and suffix and not placeholders(id_t):
                # A literal id on a row that expands gets the varying parts appended,
                # made id-safe: a stem like 'Red Mug' must not make the id invalid.
                ctx["id"] = check_id(id_t) + _UNSAFE_ID.sub("_", render("id", suffix, ctx))
            elif id_t is not None:
                ctx["id"] = check_id(render("id", id_t, ctx))
            elif "id" in placeholders(output_t):
                raise ValueError("output uses {id}, but this job has no id: (its id is derived from the output); "
                                 "set id: or remove {id} from output")
        except ValueError as exc:
            bad(line_of("id") if id_t is not None else line_of("output"), str(exc))
            return None
        try:
            output = output_name(render("output", output_t, ctx))
        except ValueError as exc:
            bad(line_of("output"), str(exc))
            return None
        job_id = ctx.get("id") or output[:-4]
        ctx["id"] = job_id
        try:
            prompt = render("prompt", prompt_t, ctx).strip()
        except ValueError as exc:
            self.problems.add(line_of("prompt"), str(exc), job_id)
            return None
        if not prompt:
            self.problems.add(line_of("prompt"), "prompt is empty; describe the motion and camera", job_id)
            return None
        sha = None
        if abs_path:
            info = self._image(abs_path)
            if isinstance(info, str):
                self.problems.add(line_of("image"), info, job_id)
                return None
            sha = info.sha256
        spec = JobSpec(
            id=job_id, model=model_id, prompt=prompt, image=written, image_path=abs_path, image_url=url,
            image_sha256=sha, params=params, take=ctx["take"], output=output,
            where=Location(self.file, row.line), fallback_model=self.fallback_model,
        )
        return _Candidate(spec, line_of("output"), line_of("id"), id_t is not None)

    def _unknown_fields(self, f: dict[str, Value], spec: ModelSpec | None, bad) -> None:
        allowed = set(CORE_FIELDS) | set(spec.extra_fields if spec else self.fields)
        for name, value in f.items():
            if name in allowed:
                continue
            owners = [m.id for m in self.table if name in m.extra_fields]
            if owners and spec:
                bad(value.line, f"{name!r} is not a field of {spec.id}; it is taken by {', '.join(owners)}")
            else:
                bad(value.line, f"unknown field {name!r}{suggest(name, self.fields)} "
                    f"(job fields: {', '.join(self.fields)}; template variables go under vars:)")

    def _numbers(self, f, name, default: list[int], bad, minimum: int | None = None) -> list[int]:
        if name not in f or not as_list(f[name].value):
            return default
        out = []
        for text in as_list(f[name].value):
            try:
                out.append(whole_number(name, text, minimum))
            except ValueError as exc:
                bad(f[name].line, str(exc))
        return out or default

    def _images_of(self, f, row_line: int, bad) -> list[tuple[str, str | None, str | None, str]]:
        if "image" not in f or f["image"].value in (None, []):
            bad(row_line, "image is required; give a path (relative to the manifest's folder), a glob, or an http(s) URL")
            return []
        refs = f["image"].value if isinstance(f["image"].value, list) else [f["image"].value]
        out = []
        for ref in refs:
            # Rows repeat the same few images or globs; resolve each once per load.
            resolved = self._refs.get(ref)
            if resolved is None:
                try:
                    resolved = resolve_image(ref.strip(), self.base)
                except ValueError as exc:
                    resolved = str(exc)
                self._refs[ref] = resolved
            if isinstance(resolved, str):
                bad(f["image"].line, resolved)
            else:
                out.extend(resolved)
        return out

    def _image(self, abs_path: str) -> ImageInfo | str:
        """The image's info, or the problem with it; each file is looked at once per load."""
        known = self._images.get(abs_path)
        if known is None:
            try:
                known = image_info(abs_path, self.cache)
            except ValueError as exc:
                known = str(exc)
            self._images[abs_path] = known
        return known

    def _last_image(self, text: str, line: int, bad) -> str | None:
        try:
            refs = resolve_image(text.strip(), self.base)
        except ValueError as exc:
            bad(line, str(exc).replace("image", "last_image", 1))
            return None
        if len(refs) != 1:
            bad(line, "last_image must name one image, not a pattern")
            return None
        _, abs_path, url, _ = refs[0]
        if abs_path and isinstance(info := self._image(abs_path), str):
            bad(line, "last_image: " + info)
            return None
        return url or abs_path


def _check_params(spec: ModelSpec, f: dict[str, Value], row_line: int, durations: list[int],
                  resolutions: list[str], extras: dict[str, Any], bad) -> None:
    """Ask the model about every listed value, pointing each complaint at its field's line."""
    for message in spec.check({"duration": durations[0], "resolution": resolutions[0], **extras}):
        name = message.split(" ", 1)[0]  # ModelSpec.check starts each message with the field
        bad(f[name].line if name in f else row_line, message)
    for d in durations[1:]:
        for message in spec.check({"duration": d}):
            bad(f["duration"].line, message)
    for r in resolutions[1:]:
        for message in spec.check({"resolution": r}):
            bad(f["resolution"].line, message)


def _text_of(value: Value | None) -> str | None:
    return value.value if value is not None and isinstance(value.value, str) else None


def _check_unique(candidates: list[_Candidate], problems: Problems) -> None:
    outputs: dict[str, _Candidate] = {}
    ids: dict[str, _Candidate] = {}
    for c in candidates:
        # Case-insensitive: on macOS and Windows 'A.mp4' and 'a.mp4' are the same file.
        first = outputs.setdefault(c.spec.output.casefold(), c)
        if first is not c:
            problems.add(c.output_line, f"output {c.spec.output!r} is also written by job {first.spec.id} "
                         f"(line {first.spec.where.line}; this job is on line {c.spec.where.line}); "
                         "give them different output: names, e.g. add {take} or a variable", c.spec.id)
            continue
        first = ids.setdefault(c.spec.id, c)
        if first is not c:
            line = c.id_line if c.explicit_id else c.spec.where.line
            problems.add(line, f"id {c.spec.id!r} is used twice (lines {first.spec.where.line} and {c.spec.where.line}); "
                         "ids must be unique", c.spec.id)
