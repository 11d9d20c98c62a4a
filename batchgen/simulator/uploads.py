"""Both upload flows of shared/API.md and the store that serves uploaded images back.

Flow 1 (docs): POST /api/v3/media/upload/binary (alias POST /api/v3/upload), multipart field ``file``.
Flow 2 (SDK 2.x): POST /api/v3/media/uploads for a ticket, then PUT the bytes to its pre-signed URL.
Flow 1 URLs are named after the content's sha256, so the same bytes always get the same URL.
"""

from __future__ import annotations

import hashlib
import io
import mimetypes
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web
from PIL import Image

from .wire import ApiError, envelope, signed_url_error

if TYPE_CHECKING:
    from .server import Simulator

UPLOAD_PREFIX = "/_sim/uploads/"
PUT_PREFIX = "/_sim/put/"

_MIME_BY_FORMAT = {
    "JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
    "GIF": "image/gif", "BMP": "image/bmp", "TIFF": "image/tiff",
}
_EXT_BY_FORMAT = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff"}
ALLOWED_TYPES = "JPG/JPEG, PNG, WebP, GIF, BMP, TIFF"


@dataclass
class StoredFile:
    data: bytes
    content_type: str


@dataclass
class Ticket:
    filename: str
    size: int
    content_type: str | None
    file_id: str | None = None


def sniff_image(data: bytes) -> str:
    """Pillow's format name for ``data``; ApiError 400 for anything that is not an allowed image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = image.format or ""
    except Exception:  # noqa: BLE001 - Pillow raises many types for non-images
        fmt = ""
    if fmt not in _MIME_BY_FORMAT:
        raise ApiError(400, f"the uploaded file ({len(data)} bytes) is not a supported image; "
                            f"upload one of {ALLOWED_TYPES}")
    return fmt


class UploadStore:
    """Uploaded images by id, and open flow-2 tickets (whose id doubles as the file's URL id)."""

    def __init__(self) -> None:
        self.files: dict[str, StoredFile] = {}
        self.tickets: dict[str, Ticket] = {}

    def add(self, data: bytes, fmt: str) -> str:
        file_id = hashlib.sha256(data).hexdigest()[:32]
        self.files[file_id] = StoredFile(data, _MIME_BY_FORMAT[fmt])
        return file_id

    def get(self, file_id: str) -> StoredFile | None:
        ticket = self.tickets.get(file_id)
        if ticket is not None:
            file_id = ticket.file_id or ""
        return self.files.get(file_id)

    def lookup_path(self, path: str) -> bytes | None:
        """Bytes behind one of our download URLs' paths, or None if it is not one."""
        if not path.startswith(UPLOAD_PREFIX):
            return None
        stored = self.get(path[len(UPLOAD_PREFIX):].split("/", 1)[0])
        return stored.data if stored else None


class UploadHandlers:
    def __init__(self, sim: "Simulator"):
        self.sim = sim
        self.store = UploadStore()

    @property
    def limit(self) -> int:
        return int(self.sim.config.max_upload_mb * 1024 * 1024)

    def _too_big(self, size: int) -> ApiError:
        return ApiError(400, f"the file is {size / 1048576:.1f} MB; images may be at most "
                             f"{self.sim.config.max_upload_mb:g} MB, so shrink or recompress it")

    async def _read_multipart_file(self, request: web.Request) -> tuple[bytes, str]:
        try:
            reader = await request.multipart()
        except (AssertionError, ValueError, KeyError):
            reader = None
        while reader is not None:
            part = await reader.next()
            if part is None:
                break
            if getattr(part, "name", None) != "file":
                continue
            data = bytearray()
            while chunk := await part.read_chunk(1 << 16):
                data += chunk
                if len(data) > self.limit:
                    raise self._too_big(len(data))
            return bytes(data), part.filename or "upload"
        raise ApiError(400, "send the image as multipart/form-data with a field named 'file'")

    def _accept(self, data: bytes, filename: str, origin: str) -> dict[str, Any]:
        fmt = sniff_image(data)
        file_id = self.store.add(data, fmt)
        self.sim.ledger.uploads += 1
        self.sim.ledger.upload_bytes += len(data)
        url = f"{origin}{UPLOAD_PREFIX}{file_id}/image.{_EXT_BY_FORMAT[fmt]}"
        return {"type": "image", "download_url": url, "filename": filename, "size": len(data)}

    async def binary(self, request: web.Request) -> web.Response:
        data, filename = await self._read_multipart_file(request)
        return envelope(200, "success", self._accept(data, filename, self.sim.origin(request)))

    async def alias(self, request: web.Request) -> web.Response:
        data, filename = await self._read_multipart_file(request)
        info = self._accept(data, filename, self.sim.origin(request))
        return envelope(200, "success", {"url": info["download_url"], **info})

    async def ticket(self, request: web.Request) -> web.Response:
        body = await self.sim.json_body(request)
        filename, size, content_type = body.get("filename"), body.get("size"), body.get("content_type")
        if not isinstance(filename, str) or not filename:
            raise ApiError(400, "filename is required (a string such as 'product.png')")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ApiError(400, f"size must be the file's byte count as a positive integer, got {size!r}")
        if size > self.limit:
            raise self._too_big(size)
        content_type = content_type or mimetypes.guess_type(filename)[0]
        if content_type is not None and content_type not in _MIME_BY_FORMAT.values():
            raise ApiError(400, f"content type {content_type!r} cannot be uploaded; upload one of {ALLOWED_TYPES}")
        ticket_id = self.sim.new_hex(32)
        self.store.tickets[ticket_id] = Ticket(filename, size, content_type)
        origin = self.sim.origin(request)
        headers = {"Content-Type": content_type} if content_type else {}
        return envelope(200, "success", {
            "upload": {"method": "PUT", "url": f"{origin}{PUT_PREFIX}{ticket_id}", "headers": headers},
            "download_url": f"{origin}{UPLOAD_PREFIX}{ticket_id}/{quote(filename)}",
            "filename": filename,
            "size": size,
        })

    async def put(self, request: web.Request) -> web.Response:
        ticket = self.store.tickets.get(request.match_info["ticket"])
        if ticket is None:
            return signed_url_error(404, "NoSuchUpload", "This upload URL is unknown; ask for a new upload ticket.")
        data = bytearray()
        while chunk := await request.content.read(1 << 16):
            data += chunk
            if len(data) > ticket.size:
                break
        if len(data) != ticket.size:
            return signed_url_error(400, "IncompleteBody",
                                    f"The body is {len(data)} bytes but the ticket declared {ticket.size}.")
        try:
            fmt = sniff_image(bytes(data))
        except ApiError as exc:
            return signed_url_error(400, "InvalidContent", exc.message)
        ticket.file_id = self.store.add(bytes(data), fmt)
        self.sim.ledger.uploads += 1
        self.sim.ledger.upload_bytes += len(data)
        return web.Response(status=200, headers={"ETag": f'"{ticket.file_id}"'})

    async def download(self, request: web.Request) -> web.Response:
        stored = self.store.get(request.match_info["file_id"])
        if stored is None:
            return signed_url_error(404, "NoSuchKey", "The specified key does not exist.")
        return web.Response(body=stored.data, content_type=stored.content_type)
