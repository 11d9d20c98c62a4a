"""What a downloaded video file really is: streams, size, duration; and a poster frame for the report.

The runner trusts no download until probe_video has read it: an HTML error page saved as .mp4, a
half-written file or a clip of the wrong size must be caught before the job is marked done.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av
from PIL import Image

from batchgen.errors import VerificationError
from batchgen.fsguard import replace_whole

__all__ = ["VideoInfo", "check_video", "poster_frame", "probe_video"]

# Stream data that ends this much before the duration the header promises means the file was cut short.
_TRUNCATION_SLACK = 0.25


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    duration: float
    video_codec: str
    audio_codec: str | None
    fps: float | None


def probe_video(path: str | os.PathLike, *, scan_packets: bool = True) -> VideoInfo:
    """Read a video's metadata and check its packets are all there, without decoding it.

    ``scan_packets=False`` trusts the container's index for the length and skips reading every
    packet (about half the cost): for a file whose byte count was already checked against the
    server's Content-Length, so it cannot have been cut in transit.

    Raises VerificationError when the file is not a video, has no video stream, or is truncated or corrupt.
    """
    try:
        with av.open(os.fspath(path)) as container:
            return _probe_open(container, path, scan_packets)
    except av.FFmpegError as exc:
        raise VerificationError(
            f"{path} is not a readable video ({_reason(exc)}); it is probably not a video, or it was cut "
            "short: download it again"
        ) from exc


def _reason(exc: av.FFmpegError) -> str:
    # FFmpeg's message repeats the path; the error text alone reads better after ours.
    return getattr(exc, "strerror", None) or str(exc)


def _probe_open(container, path: str | os.PathLike, scan_packets: bool) -> VideoInfo:
    if not container.streams.video:
        raise VerificationError(f"{path} has no video stream; it is not a video clip: download it again")
    video = container.streams.video[0]
    if container.format.name == "image2" or container.format.name.endswith("_pipe"):
        raise VerificationError(
            f"{path} is a still {video.codec_context.name} image, not a video clip: download it again"
        )
    audio = container.streams.audio[0] if container.streams.audio else None
    width, height = video.codec_context.width, video.codec_context.height
    if not width or not height:
        raise VerificationError(f"{path} has a video stream with no picture size; the file is corrupt: download it again")
    declared = _declared_duration(container, video)
    if not scan_packets and declared:
        return VideoInfo(width=width, height=height, duration=declared, video_codec=video.codec_context.name,
                         audio_codec=audio.codec_context.name if audio is not None else None,
                         fps=float(video.average_rate) if video.average_rate else None)
    # Demuxing reads every packet's bytes but decodes none: a few milliseconds for a normal clip, and it
    # is the only way to notice an MP4 whose index is complete but whose data stops half way.
    ends = _stream_ends(container, path)
    data_end = ends.get(video.index, 0.0)
    if data_end <= 0:
        raise VerificationError(f"{path} has a video stream with no frames in it; the file is corrupt: download it again")
    if declared is None:
        declared = max(ends.values())
    elif data_end < declared - _TRUNCATION_SLACK:
        raise VerificationError(
            f"{path} is truncated: its header promises {declared:.2f} s but the video data ends at "
            f"{data_end:.2f} s; download it again"
        )
    return VideoInfo(
        width=width,
        height=height,
        duration=declared,
        video_codec=video.codec_context.name,
        audio_codec=audio.codec_context.name if audio is not None else None,
        fps=float(video.average_rate) if video.average_rate else None,
    )


def _declared_duration(container, video) -> float | None:
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    if video.duration is not None and video.time_base is not None:
        return float(video.duration * video.time_base)
    return None


def _stream_ends(container, path: str | os.PathLike) -> dict[int, float]:
    """The time each stream's last packet ends, in seconds; raises VerificationError on a damaged packet."""
    ends: dict[int, float] = {}
    for packet in container.demux():
        if packet.size == 0 or packet.pts is None or packet.time_base is None:
            continue
        if packet.is_corrupt:
            raise VerificationError(f"{path} has a damaged packet at {float(packet.pts * packet.time_base):.2f} s; "
                                 "the file is corrupt or cut short: download it again")
        end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
        ends[packet.stream_index] = max(ends.get(packet.stream_index, 0.0), end)
    return ends


def check_video(
    info: VideoInfo,
    width: int,
    height: int,
    duration: float,
    *,
    tolerance: float = 0.5,
    need_audio: bool = True,
) -> list[str]:
    """Every way the probed clip differs from what was ordered; an empty list means it is fine."""
    problems = []
    if (info.width, info.height) != (width, height):
        problems.append(f"video is {info.width}x{info.height}, expected {width}x{height}")
    if abs(info.duration - duration) > tolerance:
        problems.append(f"video lasts {info.duration:.2f} s, expected {duration:g} s (within {tolerance:g} s)")
    if need_audio and info.audio_codec is None:
        problems.append("video has no audio track, expected one")
    return problems


def poster_frame(path: str | os.PathLike, out_path: str | os.PathLike, max_width: int = 480, at: float = 0.5) -> None:
    """Write a JPEG of the frame at fraction ``at`` of the clip, no wider than ``max_width``."""
    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                raise VerificationError(f"{path} has no video stream, so it has no poster frame")
            image = _frame_at(container, container.streams.video[0], min(max(at, 0.0), 1.0))
    except av.FFmpegError as exc:
        raise VerificationError(
            f"cannot read a poster frame from {path} ({_reason(exc)}); the file is not a readable video"
        ) from exc
    if image.width > max_width:
        scaled_height = max(1, round(image.height * max_width / image.width))
        image = image.resize((max_width, scaled_height), Image.Resampling.LANCZOS)
    # The report may be reading the folder while we write; it should see an old poster or a whole new one.
    replace_whole(Path(out_path), lambda out: image.save(out, format="JPEG", quality=85))


def _frame_at(container, video, at: float) -> Image.Image:
    duration = _declared_duration(container, video) or 0.0
    target = duration * at
    if target > 0:
        # Seeking lands on the keyframe before the target; decoding on from there reaches the exact frame.
        container.seek(int(target * av.time_base), backward=True)
    chosen = None
    for frame in container.decode(video):
        chosen = frame
        if frame.time is not None and frame.time >= target - 1e-6:
            break
    if chosen is None:
        raise VerificationError(f"{container.name} has no decodable video frames, so it has no poster frame")
    return chosen.to_image()
