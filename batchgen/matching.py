"""Telling which job a listed prediction belongs to when the listing does not say what was asked.

A prediction the state does not know, of the right model and created in the right window, may be a
lost submit. Without its request ``input`` only the output can tell whose it is: first its shape
(resolution, length, orientation) against each job's order, then its first frame against each job's
source image (image-to-video output opens on its source picture fitted to the frame). A candidate
is adopted only when the pairing is unique both ways; everything else stays unmatched.

The picture comparison is a tiny colour thumbnail of the cover-fitted picture, compared by the mean
difference of its samples: a grayscale average or difference hash cannot tell apart two pictures
that differ only in colour (two flat halves of the same brightness hash alike), and a colour
thumbnail costs no more.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Mapping

import av
from PIL import Image, ImageOps

from .download import shape_problems
from .errors import VerificationError
from .jobs import JobSpec
from .probe import VideoInfo

#: Thumbnail side, in samples.
SIDE = 8
#: Most mean difference (0..255 per sample) between a first frame and a source image of the same picture:
#: encoding loses a few levels, a different picture differs by tens.
SAME_PICTURE = 18.0


@dataclass(frozen=True)
class Clip:
    """What a candidate's output really is."""

    info: VideoInfo
    #: Thumbnail of its first frame (SIDE x SIDE RGB samples).
    first_frame: bytes


def thumbnail(image: Image.Image, width: int, height: int) -> bytes:
    """The picture cover-fitted to ``width`` x ``height`` (centred), shrunk to SIDE x SIDE colour samples."""
    fitted = ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.BILINEAR)
    return fitted.resize((SIDE, SIDE), Image.Resampling.BOX).tobytes()


def difference(a: bytes, b: bytes) -> float:
    """Mean absolute difference per sample, 0 (same) to 255."""
    return sum(abs(x - y) for x, y in zip(a, b)) / max(1, len(a))


def first_frame(path: str | os.PathLike) -> Image.Image:
    """The first decoded picture of a video file."""
    try:
        with av.open(os.fspath(path)) as container:
            for frame in container.decode(video=0):
                return frame.to_image()
    except av.FFmpegError as exc:
        raise VerificationError(f"cannot read the first frame of {path}: {exc}") from exc
    raise VerificationError(f"{path} has no decodable video frame")


def clip_of(path: str | os.PathLike, info: VideoInfo) -> Clip:
    frame = first_frame(path)
    return Clip(info, thumbnail(frame, info.width, info.height))


def fits(clip: Clip, job: JobSpec, tolerance: float) -> list[str]:
    """Every way a clip cannot be this job's output (shape and orientation); empty when it can."""
    problems = shape_problems(clip.info, job.resolution, float(job.duration), job.params.get("aspect_ratio"),
                              tolerance, need_audio=False)
    size = _image_size(job)
    if size is not None and not job.params.get("aspect_ratio"):
        portrait_image, portrait_clip = size[1] > size[0], clip.info.height > clip.info.width
        if portrait_image != portrait_clip:
            problems.append("its orientation is not the source image's")
    return problems


def picture_distance(clip: Clip, job: JobSpec) -> float | None:
    """How far the clip's first frame is from the job's source image; None when the image is not local."""
    if not job.image_path:
        return None
    try:
        with Image.open(job.image_path) as image:
            return difference(clip.first_frame, thumbnail(image, clip.info.width, clip.info.height))
    except OSError:
        return None


def _image_size(job: JobSpec) -> tuple[int, int] | None:
    if not job.image_path:
        return None
    try:
        with Image.open(job.image_path) as image:
            return image.size
    except OSError:
        return None


def pairings(clips: Mapping[str, Clip], jobs: Iterable[JobSpec], tolerance: float) -> dict[str, set[str]]:
    """For each candidate id, the keys of the jobs it may be: the right shape, and the same picture
    when the source image can be compared."""
    jobs = list(jobs)
    possible: dict[str, set[str]] = {}
    for cid, clip in clips.items():
        keys = set()
        for job in jobs:
            if fits(clip, job, tolerance):
                continue
            distance = picture_distance(clip, job)
            if distance is None or distance <= SAME_PICTURE:
                keys.add(job.key)
        possible[cid] = keys
    return possible


def assign(possible: Mapping[str, set[str]]) -> dict[str, str]:
    """Candidate id -> job key for every pairing that is unique both ways: the candidate can only be
    that job, and that job can only be that candidate. Nothing weaker is certain, since a candidate
    may be another batch's prediction and a job may never have been created."""
    claims: dict[str, int] = {}
    for keys in possible.values():
        for key in keys:
            claims[key] = claims.get(key, 0) + 1
    return {cid: next(iter(keys)) for cid, keys in possible.items()
            if len(keys) == 1 and claims[next(iter(keys))] == 1}
