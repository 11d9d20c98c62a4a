"""Showing a run: a tqdm bar (or plain lines without a terminal) and the log file.

Observers receive the runner's events and never change anything. Log records go through
tqdm.write on a terminal so they do not tear the bar.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from .runner import committed_spend

log = logging.getLogger("batchgen")

#: Which visible column each runner event moves a job into.
_COLUMN = {
    "submitting": "queued", "submitted": "generating", "generating": "generating",
    "completed": "downloading", "downloading": "downloading", "downloaded": "done",
    "failed": "failed", "unknown": "unknown", "stalled": "stalled",
}


class _TqdmHandler(logging.Handler):
    def __init__(self, stream: TextIO):
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - a display problem must never stop a paid batch
            self.handleError(record)


def setup_logging(log_file: Path | None, verbosity: int, stream: TextIO | None = None) -> None:
    """Console at WARNING (-v: INFO, -vv: DEBUG, -q: ERROR); the log file gets everything from INFO."""
    stream = stream or sys.stderr
    root = logging.getLogger("batchgen")
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    console = _TqdmHandler(stream)
    console.setLevel({-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setLevel(logging.INFO)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root.addHandler(fh)
    root.propagate = False


class Progress:
    """Counts jobs by column and spend; draws a bar or prints a line every ``every`` seconds."""

    def __init__(self, total: int, state_log, *, stream: TextIO | None = None, quiet: bool = False,
                 bar: bool | None = None, every: float = 15.0, clock=time.monotonic):
        self.total = total
        self.state_log = state_log
        self.stream = stream = stream or sys.stderr
        self.quiet = quiet
        self.bar_enabled = stream.isatty() if bar is None else bar
        self.every = every
        self.clock = clock
        self.where: dict[str, str] = {}
        self.done_before = 0
        self._bar: tqdm | None = None
        self._last_line = 0.0

    def counts(self) -> Counter:
        return Counter(self.where.values())

    def spent(self) -> float:
        return committed_spend(self.state_log.state.jobs.values())

    def summary(self) -> str:
        c = self.counts()
        parts = [f"{c['done']}/{self.total} done"]
        for name in ("queued", "generating", "downloading", "failed", "unknown", "stalled"):
            if c[name]:
                parts.append(f"{name} {c[name]}")
        parts.append(f"${self.spent():.2f} committed")
        return ", ".join(parts)

    def __call__(self, kind: str, info: dict[str, Any]) -> None:
        job = info.get("job")
        if kind == "plan":
            self._start(info["plan"])
            return
        if kind == "stopping":
            log.warning("stopping: %s", info.get("reason"))
        if job is not None and kind in _COLUMN:
            self.where[job.key] = _COLUMN[kind]
            if kind == "downloaded" and self._bar is not None:
                self._bar.update(1)
        self._refresh()

    def _start(self, plan) -> None:
        for job in plan.done:
            self.where[job.key] = "done"
        for job in plan.failed:
            self.where[job.key] = "failed"
        for job in plan.unknown:
            self.where[job.key] = "unknown"
        if self.quiet:
            return
        if self.bar_enabled:
            self._bar = tqdm(total=self.total, initial=len(plan.done), file=self.stream, unit="video",
                             dynamic_ncols=True, desc="batch")
        self._refresh(force=True)

    def _refresh(self, force: bool = False) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(self.summary().split(", ", 1)[-1], refresh=True)
            return
        now = self.clock()
        if force or now - self._last_line >= self.every:
            self._last_line = now
            print(f"[{time.strftime('%H:%M:%S')}] {self.summary()}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif not self.quiet:
            self._refresh(force=True)

