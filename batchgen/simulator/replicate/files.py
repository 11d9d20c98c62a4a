"""Replicate's Files API in the simulator: ``POST /v1/files`` (multipart ``content``, optional ``metadata``)
and the signed download URL its ``urls.get`` names, which a prediction's input may then carry.

The official client uploads a file handle given as input this way (replicate/helpers.py encode_json).
How long Replicate keeps a file is **unconfirmed** (the file object has ``expires_at``); the simulator
keeps them for ``LIFETIME`` seconds and serves nothing after that.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any, Callable

from aiohttp import web

from ..wire import ApiError
from .wire import iso

#: Seconds an uploaded file stays downloadable in the simulator (Replicate's figure is unconfirmed).
LIFETIME = 24 * 3600.0
DOWNLOAD_PREFIX = "/v1/files/"


@dataclass
class StoredFile:
    id: str
    name: str
    content_type: str
    data: bytes
    metadata: dict[str, Any]
    created: float

    def record(self, origin: str, signature: str) -> dict[str, Any]:
        expiry = int(self.created + LIFETIME)
        return {
            "id": self.id, "name": self.name, "content_type": self.content_type, "size": len(self.data),
            "etag": hashlib.md5(self.data).hexdigest(), "metadata": self.metadata,
            "checksums": {"sha256": hashlib.sha256(self.data).hexdigest(), "md5": hashlib.md5(self.data).hexdigest()},
            "created_at": iso(self.created), "expires_at": iso(self.created + LIFETIME),
            "urls": {"get": f"{origin}{DOWNLOAD_PREFIX}{self.id}/download?expiry={expiry}&signature={signature}"},
        }


class FileStore:
    """Uploaded files by id, served back only through their signed URL and only until they expire."""

    def __init__(self, key: bytes, new_id: Callable[[], str], clock: Callable[[], float] = time.time):
        self._key, self._new_id, self._clock = key, new_id, clock
        self.files: dict[str, StoredFile] = {}

    def _sign(self, file_id: str, expiry: int) -> str:
        return hmac.new(self._key, f"file:{file_id}:{expiry}".encode(), "sha256").hexdigest()[:32]

    async def create(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            raise ApiError(400, "send the file as multipart/form-data with a 'content' part")
        data, name, ctype, metadata = b"", "", "application/octet-stream", {}
        async for part in await request.multipart():
            if part.name == "content":
                data, name = await part.read(), part.filename or "file"
                ctype = part.headers.get("Content-Type", ctype)
            elif part.name == "metadata":
                try:
                    metadata = json.loads(await part.text())
                except json.JSONDecodeError as exc:
                    raise ApiError(400, "metadata must be valid JSON") from exc
        if not data:
            raise ApiError(400, "the 'content' part is missing or empty")
        stored = StoredFile(self._new_id(), name, ctype, data, metadata, self._clock())
        self.files[stored.id] = stored
        origin = f"{request.scheme}://{request.host}"
        return web.json_response(stored.record(origin, self._sign(stored.id, int(stored.created + LIFETIME))),
                                 status=201)

    async def download(self, request: web.Request) -> web.Response:
        stored, expiry = self.files.get(request.match_info["id"]), request.query.get("expiry", "")
        signature = request.query.get("signature", "")
        if stored is None or not expiry.isdigit() or not hmac.compare_digest(signature, self._sign(stored.id, int(expiry))):
            return web.Response(status=404, text="Not found\n")
        if self._clock() > int(expiry):
            return web.Response(status=404, text="Not found: the file expired\n")
        return web.Response(body=stored.data, content_type=stored.content_type)

    def lookup(self, url_path: str) -> bytes | None:
        """The bytes behind one of this store's download paths, so tasks read uploads without HTTP."""
        if not (url_path.startswith(DOWNLOAD_PREFIX) and url_path.endswith("/download")):
            return None
        stored = self.files.get(url_path[len(DOWNLOAD_PREFIX):-len("/download")])
        if stored is None or self._clock() > stored.created + LIFETIME:
            return None
        return stored.data


def file_id(raw: bytes) -> str:
    """Replicate-style lowercase base32 ids."""
    return base64.b32encode(raw).decode().rstrip("=").lower()
