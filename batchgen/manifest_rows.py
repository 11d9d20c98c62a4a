"""One raw manifest row -> its jobs, or every problem with it at once.

Every field is checked on its own, so one bad field never hides another: a row with a
missing image, an unknown placeholder, duration 5 and '4k' gets all four problems in one
round. Jobs are built only when the whole row is sound, and only after the row's job count
is known to fit the manifest's max_jobs, so 'takes: 100000000' never allocates anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import ModelTableError
from .images import ImageCache, ImageInfo, image_info, size_warning
from .jobs import JobSpec, Location
from .manifest_fields import (
    as_list, check_id, output_name, param_problems, placeholders, render, resolve_image, single,
    whole_number,
)
from .manifest_read import Problems, RawRow, Value, closest
from .models import DEFAULT_MODEL, ModelSpec, ModelTable

CORE_FIELDS = ("image", "prompt", "duration", "resolution", "model", "output", "id", "takes")
BUILTIN_PLACEHOLDERS = ("stem", "duration", "resolution", "take", "id", "model_name", "note")
DEFAULT_OUTPUT = "{stem}-{duration}s-{resolution}"
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")
Image = tuple[str, "str | None", "str | None", str]  # (as written, absolute path, url, stem)


def job_fields(table: ModelTable) -> list[str]:
    extras = {name for spec in table for name in spec.extra_fields}
    return [*CORE_FIELDS, *sorted(extras - set(CORE_FIELDS))]


@dataclass
class Candidate:
    spec: JobSpec
    output_line: int
    id_line: int
    explicit_id: bool


@dataclass
class _Row:
    """What every job of one row shares (instead of a dozen positional parameters)."""
    raw: RawRow
    fields: dict[str, Value]
    model_id: str
    context: dict[str, Any]
    extras: dict[str, Any]
    prompt_t: str | None
    output_t: str
    id_t: str | None
    suffix: str

    def line_of(self, name: str) -> int:
        return self.fields[name].line if name in self.fields else self.raw.line


class _RowProblems:
    """Adds a row's problems under its id (when it has a literal one) and remembers that it failed."""

    def __init__(self, problems: Problems, job: str | None):
        self.problems, self.job, self.failed = problems, job, False

    def __call__(self, line: int, message: str) -> None:
        self.failed = True
        self.problems.add(line, message, self.job)


class Expander:
    """Turns one raw row into its jobs, adding problems (and warnings) as it goes."""

    def __init__(self, path: Path, table: ModelTable, problems: Problems, top_vars: dict[str, Any],
                 fallback_model: str | None, image_cache: ImageCache | None, max_jobs: int):
        self.file = str(path)
        self.base = str(path.resolve().parent)
        self.table, self.problems, self.top_vars = table, problems, top_vars
        self.fallback_model, self.cache, self.max_jobs = fallback_model, image_cache, max_jobs
        self.fields = job_fields(table)
        #: Redo notes by (row line, image as written) for {note}; empty unless ``run --redo``.
        self.notes: Mapping[tuple[int, str], str] = {}
        self.expanded = 0
        self._clashed: set[str] = set()
        #: Models a broken models: block names but could not add.
        self.unreadable_models: set[str] = set()
        self._images: dict[str, ImageInfo | str] = {}
        self._refs: dict[str, list[Image] | str] = {}

    def row(self, row: RawRow, defaults: dict[str, Value]) -> list[Candidate]:
        f = {**defaults, **row.fields}
        bad = _RowProblems(self.problems, _text_of(f.get("id")))
        bad.failed = any(v.reported for v in f.values())
        spec = self._model(f, row, bad)
        suggested = self._unknown_fields(f, spec, bad)
        context = self._context(row, bad)
        durations = self._numbers(f, "duration", [spec.default_duration] if spec else [], bad)
        resolutions = [r.lower() for r in as_list(f["resolution"].value)] if "resolution" in f else []
        resolutions = resolutions or ([spec.default_resolution] if spec else [])
        takes = self._takes(f, bad)
        extras = self._extras(f, spec, bad)
        if spec:
            for problem in param_problems(spec, durations, resolutions, extras):
                bad(f[problem.field].line if problem.field in f else row.line, problem.message)
        prompt_t = self._prompt(f, row, bad, suggested)
        images = self._images_of(f, row.line, bad, suggested)
        count = len(images) * len(durations) * len(resolutions) * takes
        self._bound(row, f, count, bad)
        output_t, id_t = self._one(f, "output", bad), self._one(f, "id", bad)
        if bad.failed or spec is None:
            self._check_unexpanded(f, row, images, prompt_t, context, bad)
            return []
        output_t = output_t if output_t is not None else DEFAULT_OUTPUT + ("-take{take}" if takes > 1 else "")
        suffix = "".join([
            "-{stem}" if len(images) > 1 else "", "-{duration}s" if len(durations) > 1 else "",
            "-{resolution}" if len(resolutions) > 1 else "", "-take{take}" if takes > 1 else "",
        ])
        shared = _Row(row, f, spec.id, context, extras, prompt_t, output_t, id_t, suffix if count > 1 else "")
        return self._expand(shared, images, durations, resolutions, takes)

    def _expand(self, shared: _Row, images: list[Image], durations: list[int], resolutions: list[str],
                takes: int) -> list[Candidate]:
        out: list[Candidate] = []
        model_name = shared.model_id.rsplit("/", 1)[-1]
        for image in images:
            for duration in durations:
                for resolution in resolutions:
                    for take in range(1, takes + 1):
                        ctx = {**shared.context, "stem": image[3], "duration": duration, "resolution": resolution,
                               "take": take, "model_name": model_name,
                               "note": self.notes.get((shared.raw.line, image[0]), "")}
                        params = {"duration": duration, "resolution": resolution, **shared.extras}
                        candidate = self._job(shared, ctx, image, params)
                        if candidate:
                            out.append(candidate)
        return out

    def _job(self, shared: _Row, ctx: dict[str, Any], image: Image, params: dict[str, Any]) -> Candidate | None:
        ids = self._ids(shared, ctx)
        if ids is None:
            return None
        job_id, output = ids
        try:
            prompt = render("prompt", shared.prompt_t, ctx, shared.context).strip()
        except ValueError as exc:
            self.problems.add(shared.line_of("prompt"), str(exc), job_id)
            return None
        if not prompt:
            self.problems.add(shared.line_of("prompt"), "prompt is empty; describe the motion and camera", job_id)
            return None
        written, abs_path, url, _ = image
        sha = None
        if abs_path:
            info = self._image(abs_path)
            if isinstance(info, str):
                self.problems.add(shared.line_of("image"), info, job_id)
                return None
            sha = info.sha256
            self._warn_size(info, abs_path, shared.line_of("image"), job_id)
        spec = JobSpec(
            id=job_id, model=shared.model_id, prompt=prompt, image=written, image_path=abs_path, image_url=url,
            image_sha256=sha, params=params, take=ctx["take"], output=output,
            where=Location(self.file, shared.raw.line), fallback_model=self.fallback_model,
        )
        return Candidate(spec, shared.line_of("output"), shared.line_of("id"), shared.id_t is not None)

    def _ids(self, shared: _Row, ctx: dict[str, Any]) -> tuple[str, str] | None:
        """(job id, output name) for one job; sets ctx['id'] so the prompt may use {id}."""
        id_t = shared.id_t
        try:
            if id_t is not None and shared.suffix and not placeholders(id_t):
                # A literal id on a row that expands gets the varying parts appended,
                # made id-safe: a stem like 'Red Mug' must not make the id invalid.
                ctx["id"] = check_id(id_t) + _UNSAFE_ID.sub("_", render("id", shared.suffix, ctx))
            elif id_t is not None:
                ctx["id"] = check_id(render("id", id_t, ctx, shared.context))
            elif "id" in placeholders(shared.output_t):
                raise ValueError("output uses {id}, but this job has no id: (its id is derived from the output); "
                                 "set id: or remove {id} from output")
        except ValueError as exc:
            self.problems.add(shared.line_of("id" if id_t is not None else "output"), str(exc),
                              _text_of(shared.fields.get("id")))
            return None
        try:
            output = output_name(render("output", shared.output_t, ctx, shared.context))
        except ValueError as exc:
            self.problems.add(shared.line_of("output"), str(exc), _text_of(shared.fields.get("id")))
            return None
        ctx["id"] = ctx.get("id") or output[:-4]
        return ctx["id"], output

    def _one(self, f: dict[str, Value], name: str, bad) -> str | None:
        if name not in f:
            return None
        try:
            return single(name, f[name].value)
        except ValueError as exc:
            bad(f[name].line, str(exc))
            return None

    def _model(self, f: dict[str, Value], row: RawRow, bad) -> ModelSpec | None:
        try:
            return self.table.get(self._one(f, "model", bad) or DEFAULT_MODEL)
        except ModelTableError as exc:
            if self._one(f, "model", bad) in self.unreadable_models:
                bad.failed = True  # the models: block's own problem says why; 'unknown model' would mislead
            else:
                bad(f["model"].line if "model" in f else row.line, str(exc))
            return None

    def _context(self, row: RawRow, bad) -> dict[str, Any]:
        context = {**self.top_vars, **row.vars}
        for name in BUILTIN_PLACEHOLDERS:
            if name in context and name in self._clashed:
                bad.failed = True  # said once, at the first row: a CSV column reaches every row
            elif name in context:
                self._clashed.add(name)
                bad(row.line, f"template variable {name!r} clashes with the built-in {{{name}}}; rename the variable "
                    "(under vars:, a row's vars: or the CSV header; every row that has it is refused)")
        return context

    def _unknown_fields(self, f: dict[str, Value], spec: ModelSpec | None, bad) -> set[str]:
        """Report fields no model knows; returns the names suggested for typos (their
        'X is required' would only repeat the same problem)."""
        allowed = set(CORE_FIELDS) | set(spec.extra_fields if spec else self.fields)
        suggested: set[str] = set()
        for name, value in f.items():
            if name in allowed:
                continue
            owners = [m.id for m in self.table if name in m.extra_fields]
            close = closest(name, self.fields)
            if owners and spec:
                bad(value.line, f"{name!r} is not a field of {spec.id}; it is taken by {', '.join(owners)}")
            elif close:
                suggested.add(close)
                bad(value.line, f"unknown field {name!r} (did you mean {close!r}?)")
            else:
                bad(value.line, f"unknown field {name!r} (job fields: {', '.join(self.fields)}; "
                    "template variables go under vars:)")
        return suggested

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

    def _takes(self, f: dict[str, Value], bad) -> int:
        takes = self._numbers(f, "takes", [1], bad, minimum=1)
        if len(takes) > 1:
            bad(f["takes"].line, "takes must be a single number")
            return 1
        return takes[0]

    def _extras(self, f: dict[str, Value], spec: ModelSpec | None, bad) -> dict[str, Any]:
        extras: dict[str, Any] = {}
        for name in spec.extra_fields if spec else ():
            value = self._one(f, name, bad)
            if value is not None and name == "last_image":
                value = self._last_image(value, f[name].line, bad)
            if value is not None:
                extras[name] = spec.typed(name, value)
        return extras

    def _prompt(self, f: dict[str, Value], row: RawRow, bad, suggested: set[str]) -> str | None:
        prompt_t = self._one(f, "prompt", bad)
        if "prompt" not in f and "prompt" not in suggested:
            bad(row.line, "prompt is required; add 'prompt: ...' describing the motion and camera")
        elif "prompt" in f and f["prompt"].value is None and not f["prompt"].reported:
            bad(f["prompt"].line, "prompt is empty; describe the motion and camera")
        return prompt_t

    def _bound(self, row: RawRow, f: dict[str, Value], count: int, bad) -> None:
        """Refuse a row (or the manifest so far) past max_jobs before anything is built."""
        self.expanded += count
        if count > self.max_jobs:
            bad(f["takes"].line if "takes" in f else row.line,
                f"this row expands to {count} jobs, over the manifest's limit of {self.max_jobs}; "
                "lower takes: or the lists, or raise the limit with a top-level 'max_jobs: N'")
        elif self.expanded > self.max_jobs:
            bad(row.line, f"the manifest expands to more than {self.max_jobs} jobs by this row; split it, "
                "or raise the limit with a top-level 'max_jobs: N'")

    def _check_unexpanded(self, f: dict[str, Value], row: RawRow, images: list[Image], prompt_t: str | None,
                          context: dict[str, Any], bad) -> None:
        """A row that cannot expand still gets its images and its prompt's placeholders
        checked, so the user sees those problems in the same round."""
        for _, abs_path, _, _ in images[:self.max_jobs]:
            info = self._image(abs_path) if abs_path else None
            if isinstance(info, str):
                bad(f["image"].line, info)
        if prompt_t is None:
            return
        known = set(context) | set(BUILTIN_PLACEHOLDERS)
        try:
            unknown = [n for n in dict.fromkeys(placeholders(prompt_t)) if n not in known]
        except ValueError as exc:
            bad(f["prompt"].line, str(exc))
            return
        if unknown:
            bad(f["prompt"].line, f"prompt uses unknown placeholder {', '.join('{' + n + '}' for n in unknown)}; "
                "declare it under vars: or add a CSV column")

    def _images_of(self, f, row_line: int, bad, suggested: set[str]) -> list[Image]:
        if "image" not in f or f["image"].value in (None, []) or str(f["image"].value).strip() == "":
            if "image" not in suggested:
                bad(row_line, "image is required; give a path (relative to the manifest's folder), a glob, "
                    "or an http(s) URL")
            return []
        refs = f["image"].value if isinstance(f["image"].value, list) else [f["image"].value]
        out = []
        for ref in refs:
            # Rows repeat the same few images or globs; resolve each once per load.
            resolved = self._refs.get(ref)
            if resolved is None:
                try:
                    resolved = resolve_image(ref.strip(), self.base, self.max_jobs)
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

    def _warn_size(self, info: ImageInfo, abs_path: str, line: int, job: str | None) -> None:
        message = size_warning(info, abs_path)
        if message:
            self.problems.warn(line, message, job)

    def _last_image(self, text: str, line: int, bad) -> str | None:
        if not text.strip():
            bad(line, "last_image is empty; give the picture the clip should end on, or remove the field")
            return None
        try:
            refs = resolve_image(text.strip(), self.base, self.max_jobs)
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
        if abs_path:
            self._warn_size(info, abs_path, line, None)
        return url or abs_path


def _text_of(value: Value | None) -> str | None:
    return value.value if value is not None and isinstance(value.value, str) else None
