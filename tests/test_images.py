import hashlib
import json
import os

import pytest
from PIL import Image

from batchgen.images import MAX_IMAGE_BYTES, ImageCache, ImageInfo, clear_memory_cache, image_info


@pytest.fixture(autouse=True)
def _fresh_memory():
    clear_memory_cache()
    yield
    clear_memory_cache()


def save(path, fmt="JPEG", size=(64, 48), colour="red"):
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_allowed_formats(tmp_path, fmt):
    path = save(tmp_path / f"x.{fmt.lower()}", fmt, (40, 30))
    info = image_info(path)
    assert info == ImageInfo(hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size, fmt, 40, 30)


def test_type_comes_from_bytes_not_extension(tmp_path):
    path = save(tmp_path / "really-a-png.jpg", "PNG")
    assert image_info(path).format == "PNG"


def test_large_file_hashed_in_chunks_matches_hashlib(tmp_path):
    path = save(tmp_path / "big.png", "PNG")
    with open(path, "ab") as fh:  # bytes after IEND: still a valid PNG, now ~3 MiB
        fh.write(os.urandom(3 * 1024 * 1024 + 17))
    assert image_info(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p, "does not exist"),
        (lambda p: (p.mkdir(), p)[1], "is not a file"),
        (lambda p: (p.write_bytes(b""), p)[1], "is empty (0 bytes)"),
        (lambda p: (p.write_text("hello, I am a text file\n"), p)[1], "is not an image"),
        (lambda p: (Image.new("RGB", (16, 16)).save(p, format="ICO"), p)[1], "is a ICO file"),
        (lambda p: (Image.new("RGB", (16, 16)).save(p, format="PPM"), p)[1], "is a PPM file"),
        (lambda p: (p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40), p)[1], "is not an image"),
    ],
    ids=["missing", "directory", "zero-bytes", "text-named-jpg", "ico", "ppm", "png-signature-then-garbage"],
)
def test_unusable_images(tmp_path, make, expected):
    path = make(tmp_path / "photo.jpg")
    with pytest.raises(ValueError) as err:
        image_info(path)
    assert expected in str(err.value)
    assert "photo.jpg" in str(err.value)


def test_over_20_mb_is_rejected_without_reading_it(tmp_path):
    path = save(tmp_path / "huge.png", "PNG")
    with open(path, "r+b") as fh:
        fh.truncate(21_000_000)  # sparse: cheap on disk, but 21 MB by size
    assert path.stat().st_size > MAX_IMAGE_BYTES
    with pytest.raises(ValueError, match=r"21\.0 MB, over the API's 20 MB limit"):
        image_info(path)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read any file")
def test_unreadable(tmp_path):
    path = save(tmp_path / "locked.jpg")
    path.chmod(0)
    try:
        with pytest.raises(ValueError, match="cannot be read .*permissions"):
            image_info(path)
    finally:
        path.chmod(0o644)


def _rewrite_keeping_stat(path, data):
    """Change the bytes but restore size and mtime: only a cache would still see the old hash."""
    st = path.stat()
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_memory_cache_keys_on_size_and_mtime(tmp_path):
    path = save(tmp_path / "a.png", "PNG")
    first = image_info(path)
    original = path.read_bytes()
    _rewrite_keeping_stat(path, original[:-1] + b"X")
    assert image_info(path) == first  # same (realpath, size, mtime_ns): not re-hashed
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert image_info(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest() != first.sha256


def test_memory_cache_remembers_failures_per_stat(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not an image")
    with pytest.raises(ValueError, match="not an image"):
        image_info(path)
    save(path, "JPEG")  # replaced: new size and mtime
    assert image_info(path).format == "JPEG"


def test_persistent_cache_round_trip(tmp_path):
    path = save(tmp_path / "a.png", "PNG")
    cache_file = tmp_path / "cache" / "images.json"
    cache = ImageCache(cache_file)
    info = image_info(path, cache)
    cache.save()
    stored = json.loads(cache_file.read_text())
    entry = stored[os.path.realpath(path)]
    assert entry == {"sha256": info.sha256, "size": info.size_bytes, "format": "PNG", "width": 64, "height": 48,
                     "mtime_ns": path.stat().st_mtime_ns}

    clear_memory_cache()
    _rewrite_keeping_stat(path, path.read_bytes()[:-1] + b"X")
    assert image_info(path, ImageCache(cache_file)) == info  # answered from the file, not by hashing

    clear_memory_cache()
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert image_info(path, ImageCache(cache_file)).sha256 != info.sha256  # stale entry ignored


def test_persistent_cache_tolerates_corrupt_file_and_skips_needless_writes(tmp_path):
    cache_file = tmp_path / "images.json"
    cache_file.write_text("{not json")
    cache = ImageCache(cache_file)
    cache.save()
    assert cache_file.read_text() == "{not json"  # nothing changed, nothing written
    path = save(tmp_path / "a.jpg")
    image_info(path, cache)
    cache.save()
    assert os.path.realpath(path) in json.loads(cache_file.read_text())
