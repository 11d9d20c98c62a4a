"""Writing files in a folder someone else can also write to: whole writes, no planted links, no keys.

A link planted in the output folder (``NAME.mp4.part`` -> /somewhere/else) would make an ordinary
``open(path, "wb")`` write outside the folder, and ``os.replace`` would then move the link into the
video's place. Every file batchgen creates there is opened with ``O_NOFOLLOW``, and a link in the
way is refused with a message naming it. A short write (a full disk returns fewer bytes than
asked before it fails) is finished or turned into an error, never counted as done.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import sys
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import DiskFullError, LocalError, OutputPathError

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
#: Shorter strings are not masked: they would match ordinary words and numbers.


def planted_link(path: Path) -> OutputPathError:
    return OutputPathError(f"{path} is a symbolic link; batchgen does not write through links in its output "
                           "folder (one planted there could send files anywhere). Remove the link, then run the "
                           "same command again")


def refuse_link(path: Path) -> None:
    """Raise if ``path`` is a symbolic link (checked with lstat, so a dangling link counts)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise planted_link(path)


def open_nofollow(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that refuses to follow a link at ``path`` itself (the folders above it are the
    caller's: safe_target resolves them)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.EEXIST and os.path.islink(path)):
            raise planted_link(path) from exc
        raise


def create_fresh(path: Path, mode: int = 0o644) -> int:
    """A new, empty file at ``path`` opened for writing: a stale regular file there (a temporary
    left by a killed run) is removed first, a link is refused. Nothing is looked up before the first
    try: a name that is free (nearly always) costs one call."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        return open_nofollow(path, flags, mode)
    except FileExistsError:
        pass
    refuse_link(path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return open_nofollow(path, flags, mode)


def replace_whole(path: Path, write: Callable[[BinaryIO], None], mode: int = 0o644) -> None:
    """Write ``path`` through a fresh ``NAME.part`` beside it, created with O_NOFOLLOW (a link planted at
    that name is refused, not written through), then renamed over ``path``, which replaces a link
    there rather than following it: a reader sees the old file or the whole new one."""
    partial = path.with_name(path.name + ".part")
    with os.fdopen(create_fresh(partial, mode), "wb") as out:
        write(out)
    os.replace(partial, path)


def write_fully(fd: int, data: bytes, *, whole: bool = False) -> None:
    """Write every byte or raise: ``os.write`` may write only part (a disk about to fill).

    ``whole``: ``fd`` is a file opened O_APPEND with one writer, and a write that fails after part of
    ``data`` went out is cut back by that part and fsynced, so no partial line is left for a later
    reader. (Cut back by what was written, not to a length read first: a seek per state line was a
    few percent of a Gold batch's CPU.)"""
    view, done = memoryview(data), 0
    try:
        while done < len(view):
            written = os.write(fd, view[done:])
            if written <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done += written
    except OSError:
        if whole and done:
            os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_END) - done)
            os.fsync(fd)
        raise


def write_error(path: Path, exc: OSError, *, what: str) -> LocalError:
    """The error to raise for a failed write: DiskFullError (the run halts) for a full disk or quota."""
    reason = exc.strerror or str(exc)
    if exc.errno in DISK_FULL:
        return DiskFullError(f"cannot write {path} ({what}): {reason}; nothing more was sent. Free some space, "
                             "then run the same command again")
    return LocalError(f"cannot write {path} ({what}): {reason}; nothing more was sent. Check the disk, then "
                      "run the same command again")


class NoFollowFileHandler(logging.FileHandler):
    """A log file handler that appends to a regular file and refuses a link planted at its name."""

    def _open(self):
        fd = open_nofollow(Path(self.baseFilename), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        return _FdText(fd, self.encoding or "utf-8", self.errors or "strict")

    def handleError(self, record: logging.LogRecord) -> None:
        # A full disk is reported by the run itself (it halts with DiskFullError); a logging traceback
        # on stderr for every line that no longer fits would bury that message.
        exc = sys.exc_info()[1]
        if not (isinstance(exc, OSError) and exc.errno in DISK_FULL):
            super().handleError(record)


class _FdText:
    """A text stream straight onto a descriptor: nothing is buffered, so a line the full disk refused
    is dropped with its error instead of failing again at every later flush and at close."""

    def __init__(self, fd: int, encoding: str, errors: str):
        self.fd, self.encoding, self.errors = fd, encoding, errors

    def write(self, text: str) -> None:
        write_fully(self.fd, text.encode(self.encoding, self.errors))

    def flush(self) -> None:
        """Every write is already with the kernel."""

    def close(self) -> None:
        os.close(self.fd)
