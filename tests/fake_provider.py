"""A complete provider in memory, to prove the seam: one module and one ``register`` line.

Tasks complete on their second read; the output is a real MP4 rendered from the uploaded picture
(batchgen.simulator.render), so the runner's verifier sees a true video of the ordered size.
"""

from __future__ import annotations

import asyncio
import io
import hashlib
import itertools
from pathlib import Path
from typing import Any, Mapping

from PIL import Image

from batchgen.models import ModelSpec, output_size
from batchgen.providers import register
from batchgen.providers.base import Download, Prediction, PredictionStatus, ProviderInfo, ProviderPolicy
from batchgen.simulator.render import render_mp4

POLICY = ProviderPolicy(name="fake", key_variable="FAKE_VIDEO_KEY", default_base_url="https://fake.invalid",
                        upload_lifetime=None, failed_tasks_billed=False)


class FakeProvider:
    policy = POLICY

    def __init__(self, api_key: str, base_url: str = POLICY.default_base_url, **options: Any):
        self.base_url, self.images, self.tasks, self.reads = base_url, {}, {}, {}
        self._ids = itertools.count(1)

    def build_body(self, spec: ModelSpec, image_url: str, prompt: str, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"image": image_url, "prompt": prompt, "duration": int(params.get("duration", spec.default_duration)),
                "resolution": params.get("resolution", spec.default_resolution)}

    async def upload(self, data: bytes, filename: str, content_type: str) -> str:
        url = f"{self.base_url}/images/{hashlib.sha256(data).hexdigest()}"
        self.images[url] = data
        return url

    async def submit(self, model: str, body: dict[str, Any], webhook: str | None = None) -> Prediction:
        pid = f"fake-{next(self._ids)}"
        self.tasks[pid], self.reads[pid] = (model, dict(body)), 0
        return Prediction(id=pid, model=model, status=PredictionStatus.CREATED)

    async def result(self, prediction_id: str) -> Prediction:
        self.reads[prediction_id] += 1
        done = self.reads[prediction_id] >= 2
        return Prediction(id=prediction_id, model=self.tasks[prediction_id][0],
                          status=PredictionStatus.COMPLETED if done else PredictionStatus.PROCESSING,
                          outputs=(f"{self.base_url}/videos/{prediction_id}.mp4",) if done else ())

    async def list_recent(self, limit: int = 1000) -> None:
        return None

    async def list_predictions(self, *, model: str, created_after: float, created_before: float) -> None:
        return None

    async def download(self, url: str, dest: Path, *, max_bytes: int) -> Download:
        body = self.tasks[url.rsplit("/", 1)[1].removesuffix(".mp4")][1]
        image = self.images[body["image"]]
        with Image.open(io.BytesIO(image)) as picture:
            width, height = output_size(body["resolution"], picture.size)
        video = await asyncio.to_thread(render_mp4, image, width, height, body["duration"], 0, 1)
        dest.write_bytes(video)
        return Download(bytes=len(video), sha256=hashlib.sha256(video).hexdigest(), content_type="video/mp4")

    async def close(self) -> None:
        pass


INFO = ProviderInfo(policy=POLICY, factory=FakeProvider)
register(INFO)
