"""Telling a lost submit's output apart by what it is: shape, then first frame against the source image."""

from __future__ import annotations

from pathlib import Path

from batchgen.jobs import JobSpec
from batchgen.matching import SAME_PICTURE, assign, clip_of, difference, first_frame, pairings, thumbnail
from batchgen.probe import probe_video
from batchgen.simulator.render import render_mp4
from conftest import image_bytes

MODEL = "bytedance/seedance-2.0/image-to-video"


def job(i: int, image: Path, duration: int = 4, resolution: str = "480p") -> JobSpec:
    return JobSpec(id=f"job{i}", model=MODEL, prompt=f"p{i}", image=image.name, image_path=str(image),
                   image_url=None, image_sha256=str(i), params={"duration": duration, "resolution": resolution},
                   take=1, output=f"job{i}.mp4")


def picture(tmp_path: Path, name: str, color, width=96, height=64) -> Path:
    path = tmp_path / f"{name}.png"
    path.write_bytes(image_bytes(width, height, "PNG", color))
    return path


def clip(tmp_path: Path, image: Path, width=854, height=480, duration=4, motion=0):
    path = tmp_path / f"{image.stem}-{width}x{height}-{duration}.mp4"
    path.write_bytes(render_mp4(image.read_bytes(), width, height, duration, motion, seed=1))
    return clip_of(path, probe_video(path))


def test_a_first_frame_is_near_its_source_image_and_far_from_another_colour(tmp_path):
    red, green = picture(tmp_path, "red", (200, 80, 40)), picture(tmp_path, "green", (40, 160, 90))
    rendered = clip(tmp_path, red)
    from PIL import Image
    with Image.open(red) as a, Image.open(green) as b:
        same = difference(rendered.first_frame, thumbnail(a, 854, 480))
        other = difference(rendered.first_frame, thumbnail(b, 854, 480))
    assert same <= SAME_PICTURE < other


def test_a_grayscale_hash_would_confuse_these_pictures_but_the_colour_thumbnail_does_not(tmp_path):
    """The test pictures' halves have nearly the same brightness: only colour tells them apart."""
    from PIL import Image
    red, green = picture(tmp_path, "red", (200, 80, 40)), picture(tmp_path, "green", (40, 160, 90))
    with Image.open(red) as a, Image.open(green) as b:
        gray = difference(thumbnail(a.convert("L"), 64, 48), thumbnail(b.convert("L"), 64, 48))
        colour = difference(thumbnail(a, 64, 48), thumbnail(b, 64, 48))
    assert gray < SAME_PICTURE < colour


def test_each_clip_pairs_with_its_own_job_by_picture_and_shape(tmp_path):
    images = [picture(tmp_path, f"i{n}", c) for n, c in enumerate([(200, 80, 40), (40, 160, 90), (90, 60, 200)])]
    jobs = [job(0, images[0]), job(1, images[1]), job(2, images[2], duration=5), job(3, images[2])]
    clips = {"a": clip(tmp_path, images[0]), "b": clip(tmp_path, images[1]),
             "c": clip(tmp_path, images[2], duration=5), "d": clip(tmp_path, images[2])}
    possible = pairings(clips, jobs, tolerance=0.6)
    assert possible == {"a": {jobs[0].key}, "b": {jobs[1].key}, "c": {jobs[2].key}, "d": {jobs[3].key}}
    assert assign(possible) == {"a": jobs[0].key, "b": jobs[1].key, "c": jobs[2].key, "d": jobs[3].key}


def test_a_clip_of_the_wrong_resolution_or_orientation_pairs_with_nobody(tmp_path):
    image = picture(tmp_path, "i", (200, 80, 40))
    tall = picture(tmp_path, "tall", (200, 80, 40), width=64, height=96)
    possible = pairings({"hd": clip(tmp_path, image, 1280, 720), "portrait": clip(tmp_path, image, 480, 854)},
                        [job(0, image), job(1, tall, resolution="720p")], tolerance=0.6)
    assert possible == {"hd": set(), "portrait": set()}


def test_assign_takes_only_pairings_unique_both_ways():
    # b may be j1 with a another batch's clip, and j2 may never have been created: nothing is certain.
    assert assign({"a": {"j1"}, "b": {"j1", "j2"}}) == {}
    assert assign({"a": {"j1"}, "b": {"j2", "j3"}}) == {"a": "j1"}
    assert assign({"a": {"j1", "j2"}, "b": {"j1", "j2"}}) == {}
    assert assign({"a": {"j1"}, "b": {"j1"}}) == {}
    assert assign({"a": set()}) == {}


def test_first_frame_reads_the_opening_picture(tmp_path):
    image = picture(tmp_path, "i", (200, 80, 40))
    rendered = clip(tmp_path, image)
    assert rendered.info.width == 854 and len(rendered.first_frame) == 8 * 8 * 3
    assert first_frame(tmp_path / "i-854x480-4.mp4").size == (854, 480)
