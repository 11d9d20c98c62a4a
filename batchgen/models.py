"""The model table: what each WaveSpeed model accepts and what it costs.

Data, no I/O. The runner, the estimator and the simulator all read the same table, so a
model added here (or in a user's ``models:`` block / models file) is priced, validated and
simulated the same way everywhere. Figures marked unconfirmed in shared/API.md carry
``confirmed=False`` so the estimate can say so.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

from .errors import ModelTableError

SORA_PRO = "openai/sora-2/image-to-video-pro"
SORA_STD = "openai/sora-2/image-to-video"
SEEDANCE = "bytedance/seedance-2.0/image-to-video"
DEFAULT_MODEL = SORA_PRO

#: Pixel size of each resolution name, landscape (width, height).
RESOLUTION_SIZES: dict[str, tuple[int, int]] = {
    "480p": (854, 480),
    "720p": (1280, 720),
    "1080p": (1920, 1080),
}


@dataclass(frozen=True)
class ModelSpec:
    """One model: its endpoint path, accepted parameters and price per second."""

    id: str
    durations: tuple[int, ...]
    default_duration: int
    resolutions: tuple[str, ...]
    default_resolution: str
    price_per_second: Mapping[str, float]
    #: Body fields besides image/prompt/duration/resolution, with their allowed values
    #: (an empty tuple means any string).
    extra_fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Whether the model's body takes ``resolution`` at all (Sora 2 standard may not).
    sends_resolution: bool = True
    confirmed: bool = True
    note: str = ""

    def price(self, resolution: str, duration: int) -> float:
        """Dollars for one generation, rounded to the cent."""
        try:
            rate = self.price_per_second[resolution]
        except KeyError:
            raise ModelTableError(
                f"model {self.id} has no price for resolution {resolution!r}; "
                f"known: {', '.join(sorted(self.price_per_second))}"
            ) from None
        return round(rate * duration, 2)

    def check(self, params: Mapping[str, Any]) -> list[str]:
        """Problems with a job's parameters for this model (empty when fine)."""
        problems: list[str] = []
        duration = params.get("duration", self.default_duration)
        if not isinstance(duration, int) or isinstance(duration, bool) or duration not in self.durations:
            problems.append(
                f"duration {duration!r} is not accepted by {self.id}; use one of "
                f"{', '.join(str(d) for d in _compact(self.durations))}"
            )
        resolution = params.get("resolution", self.default_resolution)
        if resolution not in self.resolutions:
            problems.append(
                f"resolution {resolution!r} is not accepted by {self.id}; use one of "
                f"{', '.join(self.resolutions)}"
            )
        for name, allowed in self.extra_fields.items():
            value = params.get(name)
            if value is not None and allowed and str(value) not in allowed:
                problems.append(f"{name} {value!r} is not accepted by {self.id}; use one of {', '.join(allowed)}")
        return problems


def _compact(durations: tuple[int, ...]) -> list[str]:
    """Render 4..15 as '4-15' instead of twelve numbers."""
    ds = sorted(durations)
    if len(ds) > 5 and ds == list(range(ds[0], ds[-1] + 1)):
        return [f"{ds[0]}-{ds[-1]} (whole seconds)"]
    return [str(d) for d in ds]


BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        id=SORA_PRO,
        durations=(4, 8, 12, 16, 20),
        default_duration=4,
        resolutions=("720p", "1080p"),
        default_resolution="720p",
        price_per_second={"720p": 0.30, "1080p": 0.50},
        note="seed page; being retired, may fall back silently",
    ),
    ModelSpec(
        id=SORA_STD,
        durations=(4, 8, 12),
        default_duration=4,
        resolutions=("720p",),
        default_resolution="720p",
        price_per_second={"720p": 0.10},
        sends_resolution=False,
        confirmed=False,
        note="durations and price unconfirmed (shared/API.md); override in a models file",
    ),
    ModelSpec(
        id=SEEDANCE,
        durations=tuple(range(4, 16)),
        default_duration=5,
        resolutions=("480p", "720p", "1080p"),
        default_resolution="720p",
        price_per_second={"480p": 0.12, "720p": 0.24, "1080p": 0.54},
        extra_fields={
            "aspect_ratio": ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9"),
            "last_image": (),
        },
        confirmed=False,
        note="$0.24/s at 720p from the docs; 480p/1080p prices unconfirmed",
    ),
)


class ModelTable:
    """The models batchgen knows, by endpoint path; extendable from data."""

    def __init__(self, models: Iterable[ModelSpec] = BUILTIN_MODELS):
        self._models = {m.id: m for m in models}

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._models

    def __iter__(self):
        return iter(self._models.values())

    def ids(self) -> list[str]:
        return sorted(self._models)

    def get(self, model_id: str) -> ModelSpec:
        try:
            return self._models[model_id]
        except KeyError:
            raise ModelTableError(
                f"unknown model {model_id!r}; known models: {', '.join(self.ids())} "
                "(add one under 'models:' in the manifest)"
            ) from None

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
    "extra_fields", "sends_resolution", "confirmed", "note",
}


def _spec_from_data(model_id: str, raw: Mapping[str, Any], base: ModelSpec | None) -> ModelSpec:
    unknown = set(raw) - _SPEC_FIELDS
    if unknown:
        raise ModelTableError(
            f"models.{model_id}: unknown field(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(_SPEC_FIELDS))}"
        )
    values: dict[str, Any] = {}
    try:
        if "durations" in raw:
            values["durations"] = tuple(int(d) for d in raw["durations"])
        if "resolutions" in raw:
            values["resolutions"] = tuple(str(r) for r in raw["resolutions"])
        if "price_per_second" in raw:
            pps = raw["price_per_second"]
            if not isinstance(pps, Mapping):
                pps = {r: pps for r in values.get("resolutions", base.resolutions if base else ())}
            values["price_per_second"] = {str(k): float(v) for k, v in pps.items()}
        if "extra_fields" in raw:
            values["extra_fields"] = {str(k): tuple(str(x) for x in (v or ())) for k, v in raw["extra_fields"].items()}
        for name in ("default_duration",):
            if name in raw:
                values[name] = int(raw[name])
        for name in ("default_resolution", "note"):
            if name in raw:
                values[name] = str(raw[name])
        for name in ("sends_resolution", "confirmed"):
            if name in raw:
                values[name] = bool(raw[name])
    except (TypeError, ValueError, AttributeError) as exc:
        raise ModelTableError(f"models.{model_id}: {exc}") from exc
    if base is not None:
        spec = replace(base, **values)
    else:
        missing = {"durations", "resolutions", "price_per_second"} - set(values)
        if missing:
            raise ModelTableError(f"models.{model_id}: a new model needs {', '.join(sorted(missing))}")
        values.setdefault("default_duration", values["durations"][0])
        values.setdefault("default_resolution", values["resolutions"][0])
        values.setdefault("confirmed", False)
        spec = ModelSpec(id=model_id, **values)
    missing_prices = set(spec.resolutions) - set(spec.price_per_second)
    if missing_prices:
        raise ModelTableError(f"models.{model_id}: no price_per_second for {', '.join(sorted(missing_prices))}")
    if spec.default_duration not in spec.durations or spec.default_resolution not in spec.resolutions:
        raise ModelTableError(f"models.{model_id}: the defaults must be among the accepted values")
    return spec


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
