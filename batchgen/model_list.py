"""``batchgen models``: the model table (built-in and user-added) as rows, and those rows as text."""

from __future__ import annotations

from typing import Any

from .models import ModelSpec, ModelTable, builtin_models, compact_durations

__all__ = ["model_rows", "render_models"]


def _origin(spec: ModelSpec) -> str:
    builtin = {m.id: m for m in builtin_models()}.get(spec.id)
    if builtin is None:
        return "user"
    return "built-in" if builtin == spec else "built-in, changed by the user"


def _price(spec: ModelSpec) -> str:
    rates = sorted(set(spec.price_per_second.values()))
    if len(rates) == 1:
        return f"${rates[0]:.2f}/s"
    return ", ".join(f"${spec.price_per_second[r]:.2f}/s at {r}" for r in spec.resolutions)


def model_rows(table: ModelTable) -> list[dict[str, Any]]:
    """One plain record per model, in table order: what ``batchgen models`` shows."""
    rows = []
    for spec in table:
        retired = spec.retired
        rows.append({
            "model": spec.id,
            "provider": spec.provider,
            "origin": _origin(spec),
            "durations": ", ".join(compact_durations(spec.durations)),
            "resolutions": ", ".join(spec.resolutions) if spec.sends_resolution else "none to choose",
            "price": _price(spec),
            "confirmed": spec.confirmed,
            "min_read_interval": spec.min_read_interval,
            "retired": None if retired is None else {"date": retired.date, "message": retired.message,
                                                     "replacement": retired.replacement},
            "note": spec.note,
        })
    return rows


def render_models(rows: list[dict[str, Any]]) -> str:
    """The rows as an indented text listing, one block per model."""
    lines = []
    for row in rows:
        retired = row["retired"]
        lines.append(f"{row['model']}  (on {row['provider']}; {row['origin']})")
        lines.append(f"    durations: {row['durations']}; resolutions: {row['resolutions']}")
        lines.append(f"    price: {row['price']}" + ("" if row["confirmed"] else " (unconfirmed)")
                     + f"; results read at most every {row['min_read_interval']:g} s")
        if retired:
            lines.append(f"    RETIRED since {retired['date']}: {retired['message']}; "
                         f"use {retired['replacement']} instead")
        if row["note"]:
            lines.append(f"    note: {row['note']}")
    return "\n".join(lines)


def models_command(args: Any) -> int:
    """Print the table in effect (built-in rows extended by the user's models file)."""
    import json

    from .user_config import user_model_table

    rows = model_rows(user_model_table())
    print(json.dumps(rows, indent=2) if args.json else render_models(rows))
    return 0
