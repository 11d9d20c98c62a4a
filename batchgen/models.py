"""The model table: what each WaveSpeed model accepts and what it costs.

Data, no I/O. The runner, the estimator and the simulator all read the same table, so a
model added here (or in a user's ``models:`` block / models file) is priced, validated and
simulated the same way everywhere. Figures marked unconfirmed in shared/API.md carry
``confirmed=False`` so the estimate can say so.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

from .errors import ModelTableError
from .routing import provider_of, tag

SORA_PRO = "openai/sora-2/image-to-video-pro"
SORA_STD = "openai/sora-2/image-to-video"
SEEDANCE = "bytedance/seedance-2.0/image-to-video"
SEEDANCE_FAST = "bytedance/seedance-2.0-fast/image-to-video"
#: Sora 2 is retired upstream (shared/API.md), so new manifests default to its recommended successor.
DEFAULT_MODEL = SEEDANCE

#: An extra field's kind when it is not a list of choices: the JSON type its value must have.
FIELD_KINDS = ("bool", "int")

#: Pixel size of each resolution name, landscape (width, height).
RESOLUTION_SIZES: dict[str, tuple[int, int]] = {
    "480p": (854, 480),
    "720p": (1280, 720),
    "1080p": (1920, 1080),
}


@dataclass(frozen=True)
class Retirement:
    """A model shut down upstream: since when, what the user should know, and what to use instead."""

    date: str
    message: str
    replacement: str


@dataclass(frozen=True)
class ModelSpec:
    """One model: its endpoint path, accepted parameters and price per second."""

    id: str
    durations: tuple[int, ...]
    default_duration: int
    resolutions: tuple[str, ...]
    default_resolution: str
    price_per_second: Mapping[str, float]
    #: Body fields besides image/prompt/duration/resolution: a tuple of allowed values (an empty
    #: tuple means any string) or one of FIELD_KINDS ("bool", "int").
    extra_fields: Mapping[str, tuple[str, ...] | str] = field(default_factory=dict)
    #: Whether the model's body takes ``resolution`` at all (Sora 2 standard may not).
    sends_resolution: bool = True
    confirmed: bool = True
    note: str = ""
    #: Set when the model is shut down upstream; the row stays so old manifests still price and validate.
    retired: Retirement | None = None
    #: Shortest wait in seconds between two reads of one task (the docs ask 5 s for video tasks).
    min_read_interval: float = 5.0
    #: The same model as other providers serve it (``providers: [wavespeed, replicate]`` pairs rows by it).
    family: str = ""

    @property
    def provider(self) -> str:
        """The provider that serves this row: the id's ``provider:`` prefix (none: WaveSpeed)."""
        return provider_of(self.id)

    def price(self, resolution: str, duration: int) -> float:
        """Dollars for one generation, rounded to the cent."""
        try:
            rate = self.price_per_second[resolution]
        except KeyError as exc:
            raise ModelTableError(
                f"model {self.id} has no price for resolution {resolution!r}; "
                f"known: {', '.join(sorted(self.price_per_second))}"
            ) from exc
        return round(rate * duration, 2)

    def typed(self, name: str, value: Any) -> Any:
        """A manifest's text for an extra field as the JSON type the model takes ("true" -> True for a
        bool field, "42" -> 42 for an int field); text that does not convert is kept for check() to report."""
        kind = self.extra_fields.get(name)
        if not isinstance(value, str) or kind not in FIELD_KINDS:
            return value
        text = value.strip().lower()
        if kind == "bool":
            return {"true": True, "false": False}.get(text, value)
        return int(text) if text.lstrip("-").isdigit() else value

    def check(self, params: Mapping[str, Any]) -> list[str]:
        """Problems with a job's parameters for this model (empty when fine)."""
        problems: list[str] = []
        duration = params.get("duration", self.default_duration)
        if not isinstance(duration, int) or isinstance(duration, bool) or duration not in self.durations:
            problems.append(
                f"duration {duration!r} is not accepted by {self.id}; use one of "
                f"{', '.join(str(d) for d in compact_durations(self.durations))}"
            )
        resolution = params.get("resolution", self.default_resolution)
        if resolution not in self.resolutions:
            problems.append(
                f"resolution {resolution!r} is not accepted by {self.id}; use one of "
                f"{', '.join(self.resolutions)}"
            )
        for name, allowed in self.extra_fields.items():
            value = params.get(name)
            if value is not None:
                problems += _extra_problems(self.id, name, value, allowed)
        return problems


def _extra_problems(model_id: str, name: str, value: Any, allowed: tuple[str, ...] | str) -> list[str]:
    if allowed == "bool":
        ok = isinstance(value, bool)
    elif allowed == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = not allowed or str(value) in allowed
    if ok:
        return []
    wanted = f"a {'true/false' if allowed == 'bool' else 'whole number'}" if isinstance(allowed, str) else \
        f"one of {', '.join(allowed)}"
    return [f"{name} {value!r} is not accepted by {model_id}; use {wanted}"]


def compact_durations(durations: tuple[int, ...]) -> list[str]:
    """Render 4..15 as '4-15' instead of twelve numbers."""
    ds = sorted(durations)
    if len(ds) > 5 and ds == list(range(ds[0], ds[-1] + 1)):
        return [f"{ds[0]}-{ds[-1]} (whole seconds)"]
    return [str(d) for d in ds]


SORA_RETIRED = Retirement(
    date="2026-09-24",
    message="OpenAI shut Sora 2 and its Videos API down on 2026-09-24; WaveSpeed's Sora 2 endpoints may refuse, "
            "fail or be served by another model",
    replacement=SEEDANCE,
)
_SEEDANCE_EXTRAS: Mapping[str, tuple[str, ...] | str] = {
    "aspect_ratio": ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9"),
    "last_image": (),
    # Documented for Seedance's sibling models, unconfirmed for 2.0 itself (shared/API.md).
    "generate_audio": "bool",
    "seed": "int",
}

BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        id=SEEDANCE,
        durations=tuple(range(4, 16)),
        default_duration=5,
        resolutions=("480p", "720p", "1080p"),
        default_resolution="720p",
        price_per_second={"480p": 0.12, "720p": 0.24, "1080p": 0.54},
        extra_fields=_SEEDANCE_EXTRAS,
        confirmed=False,
        note="$0.24/s at 720p from the docs; 480p/1080p prices, generate_audio and seed unconfirmed",
        family="seedance-2.0",
    ),
    ModelSpec(
        id=SEEDANCE_FAST,
        durations=tuple(range(4, 16)),
        default_duration=5,
        resolutions=("480p", "720p"),
        default_resolution="720p",
        # The docs give $0.80 per 5 s; the price of the other resolution is unconfirmed, so both are
        # priced at that rate (an estimate never undercounts).
        price_per_second={"480p": 0.16, "720p": 0.16},
        extra_fields=_SEEDANCE_EXTRAS,
        confirmed=False,
        note="$0.16/s from the docs; per-resolution prices, generate_audio and seed unconfirmed",
    ),
    ModelSpec(
        id=SORA_PRO,
        durations=(4, 8, 12, 16, 20),
        default_duration=4,
        resolutions=("720p", "1080p"),
        default_resolution="720p",
        price_per_second={"720p": 0.30, "1080p": 0.50},
        note="seed page; retired upstream on 2026-09-24",
        retired=SORA_RETIRED,
    ),
    ModelSpec(
        id=SORA_STD,
        durations=(4, 8, 12, 16, 20),
        default_duration=4,
        resolutions=("720p",),
        default_resolution="720p",
        price_per_second={"720p": 0.10},
        sends_resolution=False,
        confirmed=False,
        note="durations and price unconfirmed since the retirement (docs: 4-20 s, $0.10/s); retired 2026-09-24",
        retired=SORA_RETIRED,
    ),
)


def builtin_models() -> tuple[ModelSpec, ...]:
    """WaveSpeed's rows above and every registered provider's own (``ProviderInfo.models``), each under
    its ``provider:`` prefix: a provider module stays the one source of its models' specs."""
    from .providers import provider_info, provider_names  # the registry's modules import this one

    rows = list(BUILTIN_MODELS)
    for name in provider_names():
        rows += [replace(spec, id=tag(name, spec.id)) for spec in provider_info(name).models]
    return tuple(rows)


class ModelTable:
    """The models batchgen knows, by id (``provider:`` prefixed off WaveSpeed); extendable from data."""

    def __init__(self, models: Iterable[ModelSpec] = BUILTIN_MODELS):
        self._models = {m.id: m for m in models}

    @classmethod
    def builtin(cls) -> "ModelTable":
        """Every provider's built-in rows (builtin_models); ``ModelTable()`` alone is WaveSpeed's, which
        a provider module may read while it is being imported."""
        return cls(builtin_models())

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._models

    def __iter__(self):
        return iter(self._models.values())

    def ids(self) -> list[str]:
        return sorted(self._models)

    def get(self, model_id: str) -> ModelSpec:
        try:
            return self._models[model_id]
        except KeyError as exc:
            raise ModelTableError(
                f"unknown model {model_id!r}; known models: {', '.join(self.ids())} "
                "(add one under 'models:' in the manifest)"
            ) from exc

    def extended(self, entries: Mapping[str, Mapping[str, Any]] | None) -> "ModelTable":
        """A new table with models added or overridden from plain data.

        ``entries`` maps a model path to any ModelSpec fields; for a known model only the
        given fields change (e.g. a new price), a new model needs at least durations,
        resolutions and price_per_second.
        """
        if not entries:
            return self
        models = dict(self._models)
        for model_id, raw in entries.items():
            if not isinstance(raw, Mapping):
                raise ModelTableError(f"models.{model_id}: expected a mapping of fields, got {type(raw).__name__}")
            models[model_id] = _spec_from_data(model_id, raw, models.get(model_id))
        return ModelTable(models.values())


_SPEC_FIELDS = {
    "durations", "default_duration", "resolutions", "default_resolution", "price_per_second",
    "extra_fields", "sends_resolution", "confirmed", "note", "retired", "min_read_interval", "family",
}


def _spec_from_data(model_id: str, raw: Mapping[str, Any], base: ModelSpec | None) -> ModelSpec:
    unknown = set(raw) - _SPEC_FIELDS
    if unknown:
        raise ModelTableError(
            f"models.{model_id}: unknown field(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(_SPEC_FIELDS))}"
        )
    try:
        values = _values_from_data(raw, base)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ModelTableError(f"models.{model_id}: {exc}") from exc
    spec = replace(base, **values) if base is not None else _new_spec(model_id, values)
    _check_spec(spec)
    return spec


def _values_from_data(raw: Mapping[str, Any], base: ModelSpec | None) -> dict[str, Any]:
    """ModelSpec field values from a models-file entry; TypeError/ValueError name what is wrong.
    Types are checked, never coerced: 'resolutions: 720p' must not become ('7', '2', '0', 'p'),
    nor 'confirmed: "false"' True, nor 'durations: [5.9]' 5 seconds."""
    values: dict[str, Any] = {}
    if "durations" in raw:
        values["durations"] = tuple(_typed(f"durations[{i}]", d, int) for i, d in enumerate(_items("durations", raw)))
    if "resolutions" in raw:
        values["resolutions"] = tuple(_typed(f"resolutions[{i}]", r, str)
                                      for i, r in enumerate(_items("resolutions", raw)))
    if "price_per_second" in raw:
        values["price_per_second"] = _prices(raw["price_per_second"], values.get(
            "resolutions", base.resolutions if base else ()))
    if "extra_fields" in raw:
        values["extra_fields"] = {str(k): _field_kind(v) for k, v in _typed("extra_fields", raw["extra_fields"],
                                                                         Mapping).items()}
    if "retired" in raw:
        values["retired"] = _retirement(raw["retired"])
    if "min_read_interval" in raw:
        values["min_read_interval"] = _finite("min_read_interval", raw["min_read_interval"], allow_zero=True)
    for name, kind in (("default_duration", int), ("default_resolution", str), ("note", str), ("family", str),
                       ("sends_resolution", bool), ("confirmed", bool)):
        if name in raw:
            values[name] = _typed(name, raw[name], kind)
    return values


_KIND_NAMES = {int: "a whole number", str: "text", bool: "true or false", Mapping: "a mapping of name: value"}


def _typed(name: str, value: Any, kind: type) -> Any:
    """``value`` when it already has the type (a bool is not a whole number), else a ValueError saying so."""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{name} must be {_KIND_NAMES[kind]}, got {value!r}")
    return value


def _items(name: str, raw: Mapping[str, Any]) -> list[Any]:
    value = raw[name]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{name} must be a list, like {'[5, 10]' if name == 'durations' else '[720p, 1080p]'}, "
                         f"got {value!r}")
    return list(value)


def _finite(name: str, value: Any, *, allow_zero: bool = False) -> float:
    try:
        if isinstance(value, bool):  # float(True) is 1.0: 'price_per_second: yes' is no price
            raise TypeError("a truth value")
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number, like 0.24, got {value!r}") from exc
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number above zero, got {value!r}")
    return number


def _prices(pps: Any, resolutions: Iterable[str]) -> dict[str, float]:
    """A price per second for each resolution; one number applies to all of them."""
    if not isinstance(pps, Mapping):
        pps = {r: pps for r in resolutions}
    return {str(k): _finite(f"price_per_second.{k}", v) for k, v in pps.items()}


def _field_kind(value: Any) -> tuple[str, ...] | str:
    if isinstance(value, str):
        if value not in FIELD_KINDS:
            raise ValueError(f"an extra field is a list of allowed values or one of {', '.join(FIELD_KINDS)}, "
                             f"got {value!r}")
        return value
    return tuple(str(x) for x in (value or ()))


def _retirement(value: Any) -> Retirement | None:
    """``retired: false`` clears a retirement; a mapping needs date, message and replacement."""
    if value is False or value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {"date", "message", "replacement"}:
        raise ValueError("retired must be false or a mapping with date, message and replacement")
    return Retirement(date=str(value["date"]), message=str(value["message"]), replacement=str(value["replacement"]))


def _new_spec(model_id: str, values: dict[str, Any]) -> ModelSpec:
    missing = {"durations", "resolutions", "price_per_second"} - set(values)
    if missing:
        raise ModelTableError(f"models.{model_id}: a new model needs {', '.join(sorted(missing))}")
    values.setdefault("default_duration", values["durations"][0])
    values.setdefault("default_resolution", values["resolutions"][0])
    values.setdefault("confirmed", False)
    return ModelSpec(id=model_id, **values)


def _check_spec(spec: ModelSpec) -> None:
    missing_prices = set(spec.resolutions) - set(spec.price_per_second)
    if missing_prices:
        raise ModelTableError(f"models.{spec.id}: no price_per_second for {', '.join(sorted(missing_prices))}")
    if spec.default_duration not in spec.durations or spec.default_resolution not in spec.resolutions:
        raise ModelTableError(f"models.{spec.id}: the defaults must be among the accepted values")


def body_hash(body: Mapping[str, Any]) -> str:
    """sha256 of a request body in canonical JSON: how the state and the simulator's
    ledger name the same submission."""
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def output_size(resolution: str, image_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """Pixel size of an output: landscape by default, portrait when the image is."""
    width, height = RESOLUTION_SIZES[resolution]
    if image_size is not None and image_size[1] > image_size[0]:
        return height, width
    return width, height
