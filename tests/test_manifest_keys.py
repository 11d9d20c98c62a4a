"""Job keys are what a state file remembers: the same manifest must give the same keys in
every release, or a resume would pay for finished videos again. The pinned values were
computed by the release before the manifest module was reshaped."""

import struct
from textwrap import dedent

from batchgen.images import clear_memory_cache
from batchgen.manifest import load_manifest


def bmp(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A 24-bit BMP built byte by byte, so its hash never depends on an encoder's version."""
    row = bytes(rgb[::-1]) * width
    row += b"\0" * (-len(row) % 4)
    pixels = row * height
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + pixels


# Both pinned manifests name Sora 2 Pro, the default model of the release that computed the keys.
MANIFEST = """
    defaults:
      model: openai/sora-2/image-to-video-pro
      duration: 8
      resolution: 720p
    vars:
      brand: Acme
    jobs:
      - image: shots/*.bmp
        prompt: "The {brand} {stem} turns slowly"
        duration: [4, 8]
        takes: 2
      - image: https://example.com/pics/red%20mug.jpg
        prompt: "A red mug, steam rising"
        id: mug
        model: bytedance/seedance-2.0/image-to-video
        aspect_ratio: "16:9"
        last_image: shots/b.bmp
        duration: 5
      - image: shots/a.bmp
        prompt: "  Slow zoom on the {stem}, {angle} view  "
        output: "clips/{stem}-{angle}"
        model: openai/sora-2/image-to-video
        duration: 12
        vars:
          angle: left
"""

PINNED = {
    "a-4s-720p-take1": "d7a56c0b56acf3412c7c",
    "a-4s-720p-take2": "671bb3c2fa464092b122",
    "a-8s-720p-take1": "f5021605caefb67d0af7",
    "a-8s-720p-take2": "4cb7ef122b222605729d",
    "b-4s-720p-take1": "e065774a72f47783c6ff",
    "b-4s-720p-take2": "d4f0b7d5faac22887711",
    "b-8s-720p-take1": "1684d9c9ba8ed008a4fc",
    "b-8s-720p-take2": "2f1893a15a47f466fbc8",
    "mug": "db0d326aa4dca5483882",
    "clips/a-left": "044650f168b944d86d29",
}


def test_the_keys_of_a_fixed_manifest_never_change(tmp_path):
    clear_memory_cache()
    (tmp_path / "shots").mkdir()
    (tmp_path / "shots" / "a.bmp").write_bytes(bmp(300, 260, (200, 80, 40)))
    (tmp_path / "shots" / "b.bmp").write_bytes(bmp(260, 300, (30, 90, 200)))
    path = tmp_path / "m.yaml"
    path.write_text(dedent(MANIFEST).lstrip("\n"), encoding="utf-8")
    jobs = load_manifest(path).jobs
    assert {job.id: job.key for job in jobs} == PINNED


CSV = ('image;prompt;duration;resolution;takes;colour;model\n'
       'shots/a.bmp;"The {colour} {stem}, slow turn";4|8;;2;red;openai/sora-2/image-to-video-pro\n'
       'https://example.com/x.png;Pan left;12;1080p;;blue;openai/sora-2/image-to-video-pro\n')

PINNED_CSV = {
    "a-4s-720p-take1": "a7a75bf8194fd4200d01",
    "a-4s-720p-take2": "6472fed14a66eae223fd",
    "a-8s-720p-take1": "5144596989d6f4d0b85b",
    "a-8s-720p-take2": "85a2428fc79f7faeb446",
    "x-12s-1080p": "9dbb6e4c11f2d0b806b1",
}


def test_the_keys_of_a_fixed_csv_manifest_never_change(tmp_path):
    clear_memory_cache()
    (tmp_path / "shots").mkdir()
    (tmp_path / "shots" / "a.bmp").write_bytes(bmp(300, 260, (200, 80, 40)))
    path = tmp_path / "m.csv"
    path.write_text(CSV, encoding="utf-8")
    assert {job.id: job.key for job in load_manifest(path).jobs} == PINNED_CSV
