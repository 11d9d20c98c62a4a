"""Links planted in the output folder (issue 15 item 7): batchgen writes nothing through them, refuses the
run or the job with a message naming the link, and never leaves a link where a video belongs."""

from __future__ import annotations

import pytest
from runner_helpers import make_images, run_cli, write_manifest

from batchgen.lifecycle import JobStatus
from batchgen.state import load

VIDEO = "shot00-4s-720p"
OUTSIDE = "not batchgen's file\n"


@pytest.fixture
def planted(tmp_path):
    """A one-job batch, its output folder, and a file outside it that a planted link points at."""
    make_images(tmp_path / "img", 1)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} turns", "duration": 4}])
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "elsewhere" / "target"
    outside.parent.mkdir()
    outside.write_text(OUTSIDE)
    return manifest, out, outside


def untouched(outside) -> bool:
    return outside.read_text() == OUTSIDE and sorted(p.name for p in outside.parent.iterdir()) == ["target"]


@pytest.mark.parametrize("name", ["batchgen.log", "state.jsonl.lock", ".batchgen-write-test"])
def test_a_link_at_a_run_file_refuses_the_run_before_any_request(sim, planted, name, capsys):
    manifest, out, outside = planted
    (out / name).symlink_to(outside)
    assert run_cli(sim, manifest, out) == 1
    err = capsys.readouterr().err
    assert f"{out / name} is a symbolic link" in err and "Remove the link, then run the same command again" in err
    assert "Traceback" not in err
    assert untouched(outside) and sim.ledger()["requests"] == {}


def test_a_link_at_a_videos_own_name_refuses_the_run_before_any_request(sim, planted, capsys):
    """Every output is resolved against the output folder before the first submit: a link there to
    elsewhere used to be found only at download, after the job was paid for."""
    manifest, out, outside = planted
    link = out / f"{VIDEO}.mp4"
    link.symlink_to(outside)
    assert run_cli(sim, manifest, out) == 2
    err = capsys.readouterr().err
    assert f"[job {VIDEO}] the output path '{VIDEO}.mp4' would leave the output folder" in err
    assert "Traceback" not in err and untouched(outside) and link.is_symlink()
    assert sim.ledger()["requests"] == {}


@pytest.mark.parametrize("name, says", [(f"{VIDEO}.mp4.part", "is a symbolic link"),
                                        (f"{VIDEO}.json.tmp", "is a symbolic link"),
                                        (f"{VIDEO}.json", "is a symbolic link")])
def test_a_link_at_a_video_file_is_refused_and_nothing_is_written_outside(sim, planted, name, says, capsys):
    manifest, out, outside = planted
    link = out / name
    link.symlink_to(outside)
    assert run_cli(sim, manifest, out) != 0
    err = capsys.readouterr().err
    assert VIDEO in err and says in err and "Traceback" not in err
    assert untouched(outside)
    assert link.is_symlink(), "the planted link is left for the user to look at, not replaced by a video"
    video = out / f"{VIDEO}.mp4"
    assert not video.exists() or not video.is_symlink() or video == link
    assert len(sim.ledger()["submissions"]) == 1
    placed = (out / f"{VIDEO}.mp4").is_file() and not (out / f"{VIDEO}.mp4").is_symlink()
    assert not placed or name.endswith(".json.tmp"), "no video is moved in before a link is refused"
    rec = next(iter(load(out / "state.jsonl").jobs.values()))
    assert rec.status is not JobStatus.DOWNLOADED
