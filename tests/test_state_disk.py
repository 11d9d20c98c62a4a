"""The state log on a hostile file system (issue 15): short writes on a full disk, fsync failures,
a symlinked --state, links planted at its lock and compaction temporaries, a key echoed by a server."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from batchgen.errors import DiskFullError, LocalError, OutputPathError, StateLockedError
from batchgen.state import StateLog, load

KEY = "sk-echoed-key-0123456789abcdef"


@contextlib.contextmanager
def small_tmpfs(size: str = "16k"):
    """A real tmpfs of ``size``, unmounted afterwards; skips when this user may not mount."""
    folder = Path(tempfile.mkdtemp(prefix="batchgen-tmpfs-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or done.returncode})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
        folder.rmdir()


def upload(n: int, size: int = 300) -> dict:
    return {"ev": "upload", "sha256": f"{n:064d}", "url": "https://files.example/" + "x" * size}


def test_a_full_disk_raises_and_leaves_the_log_at_a_line_boundary():
    with small_tmpfs() as disk:
        path = disk / "state.jsonl"
        written = 0
        with StateLog(path) as log:
            log.open()
            with pytest.raises(DiskFullError, match="Free some space, then run the same command again") as caught:
                for n in range(1000):
                    log.append(upload(n))
                    written += 1
            assert str(path) in str(caught.value)
        raw = path.read_bytes()
        assert raw.endswith(b"\n"), "a torn line was left behind"
        state = load(path)
        assert (state.lines, state.torn, len(state.uploads)) == (written, 0, written)


def test_a_short_write_is_finished_not_counted_as_done(tmp_path, monkeypatch):
    real_write = os.write
    calls = []

    def short_write(fd, data):
        calls.append(len(data))
        return real_write(fd, bytes(data[:7]))

    path = tmp_path / "state.jsonl"
    with StateLog(path) as log:
        log.open()
        monkeypatch.setattr(os, "write", short_write)
        log.append(upload(1))
        monkeypatch.undo()
        log.append(upload(2))
    assert len(calls) > 1, "the rest of the line was written"
    assert set(load(path).uploads) == {f"{1:064d}", f"{2:064d}"}


def test_a_write_that_fails_halfway_is_cut_back(tmp_path, monkeypatch):
    real_write = os.write
    path = tmp_path / "state.jsonl"
    with StateLog(path) as log:
        log.open()
        log.append(upload(1))
        before = path.read_bytes()

        def half_then_fail(fd, data):
            if len(data) > 100:
                return real_write(fd, bytes(data[:100]))
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

        monkeypatch.setattr(os, "write", half_then_fail)
        with pytest.raises(DiskFullError):
            log.append(upload(2))
        monkeypatch.undo()
        assert path.read_bytes() == before
        log.append(upload(3))
    assert set(load(path).uploads) == {f"{1:064d}", f"{3:064d}"}


def test_an_fsync_failure_surfaces_as_a_local_error(tmp_path, monkeypatch):
    def failing_fsync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with StateLog(tmp_path / "state.jsonl") as log:
        log.open()
        monkeypatch.setattr(os, "fsync", failing_fsync)
        with pytest.raises(LocalError, match="making the state log durable"):
            asyncio.run(log.append_durable(upload(1)))
        log.append(upload(2))
        with pytest.raises(LocalError, match="Input/output error"):
            log.flush()
        monkeypatch.undo()


def test_a_symlinked_state_shares_the_lock_of_the_real_file(tmp_path):
    real = tmp_path / "runs" / "state.jsonl"
    real.parent.mkdir()
    link = tmp_path / "elsewhere" / "my-state.jsonl"
    link.parent.mkdir()
    link.symlink_to(real)
    for first, second in ((real, link), (link, real)):
        with StateLog(first) as log:
            log.open()
            with pytest.raises(StateLockedError, match="in use by another batchgen run"):
                StateLog(second).open()


def test_compacting_through_a_symlinked_state_keeps_the_link(tmp_path):
    real = tmp_path / "state.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    with StateLog(link) as log:
        log.open()
        for n in range(5):
            log.append(upload(n))
        log.compact()
        log.append(upload(9))
    assert link.is_symlink() and len(load(real).uploads) == 6


def plant(link: Path, outside: Path) -> None:
    outside.write_text("not batchgen's\n")
    link.symlink_to(outside)


def test_a_link_planted_at_the_lock_is_refused(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside.txt"
    out.mkdir()
    plant(out / "state.jsonl.lock", outside)
    with pytest.raises(OutputPathError, match="state.jsonl.lock is a symbolic link.*Remove the link"):
        StateLog(out / "state.jsonl").open()
    assert outside.read_text() == "not batchgen's\n"


def test_a_link_planted_at_the_compaction_temporary_is_refused(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside.txt"
    out.mkdir()
    plant(out / "state.jsonl.compact", outside)
    with StateLog(out / "state.jsonl") as log:
        log.open()
        log.append(upload(1))
        with pytest.raises(OutputPathError, match="state.jsonl.compact is a symbolic link"):
            log.compact()
    assert outside.read_text() == "not batchgen's\n"
    assert len(load(out / "state.jsonl").uploads) == 1


def test_an_echoed_key_is_stored_masked(tmp_path):
    path = tmp_path / "state.jsonl"
    message = f"HTTP 500: bad header Authorization: Bearer {KEY} (key {KEY})"
    with StateLog(path, secrets=[KEY, "", None, "short"]) as log:
        log.open()
        log.append({"ev": "job", "key": "k1", "id": "a", "output": "a.mp4", "model": "m", "cost": 1.0})
        log.append({"ev": "failed", "key": "k1", "class": "PermanentError", "message": message})
        assert KEY not in log.state.jobs["k1"].error
    raw = path.read_text()
    assert KEY not in raw and "Bearer ***" in raw and "(key ***)" in raw
    assert load(path).jobs["k1"].error == "HTTP 500: bad header Authorization: Bearer *** (key ***)"
