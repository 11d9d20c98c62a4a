"""The simulator's clips are real, playable, moving H.264/AAC MP4 files, rendered once per input."""

from __future__ import annotations

import array
import io
import threading

import av
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageOps, ImageStat

from batchgen.simulator.render import FPS, RenderCache, render_mp4


def make_png(width: int = 800, height: int = 600, colour: tuple[int, int, int] = (20, 90, 200)) -> bytes:
    """A product shot stand-in with stripes and a disc, so any pan or zoom changes the pixels."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for x in range(0, width, 40):
        draw.line([(x, 0), (x, height)], fill=(200, 30, 30), width=4)
    draw.ellipse([width // 4, height // 4, width * 3 // 4, height * 3 // 4], fill=colour)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def decode(data: bytes) -> dict:
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        info = {
            "duration": container.duration / av.time_base,
            "video_codec": video.codec_context.name,
            "pix_fmt": video.codec_context.pix_fmt,
            "audio_codec": audio.codec_context.name,
            "audio_duration": float(audio.duration * audio.time_base),
            "size": (video.codec_context.width, video.codec_context.height),
        }
        info["frames"] = [frame.to_image() for frame in container.decode(video=0)]
    with av.open(io.BytesIO(data)) as container:
        samples = array.array("f")
        for frame in container.decode(audio=0):
            samples.frombytes(bytes(frame.planes[0])[: frame.samples * 4])
        info["samples"] = samples
    return info


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute per-pixel difference, 0..255."""
    return sum(ImageStat.Stat(ImageChops.difference(a, b).convert("L")).mean)


@pytest.fixture(scope="module")
def clip_720p() -> bytes:
    return render_mp4(make_png(), 1280, 720, 4, 0, 7)


def test_clip_has_h264_video_and_aac_audio_of_the_requested_size_and_length(clip_720p):
    info = decode(clip_720p)
    assert info["video_codec"] == "h264"
    assert info["pix_fmt"] == "yuv420p"
    assert info["audio_codec"] == "aac"
    assert info["size"] == (1280, 720)
    assert all(frame.size == (1280, 720) for frame in info["frames"])
    assert abs(info["duration"] - 4) <= 0.15
    assert abs(info["audio_duration"] - 4) <= 0.15
    assert len(info["frames"]) == 4 * FPS


def test_picture_moves_between_first_and_last_frame(clip_720p):
    frames = decode(clip_720p)["frames"]
    assert difference(frames[0], frames[-1]) > 5
    # Slow and steady: neighbouring frames differ far less than the ends do.
    assert difference(frames[0], frames[1]) < difference(frames[0], frames[-1]) / 3


@pytest.mark.parametrize("motion", [0, 1, 2, 3])
def test_every_motion_moves_and_each_differs_from_the_others(motion):
    image = make_png()
    frames = decode(render_mp4(image, 320, 180, 1, motion, 1))["frames"]
    assert difference(frames[0], frames[-1]) > 5
    other = decode(render_mp4(image, 320, 180, 1, (motion + 1) % 4, 1))["frames"]
    assert difference(frames[-1], other[-1]) > 2 or difference(frames[0], other[0]) > 2


def fitted(image_bytes: bytes, width: int, height: int) -> Image.Image:
    """The source cover-fitted to the output size and centred: what frame 0 must show."""
    with Image.open(io.BytesIO(image_bytes)) as image:
        return ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.LANCZOS)


@pytest.mark.parametrize("motion", [0, 1, 2, 3])
@pytest.mark.parametrize("source, size", [((800, 600), (320, 180)), ((600, 800), (180, 320))])
def test_every_clip_opens_on_its_source_image_fitted_to_the_output(motion, source, size):
    image = make_png(*source)
    frames = decode(render_mp4(image, *size, 1, motion, 1))["frames"]
    expected = fitted(image, *size)
    # H.264 at this size blurs the stripes (about 7-9); a clip opening zoomed or panned differs by 40 or more.
    assert difference(frames[0], expected) < 15, "frame 0 is the plain fitted source image"
    assert difference(frames[-1], expected) > 30, "and then the camera moves"


def test_audio_is_a_quiet_pad_that_fades_in(clip_720p):
    samples = decode(clip_720p)["samples"]
    peak = max(abs(s) for s in samples)
    assert 0.02 < peak < 0.5
    opening = samples[: len(samples) // 100]
    assert max(abs(s) for s in opening) < peak / 4


def test_same_inputs_give_identical_bytes_and_the_seed_matters(clip_720p):
    assert render_mp4(make_png(), 1280, 720, 4, 0, 7) == clip_720p
    small = render_mp4(make_png(), 320, 180, 1, 0, 1)
    assert render_mp4(make_png(), 320, 180, 1, 0, 1) == small
    assert render_mp4(make_png(), 320, 180, 1, 0, 2) != small
    assert b"Lavf" not in clip_720p


def test_portrait_clip_keeps_its_size():
    info = decode(render_mp4(make_png(600, 800), 720, 1280, 1, 2, 3))
    assert info["size"] == (720, 1280)
    assert abs(info["duration"] - 1) <= 0.15


def test_odd_image_modes_and_tiny_images_render():
    out = io.BytesIO()
    Image.new("RGBA", (9, 5), (255, 0, 0, 128)).save(out, format="PNG")
    info = decode(render_mp4(out.getvalue(), 64, 36, 1, 3, 0))
    assert info["size"] == (64, 36)


@pytest.mark.parametrize("payload", [b"", b"this is not an image", make_png()[:200]])
def test_undecodable_image_raises_value_error(payload):
    with pytest.raises(ValueError, match="cannot be decoded"):
        render_mp4(payload, 320, 180, 1, 0, 0)


@pytest.mark.parametrize("size", [(321, 180), (320, 181), (0, 180)])
def test_sizes_h264_cannot_hold_raise_value_error(size):
    with pytest.raises(ValueError, match="must be even"):
        render_mp4(make_png(), *size, 1, 0, 0)


def test_cache_hit_returns_the_same_bytes_without_rendering():
    cache = RenderCache()
    image = make_png()
    first = cache.get_or_render(image, 320, 180, 1, 0, 5)
    second = cache.get_or_render(image, 320, 180, 1, 0, 5)
    assert first is second
    assert (cache.renders, cache.hits) == (1, 1)
    cache.get_or_render(image, 320, 180, 1, 1, 5)
    cache.get_or_render(make_png(colour=(0, 160, 0)), 320, 180, 1, 0, 5)
    assert (cache.renders, cache.hits) == (3, 1)


def test_cache_evicts_the_least_recently_used_clip():
    cache = RenderCache(max_items=2)
    image = make_png()
    for seed in (1, 2, 1, 3):
        cache.get_or_render(image, 64, 36, 1, 0, seed)
    assert (cache.renders, cache.hits) == (3, 1)
    cache.get_or_render(image, 64, 36, 1, 0, 1)
    assert cache.hits == 2
    cache.get_or_render(image, 64, 36, 1, 0, 2)
    assert cache.renders == 4


def test_concurrent_identical_requests_render_once():
    cache = RenderCache()
    image = make_png()
    start = threading.Barrier(4)
    results: list[bytes] = []

    def ask() -> None:
        start.wait()
        results.append(cache.get_or_render(image, 320, 180, 1, 2, 9))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and len(set(results)) == 1
    assert (cache.renders, cache.hits) == (1, 3)
    assert cache._key_locks == {}


def test_disk_cache_survives_a_new_cache_object(tmp_path):
    image = make_png()
    first = RenderCache(directory=tmp_path / "clips")
    data = first.get_or_render(image, 320, 180, 1, 0, 5)
    files = list((tmp_path / "clips").iterdir())
    assert len(files) == 1 and files[0].suffix == ".mp4" and files[0].read_bytes() == data
    second = RenderCache(directory=tmp_path / "clips")
    assert second.get_or_render(image, 320, 180, 1, 0, 5) == data
    assert (second.renders, second.hits) == (0, 1)


def test_failed_render_is_not_cached_and_leaves_the_cache_usable(tmp_path):
    cache = RenderCache(directory=tmp_path)
    with pytest.raises(ValueError):
        cache.get_or_render(b"junk", 64, 36, 1, 0, 0)
    assert cache.renders == 0 and list(tmp_path.iterdir()) == []
    assert cache._key_locks == {}
    cache.get_or_render(make_png(), 64, 36, 1, 0, 0)
    assert cache.renders == 1


def test_exif_rotation_is_honoured_and_jpeg_draft_decoding_keeps_the_picture():
    # Stored landscape, red on the left; EXIF orientation 6 shows it portrait with red on top.
    image = Image.new("RGB", (2400, 1200), (0, 0, 220))
    image.paste((220, 0, 0), (0, 0, 1200, 1200))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    full_view = decode(render_mp4(out.getvalue(), 64, 128, 1, 1, 0))["frames"][-1]
    red_top, green_top, blue_top = full_view.getpixel((32, 10))
    red_bottom, green_bottom, blue_bottom = full_view.getpixel((32, 118))
    assert red_top > 150 and blue_top < 80
    assert blue_bottom > 150 and red_bottom < 80
