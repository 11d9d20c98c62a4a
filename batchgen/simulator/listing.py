"""``POST /api/v3/predictions``: the account's predictions of the last 7 days, paged (docs "Predictions API").

Body ``{"page", "page_size"}`` (both required, page_size at most 100) plus optional filters
``model``, ``status``, ``created_after``, ``created_before`` (ISO 8601). Items are shaped like a
result's ``data`` and carry no ``input`` unless the simulator is told to (``--listing-input``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web

from .wire import ApiError, envelope

if TYPE_CHECKING:
    from .server import Simulator

MAX_PAGE_SIZE = 100
_STATUSES = ("created", "processing", "completed", "failed")


def parse_time(name: str, value: Any) -> float:
    """Epoch seconds of an ISO 8601 filter value; ApiError 400 when it is not one."""
    if not isinstance(value, str):
        raise ApiError(400, f"{name} must be an ISO 8601 time such as 2026-01-02T03:04:05Z, got {value!r}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise ApiError(400, f"{name} must be an ISO 8601 time such as 2026-01-02T03:04:05Z, got {value!r}") from exc
    if moment.tzinfo is None:
        raise ApiError(400, f"{name} must carry a time zone (Z or +hh:mm), got {value!r}")
    return moment.timestamp()


def _page_numbers(body: dict[str, Any]) -> tuple[int, int]:
    numbers = []
    for name, top in (("page", None), ("page_size", MAX_PAGE_SIZE)):
        value = body.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1 or (top and value > top):
            limit = f"1 to {top}" if top else "1 or more"
            raise ApiError(400, f"{name} is required and must be a whole number from {limit}, got {value!r}")
        numbers.append(value)
    return numbers[0], numbers[1]


def _filters(body: dict[str, Any]) -> list[Callable[[Any], bool]]:
    """Predicates over tasks, one per filter given."""
    checks: list[Callable[[Any], bool]] = []
    if body.get("model") is not None:
        checks.append(lambda task, model=str(body["model"]): task.model == model)
    if body.get("status") is not None:
        status = body["status"]
        if status not in _STATUSES:
            raise ApiError(400, f"status must be one of {', '.join(_STATUSES)}, got {status!r}")
        checks.append(lambda task: task.status() == status)
    if body.get("created_after") is not None:
        after = parse_time("created_after", body["created_after"])
        checks.append(lambda task: task.created_epoch >= after)
    if body.get("created_before") is not None:
        before = parse_time("created_before", body["created_before"])
        checks.append(lambda task: task.created_epoch <= before)
    return checks


class ListingHandler:
    def __init__(self, sim: "Simulator"):
        self.sim = sim

    async def listing(self, request: web.Request) -> web.Response:
        sim = self.sim
        if not sim.config.enable_listing:
            raise ApiError(404, "listing predictions is not offered by this server")
        body = await sim.json_body(request)
        page, size = _page_numbers(body)
        checks = _filters(body)
        key_id = request[sim.key_id_key]
        matched = [t for t in reversed(list(sim.live_tasks())) if t.key_id == key_id and all(c(t) for c in checks)]
        items = []
        for task in matched[(page - 1) * size:page * size]:
            item = sim.task_data(task)
            if sim.config.listing_input:
                item["input"] = dict(task.body)
            items.append(item)
        return envelope(200, "success", {"page": page, "page_size": size, "total": len(matched), "items": items})
