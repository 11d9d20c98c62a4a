"""What the simulator serves besides the API: output files and the /_sim/ test hooks."""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING

from aiohttp import web

from .config import apply_changes
from .wire import ApiError, signed_url_error

if TYPE_CHECKING:
    from .server import Simulator

_CHUNK = 1 << 16


class Hooks:
    def __init__(self, sim: "Simulator"):
        self.sim = sim

    async def output(self, request: web.Request) -> web.StreamResponse:
        sim = self.sim
        task_id = request.match_info["id"]
        expires, _, signature = request.match_info["token"].partition("-")
        if not expires.isdigit() or not hmac.compare_digest(signature, sim.sign(task_id, int(expires))):
            return signed_url_error(403, "SignatureDoesNotMatch", "The request signature is not valid.")
        if expires != "0" and time.time() * 1000 > int(expires):
            return signed_url_error(403, "AccessDenied", "Request has expired; read the result again for a new URL.")
        task = sim.live_task(task_id)
        if task is None or task.video is None:
            return signed_url_error(404, "NoSuchKey", "The specified key does not exist.")
        hostile = await sim.hostile.output_answer(request)
        if hostile is not None:
            return hostile
        return await self._stream(request, task)

    async def _stream(self, request: web.Request, task) -> web.StreamResponse:
        sim, video = self.sim, task.video
        sim.ledger.downloads_started += 1
        truncate = sim.roll("truncate", sim.config.faults.rate_truncate)
        end = sim.rng.randint(1, len(video) - 1) if truncate else len(video)
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.content_length = len(video)
        try:
            await response.prepare(request)
            for offset in range(0, end, _CHUNK):
                await response.write(video[offset:min(offset + _CHUNK, end)])
            if truncate:
                request.transport.close()
                return response
            await response.write_eof()
        except ConnectionResetError:
            return response
        sim.ledger.downloads += 1
        sim.ledger.outputs[task.id] = task.video_sha256
        return response

    async def ledger_view(self, request: web.Request) -> web.Response:
        return web.json_response(self.sim.ledger_snapshot())

    async def reset_view(self, request: web.Request) -> web.Response:
        await self.sim.reset()
        return web.json_response({"reset": True})

    async def config_view(self, request: web.Request) -> web.Response:
        changes = await self.sim.json_body(request)
        try:
            apply_changes(self.sim.config, changes)
        except (ValueError, TypeError) as exc:
            raise ApiError(400, f"cannot change the simulator config: {exc}") from exc
        return web.json_response(self.sim.config_snapshot())

    async def hostile_view(self, request: web.Request) -> web.Response:
        hostile = self.sim.hostile
        try:
            hostile.set(await self.sim.json_body(request))
        except ValueError as exc:
            raise ApiError(400, f"cannot set a hostile mode: {exc}") from exc
        return web.json_response({"mode": hostile.mode, "left": hostile.left,
                                  "output_base_url": hostile.output_base_url})

    async def clock_view(self, request: web.Request) -> web.Response:
        """``{"advance": seconds}`` moves the simulated wall clock forward (prediction ages, timestamps)."""
        body = await self.sim.json_body(request)
        advance = body.get("advance", 0)
        if not isinstance(advance, (int, float)) or isinstance(advance, bool) or advance < 0:
            raise ApiError(400, f"advance must be a number of seconds >= 0, got {advance!r}")
        self.sim.clock.advance(float(advance))
        return web.json_response({"time": self.sim.clock.time()})
