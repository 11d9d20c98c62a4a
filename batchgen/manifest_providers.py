"""``providers: [wavespeed, replicate]``: one model served by two providers, the second standing in when
the first is unavailable.

Rows are paired by the model table's ``family`` (Seedance 2.0 is ``seedance-2.0`` on both). Each job
then asks the first provider's row and names the second's as its fallback, so everything the runner
already does for a fallback_model (switching after the typed unavailable signal, status, sidecars,
the estimate's second price) holds across providers with no second mechanism.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .manifest_read import Problems
from .manifest_rows import Candidate
from .models import ModelSpec, ModelTable
from .providers import provider_names


def read_providers(value: Any, line: int, fallback_model: str | None, problems: Problems) -> tuple[str, str] | None:
    """The setting as (first, second); problems name what is wrong with it."""
    known = provider_names()
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) for v in value) \
            or value[0] == value[1]:
        problems.add(line, f"providers {value!r} must list two different providers, like [wavespeed, replicate]")
        return None
    unknown = [v for v in value if v not in known]
    if unknown:
        problems.add(line, f"providers: unknown provider(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return None
    if fallback_model:
        problems.add(line, "use either providers: (the same model on a second provider) or fallback_model:, not both")
        return None
    return value[0], value[1]


def _row(table: ModelTable, provider: str, family: str, asked: str) -> ModelSpec | None:
    """The row of ``provider`` for the asked model: the model itself when it is that provider's, else
    the one of its family."""
    rows = [spec for spec in table
            if spec.provider == provider and (spec.id == asked or family and spec.family == family)]
    mine = [spec for spec in rows if spec.id == asked]
    return (mine or rows or [None])[0]


def apply_providers(candidates: list[Candidate], pair: tuple[str, str], table: ModelTable, line: int,
                    problems: Problems) -> None:
    """Point each job at the first provider's row of its model and the second's as its fallback."""
    for candidate in candidates:
        job = candidate.spec
        family = table.get(job.model).family
        rows = [_row(table, name, family, job.model) for name in pair]
        missing = [name for name, row in zip(pair, rows) if row is None]
        if missing:
            problems.add(line, f"providers: {job.model} (job {job.id}) has no row on {' or '.join(missing)} "
                               "(the model table pairs rows by their 'family'); see 'batchgen models'", job.id)
            continue
        for row in rows:
            for problem in row.check(job.params):
                problems.add(line, f"providers: job {job.id} on {row.provider}: {problem}", job.id)
        candidate.spec = replace(job, model=rows[0].id, fallback_model=rows[1].id)


def providers_setting(settings: dict[str, tuple[Any, int]], manifest: Any, candidates: list[Candidate],
                      problems: Problems) -> None:
    """Apply a manifest's ``providers:`` to its expanded jobs. The one fallback every job got becomes
    the manifest's fallback_model, which the estimate prices beside the first provider's price."""
    if "providers" not in settings:
        return
    value, line = settings["providers"]
    pair = read_providers(value, line, manifest.fallback_model, problems)
    if pair is None:
        return
    apply_providers(candidates, pair, manifest.models, line, problems)
    fallbacks = {c.spec.fallback_model for c in candidates}
    manifest.fallback_model = fallbacks.pop() if len(fallbacks) == 1 else None


__all__ = ["apply_providers", "providers_setting", "read_providers"]
