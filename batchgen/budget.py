"""The spending cap (``--max-cost``): a submit goes out only if what is committed plus its price fits."""

from __future__ import annotations

from typing import Callable

from .errors import OverBudgetError
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


def what_fits(jobs: list[JobSpec], price: Callable[[JobSpec], float], committed: float,
              max_cost: float) -> list[JobSpec]:
    """The longest run of ``jobs``, in their order, whose prices fit under the cap with what is committed."""
    fits, total = [], committed
    for job in jobs:
        total += price(job)
        if total > max_cost + 1e-9:
            break
        fits.append(job)
    return fits


def check_cap(jobs: list[JobSpec], price: Callable[[JobSpec], float], committed: float, max_cost: float,
              *, cap_name: str, partial: bool) -> list[JobSpec]:
    """The submits this run may make under the cap: all of them, or with ``partial`` the ones that fit.
    OverBudgetError (exit 3) when they do not all fit and ``partial`` was not asked for, or nothing fits."""
    fits = what_fits(jobs, price, committed, max_cost)
    if len(fits) == len(jobs):
        return jobs
    to_pay = round(sum(price(j) for j in jobs), 2)
    short = round(committed + to_pay - max_cost, 2)
    fit_dollars = round(sum(price(j) for j in fits), 2)
    if partial and fits:
        return fits
    said = (f"{cap_name} ${max_cost:.2f} is below this run's total: ${committed:.2f} already committed + "
            f"${to_pay:.2f} for {len(jobs)} submit(s) is ${short:.2f} too much. ")
    if not fits:
        raise OverBudgetError(said + "Not one more job fits; raise the cap to run them.")
    raise OverBudgetError(said + f"{len(fits)} job(s) fit (${fit_dollars:.2f}, in manifest order): add --partial "
                                 "to run just those, or raise the cap. Nothing was paid.")
