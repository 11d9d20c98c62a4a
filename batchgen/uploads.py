"""The image upload cache: each local picture is uploaded once per content hash and provider, and its
URL reused while that provider keeps it (``ProviderPolicy.upload_lifetime``). A URL one provider
gave is not handed to another (Replicate's file URLs need its token), so the cache key carries the
provider's prefix (routing.tag: none for WaveSpeed, as in every older state)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any, Callable

from .crashtest import kill_point
from .errors import InputChangedError
from .images import ImageInfo, image_info
from .jobs import JobSpec
from .providers.base import Provider
from .providers.multi import Member, member
from .routing import tag
from .retry import RetryPolicy, retrying
from .state import StateLog
from .state_events import Upload

_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif",
         "BMP": "image/bmp", "TIFF": "image/tiff"}


class Uploads:
    def __init__(self, provider: Provider, state_log: StateLog, retry: RetryPolicy, *, clock: Callable[[], float],
                 sleep, rng, on_upload: Callable[[JobSpec, str], None]):
        self.provider = provider
        self.state_log = state_log
        self.retry = retry
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.on_upload = on_upload
        self._images: dict[str, ImageInfo] = {}
        self._tasks: dict[str, asyncio.Task] = {}

    async def image_url(self, job: JobSpec, model: str | None = None) -> str:
        if job.image_url:
            return job.image_url
        return await self.uploaded(job.image_path, job, model or job.model)

    async def params(self, job: JobSpec, model: str | None = None) -> dict[str, Any]:
        """The job's body parameters, with a local ``last_image`` (Seedance) uploaded like the image."""
        params = dict(job.params)
        last = params.get("last_image")
        if isinstance(last, str) and last and not last.startswith(("http://", "https://")):
            params["last_image"] = await self.uploaded(last, job, model or job.model)
        return params

    def _fresh(self, key: str, lifetime: float | None) -> str | None:
        url = self.state_log.state.uploads.get(key)
        if url is None or lifetime is None:
            return url
        age = self.clock() - self.state_log.state.uploaded_at.get(key, 0.0)
        return url if age < lifetime else None

    async def uploaded(self, path: str, job: JobSpec, model: str) -> str:
        """Upload a local image once per content hash, ever (the URL is kept in the state)."""
        # The manifest read every image before the run; per submit only the hash is needed, and
        # a stat, isfile and realpath per job added up at 10,000 jobs.
        info = self._images.get(path)
        if info is None:
            info = self._images[path] = image_info(path)
        keyed = job.image_sha256 if path == job.image_path else (
            job.paid_params.get("last_image") if path == job.params.get("last_image") else None)
        if keyed and info.sha256 != keyed:
            # The job's key (what is paid for) names the picture as it was read; never send another.
            raise InputChangedError(f"{path} changed after the manifest was read; run again to submit the picture "
                                    "it holds now", job=job.id)
        client = member(self.provider, model)
        key = tag(client.policy.name, info.sha256)
        url = self._fresh(key, client.policy.upload_lifetime)
        if url:
            return url
        task = self._tasks.get(key)
        if task is None or (task.done() and task.exception() is not None):
            task = self._tasks[key] = asyncio.ensure_future(self._upload(path, info, job, client, key))
        return await asyncio.shield(task)

    async def _upload(self, path: str, info: ImageInfo, job: JobSpec, client: Member, key: str) -> str:
        data = await asyncio.get_running_loop().run_in_executor(None, Path(path).read_bytes)
        if len(data) != info.size_bytes or hashlib.sha256(data).hexdigest() != info.sha256:
            raise InputChangedError(f"{path} changed while the run was reading it; run again", job=job.id)
        name = Path(path).name
        mime = _MIME.get(info.format, "application/octet-stream")
        url = await retrying(lambda: client.upload(data, name, mime), self.retry, sleep=self.sleep,
                             rng=self.rng, what=f"upload {name}")
        kill_point("uploaded")
        self.state_log.append(Upload(key, url))
        self.on_upload(job, url)
        return url
