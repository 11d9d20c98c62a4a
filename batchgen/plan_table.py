"""``batchgen plan MANIFEST [--json]``: every job a manifest expands to, nothing sent.

The data (``plan_rows``) is built from a loaded manifest; ``render_table`` and
``render_json`` are pure functions returning text, so the CLI only prints. ``--json`` is one
object: ``{"manifest", "jobs": [{id, output, prompt, model, params, price, where}], "total",
"warnings": [{where, job, message}]}``, dollars as numbers (USD at list price).
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import asdict, dataclass
from typing import Any

from .errors import Problem
from .manifest import Manifest

_PROMPT_WIDTH = 48


@dataclass(frozen=True)
class PlanRow:
    id: str
    output: str
    prompt: str
    model: str
    params: dict[str, Any]
    price: float
    where: str


def add_plan_parser(sub: argparse._SubParsersAction) -> None:
    plan = sub.add_parser("plan", help="every job a manifest expands to, priced; nothing sent",
                          description="List every expanded job (id, output file, rendered prompt, model, "
                                      "parameters, list price) without sending anything.")
    plan.add_argument("manifest", help="the manifest (.yaml or .csv)")
    plan.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def plan_rows(manifest: Manifest) -> list[PlanRow]:
    return [
        PlanRow(job.id, job.output, job.prompt, job.model, dict(job.params),
                manifest.models.get(job.model).price(job.resolution, job.duration),
                f"{job.where.file}:{job.where.line}")
        for job in manifest.jobs
    ]


def warning_lines(warnings: list[Problem]) -> list[str]:
    return [f"warning: {w}" for w in warnings]


def render_json(manifest: Manifest) -> str:
    rows = plan_rows(manifest)
    return json.dumps({
        "manifest": str(manifest.path),
        "jobs": [asdict(r) for r in rows],
        "total": round(sum(r.price for r in rows), 2),
        "warnings": [{"where": f"{w.file}:{w.line}" if w.line else w.file, "job": w.job, "message": w.message}
                     for w in manifest.warnings],
    }, indent=2, ensure_ascii=False)


def render_table(manifest: Manifest, width: int | None = None) -> str:
    """One line per job; the prompt is cut to fit (``--json`` has it whole)."""
    rows = plan_rows(manifest)
    width = width or shutil.get_terminal_size((120, 24)).columns
    header = ("id", "output", "model", "params", "price", "prompt")
    cells = [(r.id, r.output, r.model, _params(r.params), f"${r.price:.2f}", r.prompt) for r in rows]
    widths = [max(len(header[i]), *(len(c[i]) for c in cells)) for i in range(5)]
    room = max(_PROMPT_WIDTH // 2, width - sum(widths) - 2 * 5)
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  prompt"]
    for c in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths)) + "  " + _cut(c[5], room))
    total = sum(r.price for r in rows)
    lines.append(f"{len(rows)} job{'s' if len(rows) != 1 else ''}, ${total:.2f} at list price")
    return "\n".join(lines + warning_lines(manifest.warnings))


def _params(params: dict[str, Any]) -> str:
    shown = {k: v for k, v in params.items() if k not in ("duration", "resolution")}
    base = f"{params['duration']}s {params['resolution']}"
    return " ".join([base, *(f"{k}={v}" for k, v in sorted(shown.items()))])


def _cut(text: str, room: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= room else flat[: room - 3] + "..."
