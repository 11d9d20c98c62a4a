"""What the simulator saw and charged: the ground truth tests and benchmarks compare a client against."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from .tasks import FAILED, Task


@dataclass
class Ledger:
    polls_by_id: Counter = field(default_factory=Counter)
    uploads: int = 0
    upload_bytes: int = 0
    downloads: int = 0
    downloads_started: int = 0
    outputs: dict[str, str] = field(default_factory=dict)
    requests: Counter = field(default_factory=Counter)
    responses: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    max_concurrent: int = 0

    def snapshot(self, tasks: Iterable[Task], charge_failed: bool) -> dict[str, Any]:
        """The ledger as plain JSON-ready data (the ``GET /_sim/ledger`` body)."""
        submissions = []
        by_hash: Counter = Counter()
        total = 0.0
        for task in tasks:
            status = task.status()
            charged = charge_failed or status != FAILED
            submissions.append({
                "id": task.id,
                "model": task.model,
                "model_used": task.model_used,
                "body_hash": task.body_hash,
                "status": status,
                "charged": charged,
                "price": task.price,
                "created_at": task.created_at,
            })
            by_hash[task.body_hash] += 1
            if charged:
                total += task.price
        return {
            "submissions": submissions,
            "accepted_by_body_hash": dict(by_hash),
            "charged_total": round(total, 2),
            "polls": sum(self.polls_by_id.values()),
            "polls_by_id": dict(self.polls_by_id),
            "uploads": self.uploads,
            "upload_bytes": self.upload_bytes,
            "downloads": self.downloads,
            "downloads_started": self.downloads_started,
            "outputs": dict(self.outputs),
            "requests": dict(self.requests),
            "responses": {str(code): n for code, n in sorted(self.responses.items())},
            "faults": dict(self.faults),
            "max_concurrent": self.max_concurrent,
        }
