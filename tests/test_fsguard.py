"""Files batchgen creates in its output folder refuse planted links (issue 15 item 7)."""

from __future__ import annotations

import io
import logging
import os

import pytest
from runner_helpers import make_images, run_cli, write_manifest
from test_state_disk import small_tmpfs

from batchgen import fsguard
from batchgen.download import set_aside, write_sidecar
from batchgen.errors import OutputPathError
from batchgen.progress import setup_logging


@pytest.fixture
def outside(tmp_path):
    path = tmp_path / "elsewhere.txt"
    path.write_text("keep me\n")
    return path


def test_set_aside_refuses_a_link_in_the_videos_place(tmp_path, outside):
    target = tmp_path / "out" / "clip.mp4"
    target.parent.mkdir()
    target.symlink_to(outside)
    with pytest.raises(OutputPathError, match="clip.mp4 is a symbolic link"):
        set_aside(target, "abc")
    assert target.is_symlink() and not list(target.parent.glob("*.prev-*"))


def test_set_aside_does_not_land_on_a_dangling_link(tmp_path):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"old video")
    (tmp_path / "clip.prev-abc.mp4").symlink_to(tmp_path / "nowhere")
    aside = set_aside(target, "abc")
    assert aside.name == "clip.prev-abc-2.mp4" and aside.read_bytes() == b"old video"


def test_write_sidecar_replaces_a_stale_temporary_and_refuses_a_planted_one(tmp_path, outside):
    target = tmp_path / "clip.mp4"
    (tmp_path / "clip.json.tmp").write_text("left by a killed run")
    write_sidecar(target, {"id": "a"})
    assert '"id": "a"' in (tmp_path / "clip.json").read_text() and not (tmp_path / "clip.json.tmp").exists()
    (tmp_path / "clip.json.tmp").symlink_to(outside)
    with pytest.raises(OutputPathError, match="clip.json.tmp is a symbolic link"):
        write_sidecar(target, {"id": "b"})
    assert outside.read_text() == "keep me\n"


def test_the_log_file_stays_quiet_on_a_full_disk_and_refuses_a_link(tmp_path, outside, capsys):
    with small_tmpfs() as disk:
        setup_logging(disk / "batchgen.log", 0, stream=io.StringIO())
        try:
            with open(disk / "filler", "wb", buffering=0) as fh, pytest.raises(OSError):
                while True:
                    fh.write(bytes(4096))
            for n in range(50):
                logging.getLogger("batchgen").info("line %d %s", n, "x" * 200)
        finally:
            setup_logging(None, 0, stream=io.StringIO())
    assert "Logging error" not in capsys.readouterr().err
    (tmp_path / "batchgen.log").symlink_to(outside)
    with pytest.raises(OutputPathError, match="batchgen.log is a symbolic link"):
        setup_logging(tmp_path / "batchgen.log", 0, stream=io.StringIO())
    assert outside.read_text() == "keep me\n"


def test_create_fresh_opens_a_free_name_at_once_and_refuses_any_link(tmp_path, outside, monkeypatch):
    looked: list[str] = []
    lstat = os.lstat
    monkeypatch.setattr(os, "lstat", lambda path, *a, **k: looked.append(str(path)) or lstat(path, *a, **k))
    os.close(fsguard.create_fresh(tmp_path / "new.part"))
    assert looked == [] and (tmp_path / "new.part").stat().st_size == 0, looked  # a free name: one call
    (tmp_path / "new.part").write_bytes(b"left by a killed run")
    os.close(fsguard.create_fresh(tmp_path / "new.part"))
    assert (tmp_path / "new.part").read_bytes() == b""
    for name, to in (("planted.part", outside), ("dangling.part", tmp_path / "nowhere")):
        (tmp_path / name).symlink_to(to)
        with pytest.raises(OutputPathError, match=f"{name} is a symbolic link"):
            fsguard.create_fresh(tmp_path / name)
        assert (tmp_path / name).is_symlink()
    assert outside.read_text() == "keep me\n" and not (tmp_path / "nowhere").exists()


def test_a_run_whose_output_folder_links_outside_is_refused_before_paying(sim, tmp_path, capsys):
    """A folder of the output that is a link to elsewhere used to fail each of its jobs at download,
    after the submit was paid; it is refused with file:line and job before anything is sent."""
    make_images(tmp_path / "in", 3)
    manifest = write_manifest(tmp_path, [{"image": "in/*.png", "prompt": "spin", "output": "clips/{stem}"},
                                         {"image": "in/shot00.png", "prompt": "spin", "output": "single"},
                                         {"image": "in/shot01.png", "prompt": "spin", "output": "fine/{stem}"}])
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "clips").symlink_to(elsewhere)
    (out / "single.mp4").symlink_to(elsewhere / "single.mp4")
    assert run_cli(sim, manifest, out) == 2
    err = capsys.readouterr().err
    assert "2 problems in the manifest; nothing was sent" in err
    assert (f"{manifest}:2: [job clips/shot00] the output path 'clips/shot00.mp4' would leave the output folder "
            f"{out}: a link in its path points outside (as do the outputs of 2 more jobs under clips/). Remove the "
            "link, or choose another --out") in err
    assert f"{manifest}:6: [job single] the output path 'single.mp4' would leave the output folder" in err
    assert sim.ledger()["submissions"] == [] and list(elsewhere.iterdir()) == []
    assert not (out / "state.jsonl").exists()
