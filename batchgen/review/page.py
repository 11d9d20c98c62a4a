"""The review page: a shell of HTML with inline CSS and JS that reads ``/api/rows`` and draws one row per
manifest row (source thumbnail, prompt, verdict, note) with its takes side by side as players.

Everything from the batch (prompts, ids, notes are user data) is put in the page with
``textContent``, never as HTML. The token travels from the page's own URL to every request it
makes. Keys: ↑/↓ or j/k move between rows, 1-9 pick that take, x rejects the row, r marks it
for redo and opens a note (Enter saves it, Esc keeps the redo without a note), u clears the verdict.

For tests and scripts the page says on <body> when it is drawn (``data-ready="1"``), how many
picks the server has confirmed (``data-saved``) and the last error (``data-error``).
"""

from __future__ import annotations

import html

FILTERS = (("all", "all"), ("unreviewed", "not reviewed"), ("picked", "picked"), ("redo", "redo"),
           ("rejected", "rejected"), ("failed", "failed"))


def render_shell(title: str, folder: str = "") -> str:
    buttons = "".join(f'<button type="button" data-filter="{key}" aria-pressed="{str(key == "all").lower()}">'
                      f'{label} <b data-count="{key}"></b></button>' for key, label in FILTERS)
    name = html.escape(title, quote=True)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{name} · batchgen review</title><style>{_CSS}</style></head>'
            f'<body data-ready="0" data-saved="0"><header class="top"><div class="title"><h1>{name}</h1>'
            f'<span class="sub">batchgen review of {html.escape(folder, quote=True)} · picks are saved as you make them'
            f'</span></div>'
            f'<nav class="filters">{buttons}</nav>'
            f'<p class="keys"><kbd>↑</kbd><kbd>↓</kbd> or <kbd>j</kbd><kbd>k</kbd> row · <kbd>1</kbd>–<kbd>9</kbd> '
            f'pick take · <kbd>x</kbd> reject · <kbd>r</kbd> redo + note · <kbd>u</kbd> undo</p>'
            f'<p class="message" role="status" id="message"></p></header>'
            f'<main id="rows"><p class="empty">loading…</p></main><script>{_JS}</script></body></html>\n')


_CSS = """
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;
background:#f3f4f6;color:#1f2937}.top{position:sticky;top:0;z-index:2;background:#fff;
border-bottom:1px solid #e5e7eb;padding:12px 24px;display:flex;flex-wrap:wrap;align-items:center;gap:8px 24px}
.title{display:flex;align-items:baseline;gap:12px}h1{margin:0;font-size:20px}.sub{color:#6b7280;font-size:12px}
.filters{display:flex;flex-wrap:wrap;gap:6px}.filters button{font:inherit;font-size:13px;cursor:pointer;
border:1px solid #d1d5db;background:#fff;border-radius:999px;padding:3px 12px}
.filters button[aria-pressed=true]{background:#1f2937;color:#fff;border-color:#1f2937}
.keys{margin:0;color:#6b7280;font-size:12px}kbd{font:11px ui-monospace,monospace;border:1px solid #d1d5db;
border-bottom-width:2px;border-radius:4px;padding:0 4px;margin:0 1px;background:#f9fafb;color:#374151}
.message{margin:0;font-size:12px;color:#991b1b;flex-basis:100%}.message:empty{display:none}
main{padding:16px 24px 40vh}.empty{color:#6b7280}
.row{display:grid;grid-template-columns:200px 1fr;gap:16px;background:#fff;border:1px solid #e5e7eb;
border-radius:10px;padding:14px;margin:0 0 14px;scroll-margin-top:110px}.row[hidden]{display:none}
.row.current{border-color:#2563eb;box-shadow:0 0 0 2px #2563eb33}
.src img,.src .nothumb{width:100%;aspect-ratio:4/3;object-fit:cover;border-radius:6px;border:1px solid #e5e7eb;
display:block;background:#f9fafb}.nothumb{font-size:11px;color:#6b7280;padding:6px;word-break:break-all}
.src .name{margin:8px 0 0;font-weight:600;word-break:break-all}.where{color:#6b7280;font-size:12px}
.take-prompt{margin:6px 0 0;color:#374151;font-size:12px;max-height:6em;overflow:auto}
.src .prompt{margin:6px 0;color:#374151;font-size:13px;max-height:7.5em;overflow:auto}
.verdict{display:inline-block;margin-top:6px;font-size:12px;border-radius:999px;padding:2px 10px;
background:#f3f4f6;color:#6b7280}.verdict.picked{background:#dcfce7;color:#166534}
.verdict.redo{background:#ede9fe;color:#5b21b6}.verdict.rejected{background:#fee2e2;color:#991b1b}
.note{margin:6px 0 0;color:#5b21b6;font-size:13px;word-break:break-word}.note:empty{display:none}
.takes{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:12px;align-content:start}
.take{border:2px solid #e5e7eb;border-radius:8px;overflow:hidden;background:#fff;position:relative}
.take.picked{border-color:#16a34a;box-shadow:0 0 0 2px #16a34a33}.take.dim{opacity:.55}
.take video,.take .novideo{display:block;width:100%;aspect-ratio:16/9;background:#111827;object-fit:contain}
.novideo{color:#9ca3af;display:flex!important;align-items:center;justify-content:center;padding:12px;
text-align:center;font-size:13px}.cap{padding:8px 10px}.cap header{display:flex;align-items:center;gap:6px}
.cap h3{margin:0;font-size:13px;flex:1;min-width:0}.cap h3 small{display:block;font-weight:400;color:#6b7280;
font-size:11px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}.badge{font-size:11px;border-radius:999px;
padding:1px 8px;background:#e5e7eb;white-space:nowrap}.badge.done{background:#d1fae5;color:#065f46}
.badge.failed{background:#fee2e2;color:#991b1b}.badge.chosen{background:#16a34a;color:#fff}
.cap dl{display:grid;grid-template-columns:auto 1fr;gap:1px 10px;margin:6px 0 0;font-size:12px}
.cap dt{color:#6b7280}.cap dd{margin:0;word-break:break-all}.warn{color:#92400e}.error{color:#991b1b;
font-size:12px;margin:6px 0 0;word-break:break-word}.notebox{grid-column:1/-1;display:flex;gap:8px}
.notebox[hidden]{display:none}.notebox input{flex:1;font:inherit;padding:6px 10px;border:1px solid #7c3aed;
border-radius:6px}.notebox span{color:#6b7280;font-size:12px;align-self:center}
"""

_JS = r"""
(function () {
  var q = '?token=' + encodeURIComponent(new URLSearchParams(location.search).get('token') || '');
  var rows = [], views = [], current = 0, filter = 'all', saved = 0;
  var main = document.getElementById('rows'), message = document.getElementById('message');
  function file(rel) { return '/files/' + rel.split('/').map(encodeURIComponent).join('/') + q; }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function say(text) { message.textContent = text; document.body.dataset.error = text; }
  function verdict(row) { return row.pick ? row.pick.status : 'unreviewed'; }
  function matches(row) {
    if (filter === 'all') return true;
    if (filter === 'failed') return row.failed;
    return verdict(row) === filter;
  }
  function money(x) { return '$' + Number(x).toFixed(2); }
  function details(t) {
    var dl = el('dl'), used = t.used || (t.status === 'failed' ? 'none: the job failed' : 'no answer yet');
    [['asked', t.asked], ['used', used + (t.used && t.used !== t.asked ? ' (fallback)' : '')],
     ['billed', money(t.billed) + (t.status === 'failed' && t.billed === 0 && t.price ? ' (failed, not billed)' : '') +
                (t.seconds === null ? '' : ' · generated in ' + t.seconds.toFixed(1) + ' s')],
     ['params', Object.keys(t.params).map(function (k) { return k + '=' + t.params[k]; }).join(', ')]
    ].forEach(function (p) {
      if (!p[1]) return;
      dl.appendChild(el('dt', '', p[0]));
      dl.appendChild(el('dd', p[0] === 'used' && t.used && t.used !== t.asked ? 'warn' : '', p[1]));
    });
    return dl;
  }
  function takeView(row, t, n) {
    var box = el('article', 'take'), cap = el('div', 'cap'), head = el('header');
    box.dataset.key = t.key;
    if (t.video) {
      var v = el('video');
      v.preload = 'none'; v.controls = true;
      if (t.poster) v.poster = file(t.poster);
      v.src = file(t.video);
      box.appendChild(v);
    } else {
      box.appendChild(el('div', 'novideo', t.note || (t.status === 'failed' ? 'no video: the job failed' : 'no video (' + t.status + ')')));
    }
    var k = el('kbd', '', n <= 9 ? String(n) : '');
    head.appendChild(k);
    var title = el('h3', '', 'take ' + t.take);
    title.appendChild(el('small', '', t.id));
    head.appendChild(title);
    head.appendChild(el('span', 'badge ' + t.status.replace(/ /g, '-'), t.status));
    head.appendChild(el('span', 'badge chosen', 'picked'));
    cap.appendChild(head);
    cap.appendChild(details(t));
    // A redo take carries the reviewer's note in its prompt: show what this take was asked for.
    if (t.prompt !== row.prompt) cap.appendChild(el('p', 'take-prompt', 'prompt: ' + t.prompt));
    if (t.error) cap.appendChild(el('p', 'error', t.error));
    box.appendChild(cap);
    box.addEventListener('click', function (e) {
      if (e.target.tagName === 'VIDEO') return;
      if (t.pickable) send(row, 'picked', t.key, '');
    });
    return box;
  }
  function rowView(row, i) {
    var sec = el('section', 'row'), src = el('aside', 'src'), takes = el('div', 'takes');
    sec.dataset.key = row.key;
    if (row.thumb) { var img = el('img'); img.src = file(row.thumb); img.alt = 'source image ' + row.image; src.appendChild(img); }
    else src.appendChild(el('div', 'nothumb', row.thumb_note || row.image));
    src.appendChild(el('p', 'name', row.image));
    src.appendChild(el('div', 'where', row.where));
    src.appendChild(el('p', 'prompt', row.prompt));
    src.appendChild(el('span', 'verdict'));
    src.appendChild(el('p', 'note'));
    row.takes.forEach(function (t, n) { takes.appendChild(takeView(row, t, n + 1)); });
    var form = el('form', 'notebox'), input = el('input');
    input.placeholder = 'what to change for the redo (e.g. slower camera); Enter saves, Esc skips';
    input.setAttribute('aria-label', 'redo note');
    form.hidden = true;
    form.appendChild(input);
    form.appendChild(el('span', '', 'redo note'));
    form.addEventListener('submit', function (e) { e.preventDefault(); form.hidden = true; send(row, 'redo', '', input.value); });
    input.addEventListener('keydown', function (e) {
      e.stopPropagation();
      if (e.key === 'Escape') { form.hidden = true; sec.focus(); }
    });
    sec.tabIndex = -1;
    sec.addEventListener('click', function () { current = i; paintAll(); });
    sec.appendChild(src); sec.appendChild(takes); sec.appendChild(form);
    return sec;
  }
  function paint(i) {
    var row = rows[i], sec = views[i], pick = row.pick, v = verdict(row);
    sec.hidden = !matches(row);
    sec.classList.toggle('current', i === current);
    sec.dataset.verdict = v;
    var badge = sec.querySelector('.verdict');
    badge.className = 'verdict ' + v;
    badge.textContent = v === 'unreviewed' ? 'not reviewed' : v;
    sec.querySelector('.note').textContent = pick && pick.note ? 'note: ' + pick.note : '';
    sec.querySelectorAll('.take').forEach(function (box) {
      var chosen = !!(pick && pick.status === 'picked' && pick.take === box.dataset.key);
      box.classList.toggle('picked', chosen);
      box.classList.toggle('dim', !!(pick && pick.status === 'picked') && !chosen);
      box.querySelector('.badge.chosen').hidden = !chosen;
    });
  }
  function counts() {
    var c = {all: rows.length, unreviewed: 0, picked: 0, redo: 0, rejected: 0, failed: 0};
    rows.forEach(function (r) { c[verdict(r)] += 1; if (r.failed) c.failed += 1; });
    document.querySelectorAll('[data-count]').forEach(function (b) { b.textContent = c[b.dataset.count]; });
  }
  function paintAll() { rows.forEach(function (_, i) { paint(i); }); counts(); }
  function visible() { return rows.map(function (_, i) { return i; }).filter(function (i) { return matches(rows[i]); }); }
  function move(delta) {
    var shown = visible();
    if (!shown.length) return;
    var at = shown.indexOf(current);
    current = shown[at < 0 ? 0 : Math.min(shown.length - 1, Math.max(0, at + delta))];
    paintAll();
    views[current].scrollIntoView({block: 'nearest'});
  }
  function send(row, status, take, note) {
    fetch('/api/pick' + q, {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({row: row.key, status: status, take: take, note: note})})
      .then(function (r) { return r.ok ? r.json() : r.text().then(function (t) { throw new Error(t); }); })
      .then(function (d) {
        row.pick = d.pick; paintAll(); say('');
        saved += 1; document.body.dataset.saved = saved;
      })
      .catch(function (e) { say('not saved: ' + e.message); });
  }
  function onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey || !rows.length) return;
    var row = rows[current];
    if (e.key === 'ArrowDown' || e.key === 'j') move(1);
    else if (e.key === 'ArrowUp' || e.key === 'k') move(-1);
    else if (/^[1-9]$/.test(e.key)) {
      var t = row.takes[Number(e.key) - 1];
      if (!t) return say('row has no take ' + e.key);
      if (!t.pickable) return say('take ' + e.key + ' has no video to pick (' + t.status + ')');
      send(row, 'picked', t.key, '');
    } else if (e.key === 'x') send(row, 'rejected', '', '');
    else if (e.key === 'u') send(row, '', '', '');
    else if (e.key === 'r') {
      var form = views[current].querySelector('.notebox'), input = form.querySelector('input');
      send(row, 'redo', '', row.pick && row.pick.status === 'redo' ? row.pick.note : '');
      input.value = row.pick && row.pick.note ? row.pick.note : '';
      form.hidden = false; input.focus();
    } else return;
    e.preventDefault();
  }
  document.querySelectorAll('.filters button').forEach(function (b) {
    b.addEventListener('click', function () {
      filter = b.dataset.filter;
      document.querySelectorAll('.filters button').forEach(function (o) { o.setAttribute('aria-pressed', String(o === b)); });
      if (!matches(rows[current] || {})) { var shown = visible(); if (shown.length) current = shown[0]; }
      paintAll(); b.blur();
    });
  });
  fetch('/api/rows' + q).then(function (r) {
    if (!r.ok) return r.text().then(function (t) { throw new Error('the server answered ' + r.status + ': ' + t); });
    return r.json();
  }).then(function (data) {
    rows = data.rows;
    main.textContent = '';
    if (!rows.length) main.appendChild(el('p', 'empty', 'this batch has no jobs yet'));
    views = rows.map(function (row, i) { var v = rowView(row, i); main.appendChild(v); return v; });
    paintAll();
    document.addEventListener('keydown', onKey);
    document.body.dataset.ready = '1';
  }).catch(function (e) { say('cannot load the batch: ' + e.message); });
})();
"""
