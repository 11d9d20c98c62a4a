"""Exclusive locks that say who holds them: one per state file, one per output folder.

Two runs on one state, or on one output folder (each with its own --state), would each see jobs
unpaid and pay for them twice; the second one is refused instead. The lock is an flock on a file
that names the holder's pid, released when the process ends however it ends."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO, Callable

from .errors import StateLockedError
from .fsguard import open_nofollow


def take(lock_path: Path, refusal: Callable[[str], str]) -> IO[str]:
    """The open, locked file at ``lock_path`` (created if missing; a link there is refused). Held by
    another process: StateLockedError with ``refusal(holder)``."""
    fh = os.fdopen(open_nofollow(lock_path, os.O_RDWR | os.O_CREAT), "r+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise StateLockedError(refusal(holder)) from exc
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}\n")
    fh.flush()
    return fh


def release(fh: IO[str]) -> None:
    fcntl.flock(fh, fcntl.LOCK_UN)
    fh.close()
