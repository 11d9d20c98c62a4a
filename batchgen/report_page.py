"""The report's HTML: a header of figures, status filters, and one group per manifest row with its
takes side by side (a card each). Every manifest string (prompts are user data) is HTML-escaped.

Each card shows the model asked for and the one that answered, and the dollars *billed*: a failed
task the provider does not charge for shows $0.00 (its list price is shown beside it). Picks made
in ``batchgen review`` are shown read-only: the picked take is marked, a rejected or redo row says so.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .lifecycle import JobStatus
from .picks import Row
from .state import JobRecord, State, committed_spend, spend_of

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
    row: Row | None = None
    take: int = 1
    thumb_file: Path | None = None
    poster_file: Path | None = None
    thumb: str = ""
    thumb_note: str = ""
    poster: str = ""
    video: str = ""
    video_note: str = ""
    earlier: list[str] = field(default_factory=list)


def billed(rec: JobRecord) -> float:
    """Dollars this job was charged (or will be, once in flight), as its own record says: a task's
    failure records what it cost under its provider's policy (0.0 when failures are not billed)."""
    return spend_of(rec)


def model_line(rec: JobRecord) -> tuple[str, str]:
    """The model asked for and the one that answered ('' until a task answered)."""
    return rec.submit_model or rec.model, rec.model_used

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


def _media(card: Card, label: str) -> str:
    rec = card.rec
    if card.video:
        poster = f' poster="{_url(card.poster)}"' if card.poster else ""
        return (f'<video controls preload="none"{poster}><source src="{_url(card.video)}" type="video/mp4">'
                f'<a href="{_url(card.video)}">{_e(rec.path)}</a></video>')
    note = card.video_note or {"failed": "no video: the job failed", "unknown": "no video: submit answer lost"
                               }.get(label, f"no video yet ({label})")
    return f'<div class="novideo">{_e(note)}</div>'


def _details(card: Card) -> str:
    rec = card.rec
    asked, used = model_line(rec)
    used_html = _e(used) if used else '<span class="muted">no answer yet</span>'
    if used and used != asked:
        used_html += ' <span class="warn">fallback</span>'
    cost = f"${billed(rec):.2f}"
    if rec.status is JobStatus.FAILED and not billed(rec) and rec.cost:
        cost += f' <span class="muted">(price ${rec.cost:.2f}; this failure was not billed)</span>'
    params = ", ".join(f"{_e(k)}={_e(v)}" for k, v in rec.params.items())
    rows = [("asked", _e(asked)), ("used", used_html), ("params", params), ("billed", cost),
            ("generation", _e(_generation(rec))), ("manifest", _e(rec.where)), ("prediction", _e(rec.pid)),
            ("file", f'<a href="{_url(card.video)}">{_e(rec.path)}</a>' if card.video else "")]
    rows += [("earlier", f'<a href="{_url(p)}">{_e(Path(p).name)}</a>') for p in card.earlier]
    return "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows if v)


def render_card(card: Card, picked: bool = False) -> str:
    rec = card.rec
    label = LABELS[rec.status]
    slug = label.replace(" ", "-")
    if card.thumb:
        source = f'<img class="thumb" src="{_url(card.thumb)}" alt="source image {_e(rec.image)}" loading="lazy">'
    else:
        source = f'<div class="thumb nothumb" title="{_e(card.thumb_note)}">{_e(card.thumb_note or rec.image)}</div>'
    error = ""
    if rec.error and rec.status is not JobStatus.DOWNLOADED:
        error = f'<p class="error"><b>{_e(rec.error_class or "error")}</b>: {_e(rec.error)}</p>'
    mark = '<span class="badge picked">picked</span>' if picked else ""
    return (f'<article class="card" data-status="{slug}" id="job-{_e(rec.id)}">'
            f'<div class="media">{_media(card, label)}</div>'
            f'<div class="body"><header><h2><span class="take">take {card.take}</span> {_e(rec.id)}</h2>'
            f'<span class="badges">{mark}<span class="badge {slug}">{_e(label)}</span></span></header>'
            f'<div class="prompt">{source}<p>{_e(rec.prompt)}</p></div>{error}'
            f'<dl>{_details(card)}</dl></div></article>')


def render_row(cards: list[Card], pick: dict[str, Any]) -> str:
    """One manifest row: its heading (source image, manifest line, the reviewer's verdict) and its takes side by side."""
    row = cards[0].row
    status = str(pick.get("status", ""))
    verdict = f'<span class="badge {_e(status)}">{_e(status)}</span>' if status else ""
    if pick.get("note"):
        verdict += f' <span class="note">{_e(pick["note"])}</span>'
    title = f'{_e(row.image)} <span class="muted">{_e(row.where)}</span>' if row else ""
    takes = "".join(render_card(c, pick.get("take") == c.rec.key) for c in cards)
    return (f'<section class="row" data-pick="{_e(status)}"><h3>{title} {verdict}</h3>'
            f'<div class="takes">{takes}</div></section>')


def _by_row(cards: list[Card]) -> list[list[Card]]:
    groups: dict[str, list[Card]] = {}
    for card in cards:
        groups.setdefault(card.row.key if card.row else card.rec.key, []).append(card)
    return list(groups.values())


def render_page(state: State, cards: list[Card], title: str, picks: dict[str, dict[str, Any]] | None = None,
                *, unmatched: list[dict[str, Any]] | None = None) -> str:
    picks = picks or {}
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
    rows = "".join(render_row(group, picks.get(group[0].row.key, {}) if group[0].row else {})
                   for group in _by_row(cards))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{_e(title)} · batchgen report</title><style>{_CSS}</style></head><body>'
            f'<header class="top"><h1>{_e(title)}</h1><p class="when">batchgen report, '
            f'{_e(time.strftime("%Y-%m-%d %H:%M"))}</p><div class="figures">{header}</div>'
            f'<nav class="filters">{"".join(buttons)}</nav></header>'
            f'<main class="rows">{rows}{render_unmatched(unmatched or [])}</main>'
            f'<script>{_JS}</script></body></html>\n')


def render_unmatched(videos: list[dict[str, Any]]) -> str:
    """Paid videos found on the provider that no job could be matched to (kept in unmatched/)."""
    if not videos:
        return ""
    items = "".join(f'<li><a href="{_e(v["href"])}">{_e(v["prediction_id"])}</a> <span class="muted">'
                    f'{_e(v.get("model") or "")}: {_e(v.get("why") or "")}</span></li>' for v in videos)
    return (f'<section class="row unmatched"><h3>{len(videos)} paid video(s) not matched to a job '
            f'<span class="muted">(kept in unmatched/)</span></h3><ul>{items}</ul></section>')


_CSS = """
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;
background:#f3f4f6;color:#1f2937}.top{padding:20px 28px 8px;background:#fff;border-bottom:1px solid #e5e7eb}
h1{margin:0;font-size:22px}.when{margin:2px 0 14px;color:#6b7280}.figures{display:flex;flex-wrap:wrap;gap:10px}
.figure{background:#f9fafb;border:1px solid #e5e7eb;border-radius:8px;padding:8px 14px;min-width:96px}
.figure b{display:block;font-size:20px}.figure span{color:#6b7280;font-size:12px}
.filters{display:flex;flex-wrap:wrap;gap:8px;margin:16px 0 8px}.filters button{font:inherit;cursor:pointer;
border:1px solid #d1d5db;background:#fff;border-radius:999px;padding:4px 14px}
.filters button[aria-pressed=true]{background:#1f2937;color:#fff;border-color:#1f2937}
.rows{padding:12px 28px 28px}.row{margin:14px 0 22px}.row[hidden]{display:none}.row h3{margin:0 0 8px;
font-size:14px;font-weight:600;display:flex;gap:8px;align-items:center;flex-wrap:wrap}
.takes{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:18px}
.take{color:#6b7280;font-weight:500}.badges{display:flex;gap:4px}.muted{color:#6b7280;font-weight:400}
.badge.picked{background:#dbeafe;color:#1e40af}.badge.redo{background:#ede9fe;color:#5b21b6}
.badge.rejected{background:#f3f4f6;color:#6b7280;text-decoration:line-through}.note{font-weight:400;
color:#5b21b6}
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
    document.querySelectorAll('.row').forEach(function (r) {
      r.hidden = !r.querySelector('.card:not([hidden])');
    });
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
