"""Pure helpers that give manifest values meaning: numbers, lists, templates, output names,
image references. Each returns a value or raises ValueError with the user-facing message."""

from __future__ import annotations

import glob
import os
import re
import string
from functools import lru_cache
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Iterable, Mapping, NamedTuple
from urllib.parse import unquote, urlsplit

_ID_RE = re.compile(r"[A-Za-z0-9._-]+")
_UNSAFE = re.compile(r"[^\w.\-]+")
_UNDERSCORES = re.compile(r"_{2,}")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GLOB_CHARS = re.compile(r"[*?\[]")
_formatter = string.Formatter()

if TYPE_CHECKING:
    from .models import ModelSpec


class FieldProblem(NamedTuple):
    """A problem with one field's value, naming the field so it can point at its line."""
    field: str
    message: str


def param_problems(spec: "ModelSpec", durations: list[int], resolutions: list[str],
                   extras: Mapping[str, Any]) -> list[FieldProblem]:
    """Ask the model about each listed value on its own; the model's defaults fill the other
    parameters (they are valid by construction), so every message is about the one field asked."""
    asked = [("duration", d) for d in durations] + [("resolution", r) for r in resolutions] + list(extras.items())
    return [FieldProblem(name, message) for name, value in asked for message in spec.check({name: value})]


def as_list(value: str | list[str | None] | None) -> list[str]:
    """A field that may be a list: a YAML list, or a text 'a|b' (how a CSV cell says two)."""
    if value is None:
        return []
    items = value if isinstance(value, list) else value.split("|")
    return [str(x).strip() for x in items if x is not None and str(x).strip()]


def single(name: str, value: str | list | None) -> str | None:
    if isinstance(value, list):
        raise ValueError(f"{name} must be a single value, not a list")
    return value


def whole_number(name: str, text: str, minimum: int | None = None) -> int:
    t = text.strip()
    if not re.fullmatch(r"[+-]?\d+", t):
        digits = re.search(r"\d+", t)
        example = digits.group() if digits else "5"
        raise ValueError(f"{name} {text!r} must be a whole number, e.g. {name}: {example}")
    n = int(t)
    if minimum is not None and n < minimum:
        raise ValueError(f"{name} is {n}; it must be at least {minimum}")
    return n


def check_id(text: str) -> str:
    if not _ID_RE.fullmatch(text):
        bad = sorted(set(_ID_RE.sub("", text)))
        raise ValueError(f"id {text!r} contains {' '.join(repr(c) for c in bad)}; "
                         "use only letters, digits, '.', '_' and '-'")
    return text


@lru_cache(maxsize=4096)
def placeholders(template: str) -> tuple[str, ...]:
    """The names a str.format template uses; ValueError if its braces are malformed.
    Cached because a 10,000-row manifest usually repeats a handful of templates."""
    try:
        parsed = list(_formatter.parse(template))
    except ValueError as exc:
        raise ValueError(f"malformed template ({exc}); write literal braces as '{{{{' and '}}}}'") from exc
    names = []
    for _, name, spec, _ in parsed:
        if name is None:
            continue
        if name == "" or not re.fullmatch(r"[^.\[\]{}]+", name):
            raise ValueError(f"placeholder {{{name}}} must be a plain name like {{stem}}; "
                             "write literal braces as '{{' and '}}'")
        names.append(name)
        if spec and "{" in spec:
            names.extend(placeholders(spec))
    return tuple(names)


class _VarError(ValueError):
    """A problem inside a variable's own template, already worded for the user."""


class _Vars(dict):
    """A template's context in which the user's variables are templates too: 'look: "{stem} in {light}"'
    must reach the prompt filled in, never as literal braces the video model would be paid to read."""

    def __init__(self, context: Mapping[str, Any], templated: frozenset[str]):
        super().__init__(context)
        self.templated, self.using = templated, []

    def __getitem__(self, name: str) -> Any:
        value = super().__getitem__(name)
        if name not in self.templated or not isinstance(value, str) or not ("{" in value or "}" in value):
            return value
        if name in self.using:
            loop = " -> ".join("{" + n + "}" for n in [*self.using[self.using.index(name):], name])
            raise _VarError(f"variables refer to each other in a loop ({loop}); give one of them a plain value")
        self.using.append(name)
        what = f"variable {{{name}}}"
        try:
            return render(what, value, self)
        except _VarError:
            raise
        except ValueError as exc:
            raise _VarError(str(exc) if str(exc).startswith(what) else f"{what}: {exc}") from exc
        finally:
            self.using.pop()


def render(what: str, template: str, context: Mapping[str, Any], templated: Iterable[str] = ()) -> str:
    """``template`` filled from ``context``; the values named in ``templated`` (the user's variables,
    not the built-ins such as a reviewer's {note}) are rendered as templates themselves."""
    names = placeholders(template)
    unknown = [n for n in dict.fromkeys(names) if n not in context]
    if unknown:
        known = ", ".join("{" + k + "}" for k in sorted(context))
        raise ValueError(f"{what} uses unknown placeholder {', '.join('{' + n + '}' for n in unknown)}; "
                         f"known here: {known} (declare it under vars: or add a CSV column)")
    nested = isinstance(context, _Vars)
    if not nested and templated:
        context = _Vars(context, frozenset(templated))
    try:
        return template.format_map(context)
    except _VarError as exc:
        if nested:
            raise
        raise ValueError(f"{what} cannot be rendered: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what} template cannot be rendered: {exc}") from exc


def output_name(rendered: str) -> str:
    """A rendered output template -> a safe relative posix path ending in .mp4."""
    raw = rendered.strip().replace("\\", "/")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw) or raw.startswith("~"):
        raise ValueError(f"output {rendered!r} is an absolute path; outputs must stay inside the output folder, "
                         "so give a relative name like 'clips/{stem}'")
    parts = raw.split("/")
    if ".." in (p.strip() for p in parts):
        raise ValueError(f"output {rendered!r} climbs out of the output folder with '..'; remove the '..'")
    if parts[-1].lower().endswith(".mp4"):
        parts[-1] = parts[-1][:-4]
    clean = []
    for part in parts:
        part = _UNDERSCORES.sub("_", _UNSAFE.sub("_", part)).lstrip(".")
        if part:
            clean.append(part)
    if not clean:
        raise ValueError(f"output renders to an empty name ({rendered!r}); "
                         "make sure the template contains text or a non-empty placeholder like {stem}")
    return "/".join(clean) + ".mp4"


def is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def url_stem(url: str) -> str:
    name = PurePosixPath(unquote(urlsplit(url).path)).stem
    return name or urlsplit(url).hostname or "image"


def resolve_image(text: str, base: str, limit: int) -> list[tuple[str, str | None, str | None, str]]:
    """One image reference -> [(as written, absolute path, url, stem)]; a glob gives one per
    matched file, sorted. A glob is searched only inside the manifest's folder and may match at
    most ``limit`` files. Existence and type are checked later, by images.image_info."""
    if is_url(text):
        return [(text, None, text, url_stem(text))]
    if _SCHEME.match(text):
        raise ValueError(f"image {text!r}: only http(s) URLs and local paths are supported")
    expanded = os.path.expanduser(text)
    full = os.path.normpath(os.path.join(base, expanded))
    if _GLOB_CHARS.search(expanded) and not os.path.exists(full):
        if os.path.isabs(expanded) or ".." in re.split(r"[/\\]", expanded):
            raise ValueError(f"image pattern {text!r} searches outside the manifest's folder; patterns are "
                             "searched from there, so move the images under it or list them one by one")
        matches = sorted(_once_each((m for m in glob.iglob(full, recursive=True) if os.path.isfile(m)), limit + 1))
        if len(matches) > limit:
            raise ValueError(f"image pattern {text!r} matches more than {limit} files (the manifest's max_jobs); "
                             "narrow the pattern, or raise the limit with a top-level 'max_jobs: N'")
        if not matches:
            raise ValueError(f"image pattern {text!r} matches no files (searched {full}); check the folder and pattern")
        return [(os.path.relpath(m, base).replace(os.sep, "/"), m, None, _stem(m)) for m in matches]
    return [(text, full, None, _stem(full))]


def _once_each(paths: Iterable[str], most: int) -> list[str]:
    """Each file once (at most ``most`` of them), however many folder links lead to it: '**' follows a
    link to a folder, so a link back up ('up -> ..') matched the same picture forty times over. Its
    shortest path is kept; another name for it in its own folder (a file link) still counts."""
    best: dict[tuple[str, str], str] = {}
    for path in paths:
        key = (os.path.realpath(os.path.dirname(path)), os.path.basename(path))
        if key not in best and len(best) == most:
            break
        best[key] = min(best.get(key, path), path, key=lambda p: (len(p), p))
    return list(best.values())


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]
