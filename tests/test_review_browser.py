"""The review page in real headless Chromium (selenium + Debian's chromium and chromium-driver): a batch of
3 rows x 2 takes is picked with the keyboard, a row is marked for redo with a note, the page is reloaded and
shows the picks, and ``batchgen export`` then delivers exactly the picked takes with their index."""

from __future__ import annotations

import importlib.util
import json
import tempfile
from pathlib import Path

import pytest
from runner_helpers import make_images, run_cli, write_manifest
from test_review import build_takes_batch

from batchgen.cli import main
from batchgen.review import ReviewThread

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "screenshot_review.py"
_spec = importlib.util.spec_from_file_location("screenshot_review", _SCRIPT)
shots = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shots)

pytestmark = pytest.mark.browser


@pytest.fixture
def browser():
    reason = shots.missing()
    if reason:
        pytest.skip(f"no headless browser to drive: {reason}")
    with tempfile.TemporaryDirectory(prefix="batchgen-chromium-") as profile:
        driver = shots.start_chromium(profile)
        try:
            yield driver
        finally:
            driver.quit()


def _rows(driver) -> list[dict]:
    return driver.execute_script("""
        return Array.from(document.querySelectorAll('section.row')).map(function (s) {
          return {verdict: s.dataset.verdict, hidden: s.hidden, current: s.classList.contains('current'),
                  note: s.querySelector('.note').textContent,
                  picked: Array.from(s.querySelectorAll('.take')).map(function (t) { return t.classList.contains('picked'); }),
                  posters: Array.from(s.querySelectorAll('video')).map(function (v) { return v.poster; })};
        });""")


def _posters_load(driver) -> list[int]:
    return driver.execute_async_script("""
        var done = arguments[arguments.length - 1];
        Promise.all(Array.from(document.querySelectorAll('video')).map(function (v) {
          return fetch(v.poster).then(function (r) { return r.status; });
        })).then(done);""")


def test_pick_with_the_keyboard_reload_and_export(browser, make_sim, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state = build_takes_batch(make_sim, tmp_path)
    with ReviewThread(state) as review:
        browser.get(review.url)
        shots.wait_ready(browser)
        rows = _rows(browser)
        assert [r["verdict"] for r in rows] == ["unreviewed"] * 3 and rows[0]["current"]
        assert all(len(r["posters"]) == 2 and all("/files/.report/poster-" in p for p in r["posters"]) for r in rows)
        assert _posters_load(browser) == [200] * 6
        shots.type_keys(browser, "2\ue0151jrslower camera, keep the label\n")   # \ue015: the down arrow
        assert browser.execute_script("return document.body.dataset.saved") == "4"
        browser.refresh()
        shots.wait_ready(browser)
        rows = _rows(browser)
        assert [r["verdict"] for r in rows] == ["picked", "picked", "redo"]
        assert [r["picked"] for r in rows] == [[False, True], [True, False], [False, False]]
        assert rows[2]["note"] == "note: slower camera, keep the label"
        browser.find_element("css selector", '.filters button[data-filter="redo"]').click()
        assert [r["hidden"] for r in _rows(browser)] == [True, True, False]
        counts = browser.execute_script("""var c = {}; document.querySelectorAll('[data-count]').forEach(
            function (b) { c[b.dataset.count] = b.textContent; }); return c;""")
        assert counts == {"all": "3", "unreviewed": "0", "picked": "2", "redo": "1", "rejected": "0", "failed": "0"}
        assert not browser.execute_script("return document.body.dataset.error || ''")
    picks = json.loads((state.parent / "picks.json").read_text())["rows"]
    assert sorted(p["job"] for p in picks.values()) == ["", "shot00-4s-720p-take2", "shot01-4s-720p-take1"]
    dest = tmp_path / "delivery"
    assert main(["export", str(state), "--to", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == [
        "index.csv", "index.json", "shot00-4s-720p-take2.jpg", "shot00-4s-720p-take2.mp4",
        "shot01-4s-720p-take1.jpg", "shot01-4s-720p-take1.mp4"]
    index = json.loads((dest / "index.json").read_text())["videos"]
    assert [(v["id"], v["source_image"]) for v in index] == [
        ("shot00-4s-720p-take2", "img/shot00.png"), ("shot01-4s-720p-take1", "img/shot01.png")]


def test_a_picks_file_broken_while_the_page_is_open_is_named_on_the_page(browser, make_sim, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state = build_takes_batch(make_sim, tmp_path)
    with ReviewThread(state) as review:
        (state.parent / "picks.json").write_text("{half a file")
        browser.get(review.url)
        from selenium.webdriver.support.ui import WebDriverWait
        error = WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.body.dataset.error"))
    assert "answered 409" in error and str(state.parent / "picks.json") in error and "fix or remove" in error


def test_a_take_asked_with_another_prompt_shows_it(browser, make_sim, tmp_path, monkeypatch):
    """A redo take's prompt carries the reviewer's note; here {take} makes the two takes' prompts differ."""
    monkeypatch.chdir(tmp_path)
    make_images(tmp_path / "img", 1)
    write_manifest(tmp_path, [{"image": "img/shot00.png", "prompt": "push-in, take {take}", "duration": 4, "takes": 2}])
    assert run_cli(make_sim(), tmp_path / "batch.yaml", tmp_path / "out") == 0
    with ReviewThread(tmp_path / "out" / "state.jsonl") as review:
        browser.get(review.url)
        shots.wait_ready(browser)
        shown = browser.execute_script("""return Array.from(document.querySelectorAll('.take')).map(
            function (t) { var p = t.querySelector('.take-prompt'); return p ? p.textContent : ''; });""")
    assert shown == ["", "prompt: push-in, take 2"], "the row shows take 1's prompt; a take asked otherwise says so"


def test_screenshot_script_writes_a_picture_of_the_review_page(make_sim, tmp_path, monkeypatch):
    reason = shots.missing()
    if reason:
        pytest.skip(f"no headless browser to drive: {reason}")
    monkeypatch.chdir(tmp_path)
    state = build_takes_batch(make_sim, tmp_path)
    png = tmp_path / "review.png"
    assert shots.main([str(state), "--png", str(png), "--keys", "1jx"]) == 0
    from PIL import Image
    with Image.open(png) as image:
        assert image.width == 1280 and image.height > 600
        colours = image.convert("RGB").getcolors(1 << 20)
    assert colours is not None and len(colours) > 200, "a blank page has a handful of colours"
    verdicts = {p["status"] for p in json.loads((state.parent / "picks.json").read_text())["rows"].values()}
    assert verdicts == {"picked", "rejected"}
