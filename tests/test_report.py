"""``batchgen report``: a real batch (three videos, one failed job) rendered, escaped, linked and opened in Chromium."""

from __future__ import annotations

import importlib.util
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image
from conftest import run
from runner_helpers import make_images, run_cli, write_manifest

from batchgen.cli import main
from batchgen.errors import OutputPathError
from batchgen.report import write_report
from batchgen.simulator import Faults
from batchgen.state import StateLog

EVIL = 'A <script>alert("x")</script> & "quoted" {stem}'
_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "screenshot_report.py"
_spec = importlib.util.spec_from_file_location("screenshot_report", _SCRIPT)
shots = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shots)


@pytest.fixture
def batch(make_sim, tmp_path, monkeypatch):
    """Three downloaded jobs, then a fourth that the provider fails, in one output folder."""
    monkeypatch.chdir(tmp_path)
    make_images(tmp_path / "img", 4)
    rows = [{"image": "img/shot0[0-2].png", "prompt": EVIL, "duration": 4}]
    manifest = write_manifest(tmp_path, rows)
    out = tmp_path / "out"
    assert run_cli(make_sim(), Path("batch.yaml"), out) == 0
    write_manifest(tmp_path, rows + [{"image": "img/shot03.png", "prompt": "doomed {stem}", "duration": 4}])
    assert run_cli(make_sim(faults=Faults(rate_fail=1.0)), Path("batch.yaml"), out) == 1
    return manifest, out


class Cards(HTMLParser):
    """Collects cards (status and id), media sources and every URL the page refers to."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[tuple[str, str]] = []
        self.urls: list[str] = []
        self.videos: list[dict[str, str]] = []
        self.scripts = 0
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "article":
            self.cards.append((a["data-status"], a["id"]))
        if tag == "video":
            self.videos.append(a)
        if tag == "script":
            self.scripts += 1
        for name in ("src", "href", "poster"):
            if a.get(name):
                self.urls.append(a[name])

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: Path) -> Cards:
    parser = Cards()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def test_page_has_a_card_per_job_in_manifest_order_escaped_and_linked_relatively(batch):
    _, out = batch
    assert main(["report", str(out / "state.jsonl")]) == 0
    page = out / "report.html"
    parsed = _parse(page)
    assert parsed.cards == [("done", "job-shot00-4s-720p"), ("done", "job-shot01-4s-720p"),
                            ("done", "job-shot02-4s-720p"), ("failed", "job-shot03-4s-720p")]
    html = page.read_text(encoding="utf-8")
    assert parsed.scripts == 1, "the prompt's <script> must arrive as text, not as an element"
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quoted&quot; shot00" in html
    assert 'A <script>alert("x")</script> & "quoted" shot01' in "".join(parsed.text)
    assert "<link" not in html and not any("://" in u for u in parsed.urls), "self-contained: no outside resource"
    for url in parsed.urls:
        assert (out / url).is_file(), url
    assert all(v.get("preload") == "none" and "controls" in v for v in parsed.videos)
    assert len(parsed.videos) == 3 and all(v["poster"].startswith(".report/poster-") for v in parsed.videos)
    assert 'src="shot02-4s-720p.mp4" type="video/mp4"' in html
    assert re.search(r"<b>task</b>: [^<]+", html), "the failed job shows its error"
    assert re.search(r'data-filter="done"[^>]*>done <b>3</b>', html)
    assert re.search(r'data-filter="failed"[^>]*>failed <b>1</b>', html)
    figures = {name: value for value, name in re.findall(r'<div class="figure"><b>([^<]+)</b><span>([^<]+)</span>', html)}
    assert figures.items() >= {"jobs": "4", "done": "3", "failed": "1", "unknown": "0",
                               "minutes of video": "0.2", "dollars": "$3.60"}.items()
    assert re.fullmatch(r"0m 0\ds", figures["wall time"]), figures
    thumbs = sorted((out / ".report").glob("src-*.jpg"))
    assert len(thumbs) == 4
    for thumb in thumbs:
        with Image.open(thumb) as image:
            assert image.format == "JPEG" and max(image.size) <= 320
    posters = sorted((out / ".report").glob("poster-*.jpg"))
    assert len(posters) == 3
    with Image.open(posters[0]) as image:
        assert image.format == "JPEG" and image.width == 480


def test_pictures_are_made_once_and_again_only_when_their_source_changes(batch, tmp_path):
    _, out = batch
    first = write_report(out / "state.jsonl")
    assert (first.made, first.reused, first.problems) == (7, 0, [])
    again = write_report(out / "state.jsonl")
    assert (again.made, again.reused) == (0, 7)
    video = out / "shot01-4s-720p.mp4"
    poster = next(p for p in (out / ".report").glob("poster-*.jpg")
                  if f'poster=".report/{p.name}"><source src="shot01' in first.path.read_text())
    later = poster.stat().st_mtime + 5
    os.utime(video, (later, later))
    third = write_report(out / "state.jsonl")
    assert (third.made, third.reused) == (1, 6) and poster.stat().st_mtime >= later - 5


def test_page_elsewhere_links_back_relatively_and_lost_sources_are_named(batch, tmp_path, monkeypatch):
    _, out = batch
    elsewhere = tmp_path / "share" / "deep" / "batch.html"
    monkeypatch.chdir(tmp_path / "img")  # the manifest's folder is now found through the output folder's parent
    result = write_report(out / "state.jsonl", elsewhere)
    parsed = _parse(elsewhere)
    assert result.path == elsewhere and parsed.urls
    for url in parsed.urls:
        assert url.startswith("../../out/") and (elsewhere.parent / url).resolve().is_file(), url
    (tmp_path / "img" / "shot00.png").unlink()
    for thumb in (out / ".report").glob("src-*.jpg"):
        thumb.unlink()
    write_report(out / "state.jsonl")
    html = (out / "report.html").read_text()
    assert "source image img/shot00.png not found next to batch.yaml:" in html


def test_an_edited_job_keeps_one_card_linking_its_earlier_video(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.prev-old.mp4").write_bytes(b"not really a video")
    with StateLog(out / "state.jsonl") as log:
        log.open()
        for key, path in (("old", "a.prev-old.mp4"), ("new", "")):
            log.append({"ev": "job", "key": key, "id": "a", "output": "a.mp4", "model": "m", "params": {},
                        "prompt": key, "image": "https://example.com/a.png", "where": "m.yaml:3", "cost": 1.0})
            if path:
                for event in ({"ev": "submitting", "key": key, "attempt": 1}, {"ev": "submitted", "key": key, "pid": "p"},
                              {"ev": "completed", "key": key, "pid": "p", "outputs": ["https://example.com/v.mp4"]}):
                    log.append(event)
                log.append({"ev": "downloaded", "key": key, "path": path, "bytes": 18, "sha256": "0" * 64})
    result = write_report(out / "state.jsonl")
    html = result.path.read_text()
    assert result.cards == 1 and html.count("<article") == 1
    assert '<a href="a.prev-old.mp4">a.prev-old.mp4</a>' in html and ">new</p>" in html
    assert "https://example.com/a.png" in html and "<img" not in html, "a URL source is named, not fetched"


def _chromium_or_skip() -> None:
    if shots.find_chromium() is None:
        pytest.skip("chromium not installed: headless checks need Debian's chromium package (apt-get install chromium)")


def test_chromium_renders_every_card_with_its_poster_and_filters_by_status(batch):
    _chromium_or_skip()
    _, out = batch
    page = write_report(out / "state.jsonl").path
    dom = shots.dump_dom(page)
    body = re.search(r"<body([^>]*)>", dom).group(1)
    assert 'data-ready="1"' in body, body
    assert 'data-posters="3"' in body and 'data-posters-loaded="3"' in body, body
    assert 'data-thumbs="4"' in body and 'data-thumbs-loaded="4"' in body, body
    assert dom.count('<article class="card"') == 4 and "<video" in dom
    filtered = shots.dump_dom(page, fragment="failed")
    assert len(re.findall(r'<article class="card" data-status="done"[^>]*hidden', filtered)) == 3
    assert re.search(r'<article class="card" data-status="failed" id="[^"]+">', filtered)
    assert re.search(r'data-filter="failed" aria-pressed="true"', filtered)


def test_screenshot_script_writes_a_picture_of_the_page(batch, tmp_path):
    _chromium_or_skip()
    _, out = batch
    png = tmp_path / "report.png"
    assert shots.main([str(out / "state.jsonl"), "--png", str(png)]) == 0
    with Image.open(png) as image:
        assert image.size == (1280, 900)
        colours = image.convert("RGB").getcolors(1 << 20)
    assert colours is not None and len(colours) > 200, "a blank page has a handful of colours"


def _card(html: str, job_id: str) -> str:
    start = html.index(f'id="job-{job_id}"')
    return html[start:html.index("</article>", start)]


def test_a_failed_unbilled_card_shows_nothing_billed_and_every_card_names_the_model_asked_and_used(batch):
    _, out = batch
    html = write_report(out / "state.jsonl").path.read_text()
    failed = _card(html, "shot03-4s-720p")
    assert "<dt>billed</dt><dd>$0.00</dd>" in failed
    assert "<dt>asked</dt><dd>openai/sora-2/image-to-video-pro</dd>" in failed
    done = _card(html, "shot00-4s-720p")
    assert "<dt>billed</dt><dd>$1.20</dd>" in done
    assert ("<dt>asked</dt><dd>openai/sora-2/image-to-video-pro</dd>"
            "<dt>used</dt><dd>openai/sora-2/image-to-video-pro</dd>") in done


def test_a_fallback_card_shows_the_model_asked_beside_the_one_used(make_sim, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_images(tmp_path / "img", 1)
    write_manifest(tmp_path, [{"image": "img/shot00.png", "prompt": "p", "duration": 4}])
    sim = make_sim(faults=Faults(rate_fallback=1.0))
    assert run_cli(sim, Path("batch.yaml"), tmp_path / "out") == 0
    html = write_report(tmp_path / "out" / "state.jsonl").path.read_text()
    card = _card(html, "shot00-4s-720p")
    asked = re.search(r"<dt>asked</dt><dd>([^<]+)</dd>", card).group(1)
    used = re.search(r'<dt>used</dt><dd>([^<]+) <span class="warn">fallback</span></dd>', card).group(1)
    assert asked == "openai/sora-2/image-to-video-pro" and used != asked


def test_a_rows_takes_sit_side_by_side_and_the_picks_show_read_only(make_sim, tmp_path, monkeypatch):
    from test_review import build_takes_batch

    from batchgen.picks import group_rows, make_pick, save_picks
    from batchgen.state import load
    monkeypatch.chdir(tmp_path)
    state = build_takes_batch(make_sim, tmp_path)
    rows = group_rows(load(state))
    save_picks(state.parent, {rows[0].key: make_pick(rows[0], "picked", rows[0].takes[1].key),
                              rows[2].key: make_pick(rows[2], "redo", note="slower <camera>")})
    html = write_report(state).path.read_text()
    sections = re.findall(r'<section class="row" data-pick="(\w*)"><h3>(.*?)</h3><div class="takes">(.*?)</div></section>',
                          html)
    assert [pick for pick, _, _ in sections] == ["picked", "", "redo"]
    assert [re.findall(r'id="job-([^"]+)"', takes) for _, _, takes in sections] == [
        [f"shot0{i}-4s-720p-take1", f"shot0{i}-4s-720p-take2"] for i in range(3)]
    assert [t.count('class="badge picked"') for _, _, t in sections] == [1, 0, 0]
    assert 'class="badge picked">picked</span>' in _card(html, "shot00-4s-720p-take2")
    assert "img/shot02.png" in sections[2][1] and "slower &lt;camera&gt;" in sections[2][1]
    assert "<script" not in html.split("<script>")[0] and html.count("<button") == 2, "read-only: no pick controls"


def _mug_state(out: Path, *events: dict) -> Path:
    """A state with one $4.80 job (a remote image, so no pictures), then ``events``."""
    out.mkdir()
    with StateLog(out / "state.jsonl") as log:
        log.open()
        log.append({"ev": "job", "key": "k", "id": "mug", "output": "mug.mp4", "model": "openai/sora-2/image-to-video-pro",
                    "params": {"duration": 12}, "prompt": "p", "image": "https://example.com/mug.png",
                    "where": "m.yaml:3", "cost": 4.8})
        for event in events:
            log.append(event)
    return out / "state.jsonl"


def test_a_job_failed_before_any_task_was_billed_shows_zero_billed_beside_its_price(tmp_path):
    """The state a run leaves after submits that never reached a billed task (503s): the price stays recorded."""
    state = _mug_state(tmp_path / "out", {"ev": "failed", "key": "k", "class": "unavailable",
                                           "message": "503 after 8 tries"})
    html = write_report(state).path.read_text()
    card = _card(html, "mug")
    assert "<dt>billed</dt><dd>$0.00 <span" in card and "(price $4.80; this failure was not billed)" in card
    assert "$4.80</dd>" not in card
    assert '<dt>used</dt><dd><span class="muted">no answer yet</span></dd>' in card




@pytest.mark.parametrize("failure_cost, shown", [(4.8, "<dt>billed</dt><dd>$4.80</dd>"),
                                                 (0.0, "<dt>billed</dt><dd>$0.00</dd>")])
def test_a_failed_tasks_billed_amount_is_what_its_own_record_says(tmp_path, failure_cost, shown):
    """Not one provider's policy for every job: a provider that bills failures recorded the price."""
    from test_review import _served

    state = _mug_state(tmp_path / "out",
                       {"ev": "submitting", "key": "k", "attempt": 1, "model": "openai/sora-2/image-to-video-pro",
                        "cost": 4.8},
                       {"ev": "submitted", "key": "k", "pid": "p-1"},
                       {"ev": "failed", "key": "k", "class": "task", "message": "moderated", "cost": failure_cost})
    assert shown in _card(write_report(state).path.read_text(), "mug")

    async def rows(review, base, session):
        return (await (await session.get(f"{base}/api/rows?token={review.token}")).json())["rows"]
    assert run(_served(state, rows))[0]["takes"][0]["billed"] == failure_cost


def test_a_link_planted_for_the_report_pictures_is_never_written_through(batch, tmp_path):
    """Issue 15 item 7: <out>/.report/ and the files in it are created without following links."""
    _, out = batch
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / ".report").symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutputPathError, match=r"\.report is a symbolic link"):
        write_report(out / "state.jsonl")
    assert list(outside.iterdir()) == []
    (out / ".report").unlink()
    write_report(out / "state.jsonl")
    poster = next((out / ".report").glob("poster-*.jpg"))
    victim = outside / "victim.txt"
    victim.write_text("untouched")
    poster.unlink()
    (poster.parent / (poster.name + ".part")).symlink_to(victim)
    result = write_report(out / "state.jsonl")
    assert victim.read_text() == "untouched"
    assert any("symbolic link" in problem for problem in result.problems)
    assert not poster.exists()
