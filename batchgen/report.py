"""``batchgen report STATE [--html PATH]``: one self-contained HTML page of a batch, offline.

The page sits next to the videos (``<out>/report.html`` by default) and links everything by
relative path, so the folder can be zipped and shared. Small pictures go in ``<out>/.report/``:
a JPEG thumbnail (at most 320 px) of each source image and a poster frame of each video, made
with Pillow and PyAV and remade only when missing or older than their source. CSS and JS are
inline (no CDN, no server); filtering by status is a few lines of JS, and without JS every card
shows. Every manifest string (prompts are user data) is HTML-escaped.

Paths: outputs are relative to the state file's folder (the run's ``--out``). A source image is
relative to its manifest, found from the job's ``where`` (``manifest.yaml:LINE``) as written at
run time, so the manifest is looked up from the current folder first, then from the output
folder and its parents. A job edited since it ran keeps one card (its latest version); the
videos of earlier versions are linked from it.

Once the page has loaded, its JS checks every poster and thumbnail by decoding it and writes
the counts on <body> (``data-posters``, ``data-posters-loaded``, ``data-thumbs``,
``data-thumbs-loaded``, ``data-ready``), so a headless browser can tell whether they show.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BatchgenError, StateError
from .fsguard import refuse_link, replace_whole
from .lifecycle import JobStatus
from .probe import poster_frame
from .picks import group_rows, latest_records, load_picks
from .report_page import Card, render_page
from .state import JobRecord, State, load
from .unmatched import listed as unmatched_videos

THUMB_PX = 320
POSTER_PX = 480
ASSETS = ".report"

@dataclass
class ReportResult:
    path: Path
    cards: int
    made: int
    reused: int
    problems: list[str]


@dataclass
class _Picture:
    kind: str  # "thumb" or "poster"
    src: Path
    dst: Path
    job: str


def report_command(args: argparse.Namespace) -> int:
    if not args.state.exists():
        raise StateError(f"{args.state}: no such state file; it is created by 'batchgen run' in the output folder")
    result = write_report(args.state, args.html)
    print(f"wrote {result.path}: {result.cards} job(s); {result.made} picture(s) made, {result.reused} reused")
    for problem in result.problems[:20]:
        print(f"  {problem}")
    if len(result.problems) > 20:
        print(f"  ... and {len(result.problems) - 20} more")
    return 0


def write_report(state_path: Path, html_path: Path | None = None, *, cwd: Path | None = None) -> ReportResult:
    """Make the missing pictures and write the page; returns what was written and what could not be shown."""
    state = load(state_path)
    out_dir = Path(state_path).resolve().parent
    html_path = Path(html_path or out_dir / "report.html").resolve()
    assets = assets_dir(out_dir)
    cards, pictures = plan_cards(state, out_dir, assets, cwd or Path.cwd())
    made, reused, problems = make_pictures(pictures)
    page_dir = html_path.parent
    for card in cards:
        if card.thumb_file is not None:
            if card.thumb_file in problems:
                card.thumb_note = problems[card.thumb_file]
            else:
                card.thumb = _rel(card.thumb_file, page_dir)
        if card.poster_file is not None and card.poster_file not in problems:
            card.poster = _rel(card.poster_file, page_dir)
        if card.video:
            card.video = _rel(Path(card.video), page_dir)
        card.earlier = [_rel(Path(p), page_dir) for p in card.earlier]
    try:
        picks = load_picks(out_dir)
    except StateError as exc:
        picks = {}
        problems[out_dir / "picks.json"] = str(exc)
    unmatched = [{**v, "href": _rel(out_dir / v["path"], page_dir)} for v in unmatched_videos(out_dir)]
    page = render_page(state, cards, out_dir.name, picks, unmatched=unmatched)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    replace_whole(html_path, lambda out: out.write(page.encode("utf-8")))
    return ReportResult(html_path, len(cards), made, reused, list(problems.values()))


def assets_dir(out_dir: Path) -> Path:
    """``<out>/.report/``, made if missing; a link planted in its place is refused (OutputPathError), so
    the pictures cannot be written outside the output folder."""
    assets = out_dir / ASSETS
    refuse_link(assets)
    try:
        assets.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"cannot create {assets} for the report's pictures ({exc.strerror}); "
                         "check the folder's permissions") from exc
    return assets


def plan_cards(state: State, out_dir: Path, assets: Path, cwd: Path) -> tuple[list[Card], list[_Picture]]:
    """Cards with absolute video paths, row by row, and the pictures each one wants (deduplicated by target)."""
    cards: list[Card] = []
    pictures: dict[Path, _Picture] = {}
    earlier = {rec.key: older for rec, older in latest_records(state)}
    for row, rec in ((row, rec) for row in group_rows(state) for rec in row.takes):
        older = earlier[rec.key]
        card = Card(rec, row=row, take=row.take_number(rec))
        if rec.image.startswith(("http://", "https://")):
            card.thumb_note = rec.image
        else:
            src = find_source(rec, out_dir, cwd)
            if src is None:
                card.thumb_note = f"source image {rec.image} not found next to {rec.where or 'the manifest'}"
            else:
                digest = hashlib.sha1(str(src).encode()).hexdigest()[:16]
                card.thumb_file = assets / f"src-{digest}.jpg"
                pictures.setdefault(card.thumb_file, _Picture("thumb", src, card.thumb_file, rec.id))
        if rec.status is JobStatus.DOWNLOADED and rec.path:
            video = out_dir / rec.path
            if video.is_file():
                card.video = str(video)
                card.poster_file = assets / f"poster-{rec.key}.jpg"
                pictures.setdefault(card.poster_file, _Picture("poster", video, card.poster_file, rec.id))
            else:
                card.video_note = f"{rec.path} is missing from {out_dir}; 'batchgen run' downloads it again"
        card.earlier = [str(out_dir / r.path) for r in older
                        if r.status is JobStatus.DOWNLOADED and r.path and (out_dir / r.path).is_file()]
        cards.append(card)
    return cards, list(pictures.values())


def find_source(rec: JobRecord, out_dir: Path, cwd: Path) -> Path | None:
    """The job's source image on disk, if it can still be found."""
    image = Path(rec.image)
    if image.is_absolute():
        return image if image.is_file() else None
    manifest = Path(rec.where.rsplit(":", 1)[0]) if rec.where else None
    if manifest is None:
        return None
    if manifest.is_absolute():
        bases = [manifest.parent]
    else:
        bases = [(root / manifest).parent for root in (cwd, out_dir, *out_dir.parents)]
    for base in bases:
        candidate = base / image
        if candidate.is_file():
            return candidate.resolve()
    return None


def make_pictures(pictures: list[_Picture]) -> tuple[int, int, dict[Path, str]]:
    """Make the pictures that are missing or stale, in threads (decoding releases the GIL)."""
    todo = [p for p in pictures if _stale(p)]
    problems: dict[Path, str] = {}
    if todo:
        with ThreadPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 2)) as pool:
            for pic, error in zip(todo, pool.map(_make, todo)):
                if error:
                    problems[pic.dst] = error
    return len(todo) - len(problems), len(pictures) - len(todo), problems


def _stale(pic: _Picture) -> bool:
    try:
        return pic.dst.stat().st_mtime < pic.src.stat().st_mtime
    except FileNotFoundError:
        return True


def _make(pic: _Picture) -> str:
    try:
        if pic.kind == "poster":
            poster_frame(pic.src, pic.dst, max_width=POSTER_PX)
        else:
            make_thumbnail(pic.src, pic.dst)
    except (BatchgenError, OSError, UnidentifiedImageError, ValueError) as exc:
        return f"{pic.job}: no {pic.kind} for {pic.src}: {exc}"
    return ""


def make_thumbnail(src: Path, dst: Path, size: int = THUMB_PX) -> None:
    """A JPEG no larger than ``size`` px either way, upright (EXIF), written whole or not at all."""
    with Image.open(src) as image:
        image.draft("RGB", (size, size))
        image = ImageOps.exif_transpose(image)
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        if image.mode != "RGB":
            background = Image.new("RGB", image.size, (255, 255, 255))
            rgba = image.convert("RGBA")
            background.paste(rgba, mask=rgba.getchannel("A"))
            image = background
        replace_whole(dst, lambda out: image.save(out, format="JPEG", quality=82))


def _rel(path: Path, page_dir: Path) -> str:
    return Path(os.path.relpath(path, page_dir)).as_posix()


