"""Files batchgen creates in its output folder refuse planted links (issue 15 item 7)."""

from __future__ import annotations

import pytest

from batchgen.download import set_aside, write_sidecar
from batchgen.errors import OutputPathError


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
