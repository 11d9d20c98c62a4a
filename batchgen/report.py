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
import html
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BatchgenError, StateError
from .lifecycle import JobStatus
from .probe import poster_frame
from .state import JobRecord, State, committed_spend, load

THUMB_PX = 320
POSTER_PX = 480
ASSETS = ".report"

#: The status word on a card and its filter button.
LABELS = {
    JobStatus.DOWNLOADED: "done", JobStatus.FAILED: "failed", JobStatus.UNKNOWN: "unknown",
    JobStatus.SUBMITTING: "unknown", JobStatus.NEW: "not started", JobStatus.SUBMITTED: "generating",
    JobStatus.COMPLETED: "not downloaded",
}


@dataclass
class Card:
    """One job as the page shows it; ``thumb``, ``poster`` and ``video`` are relative to the page."""

    rec: JobRecord
    thumb_file: Path | None = None
    poster_file: Path | None = None
    thumb: str = ""
    thumb_note: str = ""
    poster: str = ""
    video: str = ""
    video_note: str = ""
    earlier: list[str] = field(default_factory=list)


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
    assets = out_dir / ASSETS
    try:
        assets.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"cannot create {assets} for the report's pictures ({exc.strerror}); "
                         "check the folder's permissions") from exc
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
    page = render_page(state, cards, out_dir.name)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = html_path.with_name(html_path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, html_path)
    return ReportResult(html_path, len(cards), made, reused, list(problems.values()))


def latest_records(state: State) -> list[tuple[JobRecord, list[JobRecord]]]:
    """The newest record of each job id, in the order ids first appeared, with the older ones."""
    order: dict[str, list[JobRecord]] = {}
    for rec in state.jobs.values():
        if rec.id:
            order.setdefault(rec.id, []).append(rec)
    return [(recs[-1], recs[:-1]) for recs in order.values()]


def plan_cards(state: State, out_dir: Path, assets: Path, cwd: Path) -> tuple[list[Card], list[_Picture]]:
    """Cards with absolute video paths, and the pictures each one wants (deduplicated by target)."""
    cards: list[Card] = []
    pictures: dict[Path, _Picture] = {}
    for rec, older in latest_records(state):
        card = Card(rec)
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
        partial = dst.with_name(dst.name + ".part")
        image.save(partial, format="JPEG", quality=82)
    os.replace(partial, dst)


def _rel(path: Path, page_dir: Path) -> str:
    return Path(os.path.relpath(path, page_dir)).as_posix()


# -- the page ---------------------------------------------------------------------------------
def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _url(rel: str) -> str:
    """A relative path as an attribute value: percent-encoded (spaces, #, ?) and then HTML-escaped."""
    return _e(quote(rel, safe="/"))


def totals(state: State, cards: list[Card]) -> dict[str, float]:
    """The header's figures: over the cards shown, with spend over every job ever paid for."""
    recs = [c.rec for c in cards]
    done = [r for r in recs if r.status is JobStatus.DOWNLOADED]
    wall = 0.0
    started = None
    for run in state.runs:
        if run.get("phase") == "start":
            started = run.get("t")
        elif run.get("phase") == "end" and started is not None and run.get("t") is not None:
            wall += run["t"] - started
            started = None
    return {
        "jobs": len(recs), "done": len(done),
        "failed": sum(1 for r in recs if r.status is JobStatus.FAILED),
        "unknown": sum(1 for r in recs if LABELS[r.status] == "unknown"),
        "minutes": sum(_seconds(r) for r in done) / 60,
        "dollars": committed_spend(state.jobs.values()), "wall": wall,
    }


def _seconds(rec: JobRecord) -> float:
    try:
        return float(rec.params.get("duration", 0))
    except (TypeError, ValueError):
        return 0.0


def _generation(rec: JobRecord) -> str:
    if rec.inference_ms:
        return f"{rec.inference_ms / 1000:.1f} s"
    if rec.completed_at and rec.submitted_at:
        return f"{rec.completed_at - rec.submitted_at:.1f} s (wall)"
    return ""


def _wall(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m {seconds % 60:02d}s"


def render_card(card: Card) -> str:
    rec = card.rec
    label = LABELS[rec.status]
    slug = label.replace(" ", "-")
    if card.video:
        poster = f' poster="{_url(card.poster)}"' if card.poster else ""
        media = (f'<video controls preload="none"{poster}><source src="{_url(card.video)}" type="video/mp4">'
                 f'<a href="{_url(card.video)}">{_e(rec.path)}</a></video>')
    else:
        note = card.video_note or {"failed": "no video: the job failed", "unknown": "no video: submit answer lost"
                                   }.get(label, f"no video yet ({label})")
        media = f'<div class="novideo">{_e(note)}</div>'
    if card.thumb:
        source = f'<img class="thumb" src="{_url(card.thumb)}" alt="source image {_e(rec.image)}" loading="lazy">'
    else:
        source = f'<div class="thumb nothumb" title="{_e(card.thumb_note)}">{_e(card.thumb_note or rec.image)}</div>'
    model = _e(rec.model_used or rec.submit_model or rec.model)
    if rec.fell_back:
        model += f' <span class="warn">fallback; asked {_e(rec.submit_model or rec.model)}</span>'
    params = ", ".join(f"{_e(k)}={_e(v)}" for k, v in rec.params.items())
    rows = [("model", model), ("params", params), ("cost", f"${rec.cost:.2f}"),
            ("generation", _e(_generation(rec))), ("manifest", _e(rec.where)), ("prediction", _e(rec.pid)),
            ("file", f'<a href="{_url(card.video)}">{_e(rec.path)}</a>' if card.video else "")]
    rows += [("earlier", f'<a href="{_url(p)}">{_e(Path(p).name)}</a>') for p in card.earlier]
    details = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows if v)
    error = ""
    if rec.error and rec.status is not JobStatus.DOWNLOADED:
        error = f'<p class="error"><b>{_e(rec.error_class or "error")}</b>: {_e(rec.error)}</p>'
    return (f'<article class="card" data-status="{slug}" id="job-{_e(rec.id)}">'
            f'<div class="media">{media}</div>'
            f'<div class="body"><header><h2>{_e(rec.id)}</h2><span class="badge {slug}">{_e(label)}</span></header>'
            f'<div class="prompt">{source}<p>{_e(rec.prompt)}</p></div>{error}<dl>{details}</dl></div></article>')


def render_page(state: State, cards: list[Card], title: str) -> str:
    t = totals(state, cards)
    counts: dict[str, int] = {}
    for card in cards:
        label = LABELS[card.rec.status]
        counts[label] = counts.get(label, 0) + 1
    buttons = [f'<button type="button" data-filter="all" aria-pressed="true">all <b>{len(cards)}</b></button>']
    buttons += [f'<button type="button" data-filter="{_e(k.replace(" ", "-"))}" aria-pressed="false">'
                f'{_e(k)} <b>{n}</b></button>' for k, n in counts.items()]
    figures = [("jobs", t["jobs"]), ("done", t["done"]), ("failed", t["failed"]), ("unknown", t["unknown"]),
               ("minutes of video", f"{t['minutes']:.1f}"), ("dollars", f"${t['dollars']:.2f}"),
               ("wall time", _wall(t["wall"]))]
    header = "".join(f'<div class="figure"><b>{_e(v)}</b><span>{_e(k)}</span></div>' for k, v in figures)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{_e(title)} · batchgen report</title><style>{_CSS}</style></head><body>'
            f'<header class="top"><h1>{_e(title)}</h1><p class="when">batchgen report, '
            f'{_e(time.strftime("%Y-%m-%d %H:%M"))}</p><div class="figures">{header}</div>'
            f'<nav class="filters">{"".join(buttons)}</nav></header>'
            f'<main class="grid">{"".join(render_card(c) for c in cards)}</main>'
            f'<script>{_JS}</script></body></html>\n')


_CSS = """
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;
background:#f3f4f6;color:#1f2937}.top{padding:20px 28px 8px;background:#fff;border-bottom:1px solid #e5e7eb}
h1{margin:0;font-size:22px}.when{margin:2px 0 14px;color:#6b7280}.figures{display:flex;flex-wrap:wrap;gap:10px}
.figure{background:#f9fafb;border:1px solid #e5e7eb;border-radius:8px;padding:8px 14px;min-width:96px}
.figure b{display:block;font-size:20px}.figure span{color:#6b7280;font-size:12px}
.filters{display:flex;flex-wrap:wrap;gap:8px;margin:16px 0 8px}.filters button{font:inherit;cursor:pointer;
border:1px solid #d1d5db;background:#fff;border-radius:999px;padding:4px 14px}
.filters button[aria-pressed=true]{background:#1f2937;color:#fff;border-color:#1f2937}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:18px;padding:20px 28px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:10px;overflow:hidden;display:flex;flex-direction:column}
.card[hidden]{display:none}.media{position:relative;aspect-ratio:16/9;background:#111827}
.media video{position:absolute;inset:0;width:100%;height:100%;object-fit:contain;background:#111827}
.novideo{height:100%;display:flex;align-items:center;justify-content:center;color:#9ca3af;padding:16px;
text-align:center}.body{padding:12px 14px}.body header{display:flex;justify-content:space-between;
align-items:center;gap:8px}h2{margin:0;font-size:15px;word-break:break-all}.badge{font-size:12px;
border-radius:999px;padding:2px 10px;white-space:nowrap;background:#e5e7eb}.badge.done{background:#d1fae5;
color:#065f46}.badge.failed{background:#fee2e2;color:#991b1b}.badge.unknown{background:#fef3c7;color:#92400e}
.prompt{display:flex;gap:10px;margin:10px 0}.prompt p{margin:0;color:#374151;max-height:8.7em;overflow:auto}
.thumb{width:72px;height:72px;object-fit:cover;border-radius:6px;flex:none;border:1px solid #e5e7eb}
.nothumb{font-size:10px;color:#6b7280;overflow:hidden;padding:4px;word-break:break-all;background:#f9fafb}
.error{background:#fef2f2;border:1px solid #fecaca;color:#991b1b;border-radius:6px;padding:6px 10px;margin:8px 0;
word-break:break-word}dl{display:grid;grid-template-columns:auto 1fr;gap:2px 12px;margin:8px 0 0;font-size:12px}
dt{color:#6b7280}dd{margin:0;word-break:break-all}.warn{color:#92400e;background:#fef3c7;border-radius:4px;
padding:0 4px}a{color:#2563eb}
"""

_JS = """
(function () {
  var buttons = document.querySelectorAll('.filters button');
  var cards = document.querySelectorAll('.card');
  function show(which) {
    buttons.forEach(function (b) { b.setAttribute('aria-pressed', String(b.dataset.filter === which)); });
    cards.forEach(function (c) { c.hidden = which !== 'all' && c.dataset.status !== which; });
  }
  buttons.forEach(function (b) {
    b.addEventListener('click', function () {
      show(b.dataset.filter);
      history.replaceState(null, '', b.dataset.filter === 'all' ? '#' : '#' + b.dataset.filter);
    });
  });
  var wanted = location.hash.slice(1);
  if (wanted && document.querySelector('.filters button[data-filter="' + CSS.escape(wanted) + '"]')) show(wanted);
  function check(urls, name, then) {
    var left = urls.length, ok = 0;
    document.body.dataset[name] = urls.length;
    function one() { left -= 1; if (left === 0) finish(); }
    function finish() { document.body.dataset[name + 'Loaded'] = ok; then(); }
    if (!left) return finish();
    urls.forEach(function (u) {
      var img = new Image();
      img.onload = function () { if (img.naturalWidth > 0) ok += 1; one(); };
      img.onerror = one;
      img.src = u;
    });
  }
  window.addEventListener('load', function () {
    var posters = Array.prototype.map.call(document.querySelectorAll('video[poster]'),
      function (v) { return v.getAttribute('poster'); });
    var thumbs = Array.prototype.map.call(document.querySelectorAll('img.thumb'),
      function (i) { return i.getAttribute('src'); });
    var pending = 2;
    function done() { pending -= 1; if (!pending) document.body.dataset.ready = '1'; }
    check(posters, 'posters', done);
    check(thumbs, 'thumbs', done);
  });
})();
"""
