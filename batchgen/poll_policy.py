"""How results are read: the settings of the learned poll schedule (schedule.py), checked when made."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType


@dataclass(frozen=True)
class PollPolicy:
    """How to read results: first near the start of the expected finish window, then a few
    evenly spaced reads across it, then a growing backoff past its end."""

    #: Expected generation time before anything has finished; None: probe from min_interval up.
    prior: float | None = None
    min_interval: float = 1.0
    max_interval: float = 30.0
    growth: float = 1.5
    jitter: float = 0.1
    #: Reads spread across the learned window [low quantile, high quantile] of generation times.
    reads_in_window: float = 5.0
    low_quantile: float = 0.35
    high_quantile: float = 0.9
    #: How far back a window narrower than min_interval may reach for a second read.
    floor_quantile: float = 0.05
    #: Relative half-width of the window while fewer than ``min_samples`` jobs have finished.
    spread: float = 0.2
    min_samples: int = 5
    #: While nothing is known, only this many jobs probe; the others sleep until something is learned.
    probers: int = 2
    #: A blind probe's interval grows to probe_cap, or to probe_fraction of the time the job has
    #: run if that is longer: 2 s early, 30 s ten minutes in (long jobs do not cost hundreds of reads).
    probe_cap: float = 2.0
    probe_fraction: float = 0.05
    #: A wait before the window longer than this is re-planned after it (jobs finishing meanwhile
    #: sharpen the window; early in a batch the fastest finish first and bias it low).
    recheck: float = 5.0
    #: The fewest seconds between two reads of one job (and from its submit to its first read),
    #: per model in ``read_floors``, else ``read_floor``; a provider's documented cadence goes here.
    read_floor: float = 0.0
    read_floors: Mapping[str, float] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # Refused here, before anything is paid: a zero interval used to overflow deep in a run.
        object.__setattr__(self, "read_floors", MappingProxyType(dict(self.read_floors)))
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                raise ValueError(f"PollPolicy.{f.name} must be a finite number, got {value!r}")
        for model, floor in self.read_floors.items():
            _check(f"read_floors[{model!r}]", floor, math.isfinite(floor) and floor >= 0, "a finite number >= 0")
        _check("prior", self.prior, self.prior is None or self.prior > 0, "None or > 0 seconds")
        _check("min_interval", self.min_interval, self.min_interval > 0, "> 0 seconds")
        _check("max_interval", self.max_interval, self.max_interval >= self.min_interval,
               f"at least min_interval ({self.min_interval})")
        _check("growth", self.growth, self.growth >= 1, ">= 1")
        _check("jitter", self.jitter, 0 <= self.jitter < 1, "in [0, 1)")
        _check("reads_in_window", self.reads_in_window, self.reads_in_window > 0, "> 0")
        _check("floor_quantile", self.floor_quantile, 0 < self.floor_quantile <= self.low_quantile,
               "in (0, low_quantile]")
        _check("low_quantile", self.low_quantile, self.low_quantile <= self.high_quantile, "at most high_quantile")
        _check("high_quantile", self.high_quantile, self.high_quantile <= 1, "at most 1")
        _check("spread", self.spread, 0 <= self.spread < 1, "in [0, 1)")
        for name in ("min_samples", "probers"):
            _check(name, getattr(self, name), getattr(self, name) >= 1, ">= 1")
        for name in ("probe_cap", "recheck"):
            _check(name, getattr(self, name), getattr(self, name) > 0, "> 0 seconds")
        for name in ("probe_fraction", "read_floor"):
            _check(name, getattr(self, name), getattr(self, name) >= 0, ">= 0")

    def floor(self, model: str) -> float:
        """The fewest seconds between two reads of one job of ``model``."""
        return self.read_floors.get(model, self.read_floor)


def _check(name: str, value: object, ok: bool, rule: str) -> None:
    if not ok:
        raise ValueError(f"PollPolicy.{name} must be {rule}, got {value!r}")
