"""Account and catalog endpoints (shared/API.md; shapes unconfirmed upstream, as the official MCP server uses them).

``GET /api/v3/balance`` -> ``data.balance`` (dollars, going down as tasks are charged);
``GET /api/v3/models`` -> the catalog from the model table with ``base_price``;
``POST /api/v3/model/price`` ``{"model_id", "inputs"}`` -> a quote; ``GET /api/v3/webhook/secret``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..errors import ModelTableError
from ..models import ModelSpec
from .wire import ApiError, envelope

if TYPE_CHECKING:
    from .server import Simulator


def quote(spec: ModelSpec, inputs: dict[str, Any]) -> float:
    """Dollars one task with these inputs costs; ApiError 400 when the inputs do not fit the model."""
    problems = spec.check(inputs)
    if problems:
        raise ApiError(400, "; ".join(problems))
    try:
        return spec.price(inputs.get("resolution", spec.default_resolution),
                          inputs.get("duration", spec.default_duration))
    except ModelTableError as exc:
        raise ApiError(400, str(exc)) from exc


class AccountHandlers:
    def __init__(self, sim: "Simulator"):
        self.sim = sim

    async def balance(self, request: web.Request) -> web.Response:
        return envelope(200, "success", {"balance": round(self.sim.balance, 2), "currency": "USD"})

    async def models(self, request: web.Request) -> web.Response:
        sim = self.sim
        catalog = []
        for spec in sim.config.models:
            if sim.admission.refuses(spec):
                continue
            catalog.append({
                "model_id": spec.id, "name": spec.id, "type": "image-to-video",
                "base_price": spec.price(spec.default_resolution, spec.default_duration),
                "description": spec.note,
            })
        return envelope(200, "success", catalog)

    async def price(self, request: web.Request) -> web.Response:
        body = await self.sim.json_body(request)
        model_id, inputs = body.get("model_id"), body.get("inputs", {})
        if not isinstance(model_id, str) or model_id not in self.sim.config.models:
            raise ApiError(400, f"model_id {model_id!r} is not a known model; see GET /api/v3/models")
        if not isinstance(inputs, dict):
            raise ApiError(400, "inputs must be a JSON object of the model's fields")
        price = quote(self.sim.config.models.get(model_id), inputs)
        return envelope(200, "success", {"model_id": model_id, "unit_price": price, "currency": "USD"})

    async def webhook_secret(self, request: web.Request) -> web.Response:
        key_id = request[self.sim.key_id_key]
        return envelope(200, "success", {"secret": self.sim.webhooks.secret(key_id)})
