"""Raw-HTTP helpers for the simulator tests: they must see exactly what the wire carries."""

from __future__ import annotations

import asyncio
import base64
import time

import aiohttp

from batchgen.models import SEEDANCE
from conftest import AUTH, image_bytes, run

PNG = image_bytes()
DATA_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()
SEEDANCE_BODY = {"image": DATA_URI, "prompt": "slow turn", "duration": 4, "resolution": "480p"}


class Api:
    """A thin raw-HTTP client: the tests must see exactly what the wire carries."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, headers=AUTH):
        self.session, self.base, self.headers = session, base_url, headers

    async def post(self, path: str, json=None, headers=None):
        async with self.session.post(self.base + path, json=json, headers=headers or self.headers) as resp:
            return resp.status, await resp.json(), resp.headers

    async def get(self, path: str, headers=None):
        async with self.session.get(self.base + path, headers=headers or self.headers) as resp:
            return resp.status, await resp.json(), resp.headers

    async def submit(self, model=SEEDANCE, body=None, headers=None):
        return await self.post(f"/api/v3/{model}", SEEDANCE_BODY if body is None else body, headers)

    async def accepted(self, model=SEEDANCE, body=None) -> dict:
        status, payload, _ = await self.submit(model, body)
        assert status == 200, payload
        return payload["data"]

    async def wait(self, prediction_id: str, timeout: float = 20.0) -> tuple[dict, list[str]]:
        """Poll until terminal; returns the final data and every status seen."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, payload, _ = await self.get(f"/api/v3/predictions/{prediction_id}/result")
            assert status == 200, payload
            seen.append(payload["data"]["status"])
            if seen[-1] in ("completed", "failed"):
                return payload["data"], seen
            await asyncio.sleep(0.01)
        raise AssertionError(f"prediction {prediction_id} still {seen[-1:]} after {timeout} s")


def with_api(base_url: str, body, headers=AUTH):
    async def main():
        async with aiohttp.ClientSession() as session:
            return await body(Api(session, base_url, headers), session)
    return run(main())


async def advance_clock(api: Api, seconds: float) -> None:
    status, _, _ = await api.post("/_sim/clock", {"advance": seconds})
    assert status == 200

