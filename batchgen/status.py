"""``batchgen status STATE``: what a state file says, offline (no network, no lock).

``--json`` prints one object whose fields scripts may rely on:

    state         path of the state file
    jobs          number of jobs the state knows
    counts        {status: n} for new, submitting, unknown, submitted, completed, downloaded, failed
    spend         {"committed": $, "downloaded": $, "in_flight": $}  (dollars, list price at submit)
    failed        [{id, key, where, class, error, attempts, pid}]
    unknown       [{id, key, where, error}]
    fallbacks     [{id, key, model_asked, model_used}]
    next_run      {"submit": n, "poll": n, "download": n, "skip_failed": n, "unknown": n}
    runs          number of runs recorded
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

from .errors import StateError
from .jobs import JobStatus
from .runner import committed_spend
from .state import State, load


def summarize(state: State, path: str) -> dict[str, Any]:
    records = list(state.jobs.values())
    counts = Counter(r.status.value for r in records)
    in_flight = round(sum(r.cost for r in records if r.status.in_flight or r.status is JobStatus.UNKNOWN), 2)
    downloaded = round(sum(r.cost for r in records if r.status is JobStatus.DOWNLOADED), 2)
    return {
        "state": path,
        "jobs": len(records),
        "counts": {s.value: counts.get(s.value, 0) for s in JobStatus},
        "spend": {"committed": committed_spend(records), "downloaded": downloaded, "in_flight": in_flight},
        "failed": [{"id": r.id, "key": r.key, "where": r.where, "class": r.error_class, "error": r.error,
                    "attempts": r.attempts, "pid": r.pid} for r in records if r.status is JobStatus.FAILED],
        "unknown": [{"id": r.id, "key": r.key, "where": r.where, "error": r.error}
                    for r in records if r.status is JobStatus.UNKNOWN],
        "fallbacks": [{"id": r.id, "key": r.key, "model_asked": r.submit_model or r.model, "model_used": r.model_used}
                      for r in records if r.fell_back],
        "next_run": {
            "submit": counts.get("new", 0),
            "poll": counts.get("submitted", 0),
            "download": counts.get("completed", 0),
            "skip_failed": counts.get("failed", 0),
            "unknown": counts.get("unknown", 0) + counts.get("submitting", 0),
        },
        "runs": sum(1 for r in state.runs if r.get("phase") == "start"),
    }


def render(summary: dict[str, Any]) -> str:
    c = summary["counts"]
    spend = summary["spend"]
    lines = [
        f"{summary['state']}: {summary['jobs']} jobs over {summary['runs']} run(s)",
        "  " + ", ".join(f"{name} {n}" for name, n in c.items() if n) if any(c.values()) else "  no jobs yet",
        f"  spend: ${spend['committed']:.2f} committed (${spend['downloaded']:.2f} downloaded, "
        f"${spend['in_flight']:.2f} in flight or unknown)",
    ]
    for item in summary["failed"]:
        lines.append(f"  failed  {item['id']} ({item['where']}) [{item['class']}]: {item['error']}")
    for item in summary["unknown"]:
        lines.append(f"  unknown {item['id']} ({item['where']}): {item['error']}")
    for item in summary["fallbacks"]:
        lines.append(f"  fallback {item['id']}: asked {item['model_asked']}, got {item['model_used']}")
    nxt = summary["next_run"]
    lines.append(f"  next run: submit {nxt['submit']}, poll {nxt['poll']}, download {nxt['download']}; "
                 f"{nxt['skip_failed']} failed kept (--retry-failed), {nxt['unknown']} unknown "
                 "(reconciled with the provider, or --resubmit-unknown)")
    return "\n".join(lines)


def status_command(args: argparse.Namespace) -> int:
    if not args.state.exists():
        raise StateError(f"{args.state}: no such state file; it is created by 'batchgen run' in the output folder")
    summary = summarize(load(args.state), str(args.state))
    print(json.dumps(summary, indent=2) if args.json else render(summary))
    return 0
