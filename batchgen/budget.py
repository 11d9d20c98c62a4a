"""The spending cap (``--max-cost``): a submit goes out only if what is committed plus its price fits."""

from __future__ import annotations

from typing import Callable

from .jobs import JobSpec
from .state import State


class Budget:
    def __init__(self, max_cost: float | None, state: Callable[[], State]):
        self.max_cost = max_cost
        self.state = state

    def allows(self, job: JobSpec, cost: float, stop: Callable[[str], None]) -> bool:
        """True when the job fits; otherwise the run is stopped with the reason and what to do."""
        if self.max_cost is None:
            return True
        committed = round(self.state().committed, 2)
        if committed + cost <= self.max_cost + 1e-9:
            return True
        stop(f"budget: ${committed:.2f} committed + ${cost:.2f} for {job.id} would pass "
             f"--max-cost ${self.max_cost:.2f}; raise the cap and run again to continue")
        return False
