"""What counts as the video that was paid for, and where it may be written."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import image_bytes

from batchgen.download import safe_target, verify
from batchgen.errors import OutputPathError, VerificationError
from batchgen.simulator.render import render_mp4


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    made = {}
    for name, (w, h) in {"landscape": (1280, 720), "portrait": (720, 1280), "square": (720, 720)}.items():
        path = folder / f"{name}.mp4"
        path.write_bytes(render_mp4(image_bytes(), w, h, 4, 0, 0))
        made[name] = path
    return made


@pytest.mark.parametrize("name, aspect", [("landscape", None), ("portrait", None), ("square", "1:1"),
                                          ("landscape", "16:9"), ("portrait", "9:16")])
def test_accepts_the_asked_resolution_in_any_orientation_or_asked_aspect(clips, name, aspect):
    info = verify(str(clips[name]), "720p", 4.0, aspect, 0.6)
    assert min(info.width, info.height) == 720


@pytest.mark.parametrize("name, resolution, duration, aspect, expect", [
    ("landscape", "1080p", 4.0, None, "expected 1080p"),
    ("landscape", "720p", 8.0, None, "expected 8 s"),
    ("square", "720p", 4.0, "16:9", "expected aspect ratio 16:9"),
])
def test_refuses_what_was_not_asked(clips, name, resolution, duration, aspect, expect):
    with pytest.raises(VerificationError, match=expect):
        verify(str(clips[name]), resolution, duration, aspect, 0.6)


def test_refuses_a_cut_file(clips, tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clips["landscape"].read_bytes()[: clips["landscape"].stat().st_size // 2])
    with pytest.raises(VerificationError):
        verify(str(cut), "720p", 4.0, None, 0.6)


@pytest.mark.parametrize("relative", ["../x.mp4", "a/../../x.mp4", "/etc/x.mp4", "."])
def test_output_paths_never_leave_the_output_folder(tmp_path, relative):
    with pytest.raises(OutputPathError, match="would leave the output folder"):
        safe_target(tmp_path, relative)


def test_symlink_out_of_the_output_folder_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputPathError, match="would leave the output folder"):
        safe_target(tmp_path / "out", "link/x.mp4")
    assert safe_target(tmp_path / "out", "sub/x.mp4") == (tmp_path / "out" / "sub" / "x.mp4").resolve()



def test_trusting_the_index_reads_the_same_facts(clips):
    """Skipping the packet scan (length already checked) must not change what is verified."""
    assert verify(str(clips["portrait"]), "720p", 4.0, None, 0.6, scan_packets=False) == \
        verify(str(clips["portrait"]), "720p", 4.0, None, 0.6, scan_packets=True)


def test_setting_aside_never_overwrites_an_earlier_set_aside_video(tmp_path):
    from batchgen.download import set_aside

    target = tmp_path / "shot.mp4"
    target.write_bytes(b"first")
    first = set_aside(target, "abcd1234")
    target.write_bytes(b"second")
    second = set_aside(target, "abcd1234")
    assert first != second and first.read_bytes() == b"first" and second.read_bytes() == b"second"


RELATIVES = ["x.mp4", "./x.mp4", "sub/x.mp4", "sub/./x.mp4", "sub//x.mp4", "a/../x.mp4", "../x.mp4",
             "a/../../x.mp4", "/etc/x.mp4", ".", "sub/..", "sub/", "link/x.mp4", "sub/file-link.mp4",
             "sub/inside-link.mp4", "deep/er/x.mp4"]


@pytest.mark.parametrize("relative", RELATIVES)
def test_targets_checks_exactly_what_safe_target_does(tmp_path, relative):
    """The run's cached form (each folder resolved once) accepts, refuses and returns the same,
    asked twice (the second time from its cache)."""
    from batchgen.download import Targets

    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere")
    (out / "sub" / "file-link.mp4").symlink_to(tmp_path / "elsewhere" / "x.mp4")
    (out / "sub" / "inside-link.mp4").symlink_to(out / "x.mp4")
    try:
        expected = safe_target(out, relative)
    except OutputPathError:
        expected = None
    targets = Targets(out)
    for _ in range(2):
        if expected is None:
            with pytest.raises(OutputPathError, match="would leave the output folder"):
                targets(relative)
        else:
            assert targets(relative) == expected
