"""picks.py: rows of takes from a state, picks.json written whole (versioned, atomic), and redo_rows for --redo."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from batchgen.errors import StateError
from batchgen.lifecycle import JobStatus
from batchgen.picks import (group_rows, load_picks, make_pick, picked_records, redo_rows, row_key, save_picks)
from batchgen.state import StateLog, load


def _state(out: Path, jobs: list[tuple[str, str, str, str, str]]) -> Path:
    """Jobs as (key, id, where, image, final event) written through the real state log."""
    out.mkdir(parents=True, exist_ok=True)
    with StateLog(out / "state.jsonl") as log:
        log.open()
        for key, job_id, where, image, last in jobs:
            log.append({"ev": "job", "key": key, "id": job_id, "output": f"{job_id}.mp4", "model": "m",
                        "params": {"duration": 4}, "prompt": "p", "image": image, "where": where, "cost": 1.2})
            # A legal history: the state log refuses events that cannot follow each other.
            log.append({"ev": "submitting", "key": key, "attempt": 1})
            log.append({"ev": "submitted", "key": key, "pid": f"p-{key}"})
            if last == "downloaded":
                log.append({"ev": "completed", "key": key, "pid": f"p-{key}", "outputs": ["https://example.com/v.mp4"]})
                log.append({"ev": "downloaded", "key": key, "path": f"{job_id}.mp4", "bytes": 1, "sha256": "0"})
            elif last == "failed":
                log.append({"ev": "failed", "key": key, "class": "task", "message": "no", "cost": 0.0})
    return out / "state.jsonl"


@pytest.fixture
def state(tmp_path):
    return load(_state(tmp_path / "out", [
        ("k1", "mug-take1", "b.yaml:2", "img/mug.png", "downloaded"),
        ("k2", "mug-take2", "b.yaml:2", "img/mug.png", "downloaded"),
        ("k3", "cup-take1", "b.yaml:2", "img/cup.png", "downloaded"),   # same row (a glob), another image
        ("k4", "hat", "b.yaml:9", "img/hat.png", "failed"),
        ("k5", "mug-take1", "b.yaml:2", "img/mug.png", "downloaded"),   # mug-take1 edited: it replaces k1
        ("k6", "old", "", "img/old.png", "downloaded"),                  # an old state without where
    ]))


def test_rows_group_takes_by_manifest_line_and_image_keeping_the_newest_version(state):
    rows = group_rows(state)
    assert [(r.key, [t.key for t in r.takes]) for r in rows] == [
        ("b.yaml:2#img/mug.png", ["k5", "k2"]), ("b.yaml:2#img/cup.png", ["k3"]),
        ("b.yaml:9#img/hat.png", ["k4"]), ("img/old.png", ["k6"])]
    mug = rows[0]
    assert [mug.take_number(t) for t in mug.takes] == [1, 2], "the id's -takeN wins over the position"
    assert rows[2].take_number(rows[2].takes[0]) == 1
    assert row_key(state.jobs["k6"]) == "img/old.png"


def test_picks_round_trip_with_a_version_and_leave_no_temporary_file(state, tmp_path):
    out = tmp_path / "out"
    assert load_picks(out) == {}
    rows = group_rows(state)
    picks = {rows[0].key: make_pick(rows[0], "picked", "k2", now=0),
             rows[2].key: make_pick(rows[2], "redo", note=" slower camera ", now=0)}
    save_picks(out, picks)
    data = json.loads((out / "picks.json").read_text())
    assert data == {"version": 1, "rows": picks}
    assert picks[rows[0].key] == {"status": "picked", "take": "k2", "job": "mug-take2", "note": "",
                                  "time": "1970-01-01T00:00:00Z"}
    assert picks[rows[2].key]["note"] == "slower camera"
    assert load_picks(out) == picks
    assert sorted(p.name for p in out.iterdir() if "picks" in p.name) == ["picks.json"]


def test_a_failed_save_leaves_the_previous_picks_whole(state, tmp_path, monkeypatch):
    out = tmp_path / "out"
    rows = group_rows(state)
    first = {rows[0].key: make_pick(rows[0], "rejected")}
    save_picks(out, first)

    def crash(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        save_picks(out, {**first, rows[1].key: make_pick(rows[1], "picked", "k3")})
    monkeypatch.undo()
    assert load_picks(out) == first
    assert sorted(p.name for p in out.iterdir() if "picks" in p.name) == ["picks.json"], "no temp file left behind"


@pytest.mark.parametrize("text, words", [
    ("{not json", "cannot read the picks"),
    ('{"version": 2, "rows": {}}', "not a picks file of version 1"),
    ('{"rows": {}}', "not a picks file of version 1"),
    ('[1, 2]', "not a picks file of version 1"),
    ('{"version": 1, "rows": {"b.yaml:2#img/mug.png": "picked"}}', "row 'b.yaml:2#img/mug.png' is not a pick"),
    ('{"version": 1, "rows": {"b.yaml:2#img/mug.png": null}}', "is not a pick"),
    ('{"version": 1, "rows": {"b.yaml:2#img/mug.png": {"status": "loved"}}}', "is not a pick"),
    ('{"version": 1, "rows": {"b.yaml:2#img/mug.png": {"status": "picked", "take": 3}}}', "is not a pick"),
])
def test_an_unreadable_or_other_version_picks_file_is_a_state_error_naming_it(tmp_path, text, words):
    (tmp_path / "picks.json").write_text(text)
    with pytest.raises(StateError, match=words) as caught:
        load_picks(tmp_path)
    assert str(tmp_path / "picks.json") in str(caught.value)


def test_a_pick_must_name_a_downloaded_take_of_its_row(state):
    rows = group_rows(state)
    with pytest.raises(ValueError, match="not a downloaded take"):
        make_pick(rows[2], "picked", "k4")          # failed: nothing to deliver
    with pytest.raises(ValueError, match="not a downloaded take"):
        make_pick(rows[0], "picked", "k3")          # another row's take
    with pytest.raises(ValueError, match="not a downloaded take"):
        make_pick(rows[0], "picked", "k1")          # the superseded version
    with pytest.raises(ValueError, match="status must be one of"):
        make_pick(rows[0], "maybe")
    with pytest.raises(ValueError, match="only a pick names a take"):
        make_pick(rows[0], "rejected", "k2")


def test_redo_rows_and_picked_records_read_only_their_arguments(state):
    rows = group_rows(state)
    picks = {rows[0].key: make_pick(rows[0], "redo", note="slower"), rows[1].key: make_pick(rows[1], "picked", "k3"),
             rows[2].key: make_pick(rows[2], "redo"), "gone.yaml:1#x.png": {"status": "redo", "note": "?"},
             rows[3].key: {"status": "picked", "take": "k-not-in-state"}}
    redo = redo_rows(picks, state)
    assert [(r.row.key, [t.key for t in r.row.takes], r.note) for r in redo] == [
        ("b.yaml:2#img/mug.png", ["k5", "k2"], "slower"), ("b.yaml:9#img/hat.png", ["k4"], "")]
    assert [(row.key, rec.key) for row, rec in picked_records(picks, state)] == [("b.yaml:2#img/cup.png", "k3")]
    assert state.jobs["k4"].status is JobStatus.FAILED


def test_a_row_and_its_picks_survive_the_manifest_being_named_another_way(tmp_path):
    """``run /abs/b.yaml`` then ``run b.yaml`` from its folder: one row, not two, and the earlier picks still apply."""
    out = tmp_path / "out"
    state = load(_state(out, [
        ("k1", "mug-take1", "/home/me/shots/b.yaml:2", "img/mug.png", "downloaded"),
        ("k2", "mug-take2", "/home/me/shots/b.yaml:2", "img/mug.png", "downloaded"),
        ("k3", "mug-take3", "b.yaml:2", "img/mug.png", "downloaded"),       # a --redo take, run as 'b.yaml'
    ]))
    with StateLog(out / "state.jsonl") as log:                         # re-recorded by a later plain run
        log.open()
        log.append({"ev": "job", "key": "k1", "id": "mug-take1", "output": "mug-take1.mp4", "model": "m",
                    "params": {"duration": 4}, "prompt": "p", "image": "img/mug.png", "where": "./b.yaml:2",
                    "cost": 1.2})
    state = load(out / "state.jsonl")
    rows = group_rows(state)
    assert [(r.key, [t.key for t in r.takes]) for r in rows] == [("b.yaml:2#img/mug.png", ["k1", "k2", "k3"])]
    (out / "picks.json").write_text(json.dumps({"version": 1, "rows": {
        "/home/me/shots/b.yaml:2#img/mug.png": {"status": "picked", "take": "k2", "job": "mug-take2", "note": ""}}}))
    assert [(row.key, rec.key) for row, rec in picked_records(load_picks(out), state)] == [
        ("b.yaml:2#img/mug.png", "k2")], "a picks file written with the whole path still applies"
