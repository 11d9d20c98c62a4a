"""What a source image really is: its bytes hash, type and size.

The type is sniffed from the bytes with Pillow, never from the extension, because the API
rejects a text file named ``.jpg`` only after the batch has started paying. Results are
cached by (realpath, size, mtime_ns): in-process, so a 10,000-row manifest over 50 files
hashes each file once, and optionally in a JSON file (``ImageCache``) so the next run does
not hash them again at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

#: The upload limit from WaveSpeed's "Media Upload API" docs.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
#: Pillow format names of the types the upload API accepts.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
#: Below this many pixels on a side the video models upscale a blur (the floor named in issue 14).
MIN_IMAGE_SIDE = 256
#: UNCONFIRMED: WaveSpeed's docs give no pixel limit for source images; 4096 is a guess at
#: what the models accept unscaled. Override it here when the provider documents one.
MAX_IMAGE_SIDE = 4096
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ImageInfo:
    sha256: str
    size_bytes: int
    format: str
    width: int
    height: int


_memory: dict[tuple[str, int, int], ImageInfo | str] = {}


def clear_memory_cache() -> None:
    """Forget every in-process result (benchmarks use this to measure a cold start)."""
    _memory.clear()


class ImageCache:
    """A JSON file mapping realpath -> {size, mtime_ns, sha256, format, width, height}.

    An entry is used only while the file's size and mtime_ns still match. A missing or
    corrupt cache file is treated as empty: the cache is an accelerator, never a source
    of truth.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._entries: dict[str, dict] = {}
        self._dirty = False
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                self._entries = {k: v for k, v in data.items() if isinstance(v, dict)}
        except (OSError, ValueError):
            pass

    def get(self, realpath: str, size: int, mtime_ns: int) -> ImageInfo | None:
        entry = self._entries.get(realpath)
        if not entry or entry.get("size") != size or entry.get("mtime_ns") != mtime_ns:
            return None
        try:
            return ImageInfo(entry["sha256"], size, entry["format"], int(entry["width"]), int(entry["height"]))
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, realpath: str, mtime_ns: int, info: ImageInfo) -> None:
        entry = asdict(info)
        entry["size"] = entry.pop("size_bytes")
        entry["mtime_ns"] = mtime_ns
        if self._entries.get(realpath) != entry:
            self._entries[realpath] = entry
            self._dirty = True

    def save(self) -> None:
        """Write the cache atomically if anything changed."""
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self._entries, fh, separators=(",", ":"))
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._dirty = False


def size_warning(info: ImageInfo, shown: str) -> str | None:
    """A warning for an image too small or too large on a side, or None when it fits."""
    small, large = min(info.width, info.height), max(info.width, info.height)
    if small < MIN_IMAGE_SIDE:
        return (f"image {shown} is {info.width}x{info.height} px, under {MIN_IMAGE_SIDE} px on a side; "
                "the video will be a blurred upscale, so use a larger source")
    if large > MAX_IMAGE_SIDE:
        return (f"image {shown} is {info.width}x{info.height} px, over {MAX_IMAGE_SIDE} px on a side "
                "(a limit batchgen assumes; the provider may refuse or downscale it); scale it down")
    return None


def image_info(path: str | os.PathLike, cache: ImageCache | None = None) -> ImageInfo:
    """Hash and sniff one image; ValueError with a message a user can act on if unusable."""
    shown = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise ValueError(f"image {shown} does not exist; check the path (relative paths start at the manifest's folder)") from exc
    except OSError as exc:
        raise ValueError(f"image {shown} cannot be read ({exc.strerror}); check its permissions") from exc
    if not os.path.isfile(path):
        raise ValueError(f"image {shown} is not a file; give the path of an image file")
    realpath = os.path.realpath(path)
    key = (realpath, st.st_size, st.st_mtime_ns)
    known = _memory.get(key)
    if isinstance(known, ImageInfo):
        return known
    if isinstance(known, str):
        raise ValueError(known)
    if cache is not None:
        cached = cache.get(realpath, st.st_size, st.st_mtime_ns)
        if cached is not None:
            _memory[key] = cached
            return cached
    try:
        info = _inspect(shown, st.st_size)
    except ValueError as exc:
        _memory[key] = str(exc)
        raise
    _memory[key] = info
    if cache is not None:
        cache.put(realpath, st.st_mtime_ns, info)
    return info


def _inspect(shown: str, size: int) -> ImageInfo:
    if size == 0:
        raise ValueError(f"image {shown} is empty (0 bytes); re-export or re-download it")
    if size > MAX_IMAGE_BYTES:
        raise ValueError(
            f"image {shown} is {size / 1e6:.1f} MB, over the API's 20 MB limit; "
            "shrink or re-compress it (e.g. save as JPEG at quality 90)"
        )
    try:
        with open(shown, "rb") as fh:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    with Image.open(fh) as im:
                        fmt, (width, height) = im.format, im.size
            except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
                raise ValueError(
                    f"image {shown} has too many pixels for a source image; scale it down (e.g. to 4096 px wide)"
                ) from exc
            except UnidentifiedImageError as exc:
                raise ValueError(
                    f"image {shown} is not an image Pillow can read (whatever its extension says); "
                    f"use a {', '.join(ALLOWED_FORMATS)} file"
                ) from exc
            except (OSError, SyntaxError) as exc:
                raise ValueError(f"image {shown} is damaged ({exc}); re-export it") from exc
            if fmt not in ALLOWED_FORMATS:
                raise ValueError(
                    f"image {shown} is a {fmt} file, which the API does not accept; "
                    f"convert it to one of {', '.join(ALLOWED_FORMATS)}"
                )
            fh.seek(0)
            digest = hashlib.sha256()
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(chunk)
    except PermissionError as exc:
        raise ValueError(f"image {shown} cannot be read ({exc.strerror}); check its permissions") from exc
    return ImageInfo(digest.hexdigest(), size, fmt, width, height)
