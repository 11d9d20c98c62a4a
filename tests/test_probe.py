"""probe_video tells real clips from broken downloads; check_video says how a clip misses its order."""

from __future__ import annotations

import io
import os
import time

import av
import pytest
from PIL import Image, ImageDraw

from batchgen.errors import VerificationError
from batchgen.probe import VideoInfo, check_video, poster_frame, probe_video
from batchgen.simulator.render import FPS, render_mp4


def product_png() -> bytes:
    image = Image.new("RGB", (640, 480), "white")
    ImageDraw.Draw(image).ellipse([160, 120, 480, 360], fill=(20, 90, 200))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[bytes, os.PathLike]:
    data = render_mp4(product_png(), 1280, 720, 4, 2, 3)
    path = tmp_path_factory.mktemp("probe") / "clip.mp4"
    path.write_bytes(data)
    return data, path


def remux(source, target, *, kinds=("video", "audio"), options=None) -> None:
    """Copy some of a clip's streams into a new MP4 without re-encoding."""
    with av.open(os.fspath(source)) as src, av.open(os.fspath(target), "w", options=options or {}) as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams if s.type in kinds}
        for packet in src.demux():
            if packet.dts is None or packet.stream_index not in streams:
                continue
            packet.stream = streams[packet.stream_index]
            dst.mux(packet)


def test_probe_reads_the_rendered_clip(clip):
    _, path = clip
    started = time.perf_counter()
    info = probe_video(path)
    assert time.perf_counter() - started < 0.5
    assert info == VideoInfo(width=1280, height=720, duration=pytest.approx(4, abs=0.15),
                             video_codec="h264", audio_codec="aac", fps=pytest.approx(FPS))
    assert check_video(info, 1280, 720, 4) == []
    assert probe_video(str(path)) == info


def test_truncated_clip_raises_permanent_error(clip, tmp_path):
    data, _ = clip
    # Our MP4s keep their index at the end, so the first half has no index at all.
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(VerificationError, match="not a readable video"):
        probe_video(half)


@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_faststart_clip_is_caught_despite_a_complete_index(clip, tmp_path, keep):
    _, path = clip
    faststart = tmp_path / "faststart.mp4"
    remux(path, faststart, options={"movflags": "+faststart"})
    assert probe_video(faststart).duration == pytest.approx(4, abs=0.15)
    data = faststart.read_bytes()
    assert data[36:40] == b"moov"
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(VerificationError, match="cut short|truncated"):
        probe_video(cut)


def test_faststart_clip_cut_between_packets_is_reported_as_truncated(clip, tmp_path):
    _, path = clip
    faststart = tmp_path / "faststart.mp4"
    remux(path, faststart, options={"movflags": "+faststart"})
    with av.open(os.fspath(faststart)) as container:
        boundary = next(p.pos for p in container.demux(video=0) if p.pts is not None and p.pts * p.time_base >= 2)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(faststart.read_bytes()[:boundary])
    promise = r"truncated: its header promises 4\.00 s but the video data ends at 2\.00 s"
    with pytest.raises(VerificationError, match=promise):
        probe_video(cut)


@pytest.mark.parametrize("content", [b"<html><body>502 Bad Gateway</body></html>\n" * 20, b""])
def test_a_file_that_is_not_a_video_raises_permanent_error(tmp_path, content):
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    with pytest.raises(VerificationError, match=r"clip\.mp4 is not a readable video"):
        probe_video(path)


def test_a_picture_is_not_mistaken_for_a_clip(tmp_path):
    path = tmp_path / "still.png"
    path.write_bytes(product_png())
    with pytest.raises(VerificationError, match="still png image, not a video"):
        probe_video(path)


def test_audio_only_file_has_no_video_stream(clip, tmp_path):
    _, path = clip
    audio_only = tmp_path / "audio.mp4"
    remux(path, audio_only, kinds=("audio",))
    with pytest.raises(VerificationError, match="no video stream"):
        probe_video(audio_only)


def test_silent_clip_probes_with_no_audio_codec(clip, tmp_path):
    _, path = clip
    silent = tmp_path / "silent.mp4"
    remux(path, silent, kinds=("video",))
    info = probe_video(silent)
    assert info.audio_codec is None
    assert check_video(info, 1280, 720, 4) == ["video has no audio track, expected one"]
    assert check_video(info, 1280, 720, 4, need_audio=False) == []


def test_check_video_names_every_mismatch():
    info = VideoInfo(width=1280, height=720, duration=3.2, video_codec="h264", audio_codec="aac", fps=24.0)
    assert check_video(info, 1280, 720, 3) == []
    assert check_video(info, 1920, 1080, 4) == [
        "video is 1280x720, expected 1920x1080",
        "video lasts 3.20 s, expected 4 s (within 0.5 s)",
    ]
    # The expected size is exact: a portrait clip does not pass for a landscape order.
    assert check_video(info, 720, 1280, 3.2) == ["video is 1280x720, expected 720x1280"]
    assert check_video(info, 1280, 720, 4, tolerance=1.0) == []


def test_poster_frame_writes_a_jpeg_of_the_middle_frame(clip, tmp_path):
    _, path = clip
    out = tmp_path / "poster.jpg"
    poster_frame(path, out)
    with Image.open(out) as poster:
        assert poster.format == "JPEG"
        assert poster.size == (480, 270)
        poster.load()
    poster_frame(path, tmp_path / "wide.jpg", max_width=2000)
    with Image.open(tmp_path / "wide.jpg") as wide:
        assert wide.size == (1280, 720)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["poster.jpg", "wide.jpg"]


def test_poster_frame_follows_the_motion(clip, tmp_path):
    _, path = clip
    first, last = tmp_path / "first.jpg", tmp_path / "last.jpg"
    poster_frame(path, first, max_width=160, at=0.0)
    poster_frame(path, last, max_width=160, at=1.0)
    with Image.open(first) as a, Image.open(last) as b:
        assert a.size == b.size == (160, 90)
        assert a.tobytes() != b.tobytes()


def test_poster_frame_of_a_non_video_raises_permanent_error(tmp_path):
    path = tmp_path / "page.mp4"
    path.write_bytes(b"<html>nope</html>" * 10)
    with pytest.raises(VerificationError, match="poster frame"):
        poster_frame(path, tmp_path / "poster.jpg")
    assert not (tmp_path / "poster.jpg").exists()
