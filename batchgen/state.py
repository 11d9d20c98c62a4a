"""The state file: an append-only JSONL event log, folded into one record per job.

Why a log and not a database: a line is appended before every paid action and fsynced,
so a SIGKILL at any instant leaves at most one torn last line, which loading drops. The
log is folded (pure function) into a JobRecord per job key. Compaction rewrites it as one
snapshot line per job into a new file, fsyncs, and os.replace()s it over the old one.

Each line is one record of state_events.py (job, upload, submitting, submitted, unsent, unknown,
completed, failed, downloaded, missing, superseded, snap, run); lifecycle.py's table says which may
follow which, and its fold applies them.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator

from . import locks
from .errors import StateError
from .fsguard import create_fresh, write_error, write_fully
from .redact import mask_all, redactors
from .lifecycle import JobRecord, JobStatus, committed_spend, fold, spend_of
from .state_events import Event, Run, Snap, Unknown, Upload, event_from_json

log = logging.getLogger("batchgen")
__all__ = ["JobRecord", "State", "StateLog", "apply", "committed_spend", "load", "spend_of"]


@dataclass
class State:
    """The folded state: job records by key, the upload cache, and run history."""

    jobs: dict[str, JobRecord] = field(default_factory=dict)
    uploads: dict[str, str] = field(default_factory=dict)
    #: When each image was uploaded (epoch seconds): uploads expire on the provider's side.
    uploaded_at: dict[str, float] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    #: Dollars paid or in flight, kept up to date by apply() so a budget check or a progress
    #: line never has to sum every job.
    committed: float = 0.0
    lines: int = 0
    torn: int = 0

    def record(self, key: str) -> JobRecord:
        rec = self.jobs.get(key)
        if rec is None:
            rec = self.jobs[key] = JobRecord(key=key)
        return rec


def apply(state: State, ev: Event | dict[str, Any], *, strict: bool = True) -> None:
    """Fold one event (or its wire form) into the state (lifecycle.fold for a job's events), keeping
    ``committed`` current."""
    ev = _parsed(ev)
    if isinstance(ev, Upload):
        state.uploads[ev.sha256] = ev.url
        state.uploaded_at[ev.sha256] = ev.t or 0.0
    elif isinstance(ev, Run):
        state.runs.append(ev.to_json())
    elif ev.key:
        before = spend_of(state.jobs.get(ev.key))
        if isinstance(ev, Snap):
            state.jobs[ev.key] = JobRecord.from_json(ev.record)
        else:
            fold(state.record(ev.key), ev, strict=strict)
        state.committed += spend_of(state.jobs.get(ev.key)) - before


def finish_load(state: State) -> State:
    """A job left in ``submitting`` by a dead process may or may not have been sent: unknown."""
    for rec in state.jobs.values():
        if rec.status is JobStatus.SUBMITTING:
            fold(rec, Unknown(rec.key, "the run stopped between recording the submit and hearing its answer"))
    return state


def iter_events(raw: bytes) -> Iterator[dict[str, Any] | None]:
    """Parse a log; yields None for a line that is not valid JSON (torn or corrupt)."""
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            yield None
            continue
        yield ev if isinstance(ev, dict) else None


def load(path: str | os.PathLike) -> State:
    """Load and fold a state file; a missing file is an empty state.

    A torn *last* line (a write cut by a kill) is dropped silently; a bad line in the middle
    means the file was damaged by something else, and is refused with its line number.
    """
    path = Path(path)
    state = State()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return state
    except OSError as exc:
        raise StateError(f"cannot read the state file {path}: {exc.strerror}") from exc
    events = list(iter_events(raw))
    for lineno, ev in enumerate(events, 1):
        if ev is None:
            if lineno == len(events):
                state.torn += 1
                continue
            raise StateError(
                f"{path}: line {lineno} is not a JSON event; the file was damaged outside batchgen. Move it "
                "aside and run the same command again: videos already in the output folder are recognised by "
                "their sidecars (NAME.json: job key, size, sha256) and not paid again; any other file at a video's "
                "name is set aside as NAME.prev-found.mp4, never overwritten. Jobs paid but not yet downloaded "
                "are recorded only in this file: a fresh state would pay for them again, so if the last run "
                "stopped with jobs in flight, repair that line instead."
            )
        event = event_from_json(ev)
        if event is None:
            log.warning("%s: line %d is not an event this version knows (%s); it is ignored", path, lineno,
                        str(ev.get("ev"))[:40])
        else:
            apply(state, event, strict=False)
        state.lines += 1
    return finish_load(state)


class StateLog:
    """The one writer of a state file: appends events, fsyncs intents, compacts, locks."""

    def __init__(self, path: str | os.PathLike, *, clock=time.time, strict: bool = True,
                 secrets: Iterable[str | None] = ()):
        self.path = Path(path)
        # The provider's key: a server that echoes it in an error message must not get it on disk.
        self._secrets = redactors(secrets)
        self._clock = clock
        self.strict = strict
        self._fh = None
        self._lock_fh = None
        # Lines appended, and how many of them a finished fsync covers: a durable append waits
        # for its own line, not for the log to be clean (under steady load it never is).
        self._appended = 0
        self._synced = 0
        self._sync_task: asyncio.Task | None = None
        # The intent fsync gets a thread of its own: in the loop's shared pool it queued behind
        # download writes and their fsyncs, and every submit waited for them (0.6 s on average
        # with 32 downloads running).
        self._fsync_pool: ThreadPoolExecutor | None = None
        self.lines = 0
        self.fsyncs = 0
        self.state = State()
        # Which file this log writes (device, inode) and how many bytes it holds: a path that names
        # another file, none, or a shorter one was deleted, moved or cut short during the run.
        self._ident: tuple[int, int] | None = None
        self._size = 0

    # -- lifecycle --------------------------------------------------------------------
    def open(self) -> State:
        """Take the lock, load the state, and open the log for appending."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock()
        state = load(self.path)
        self._mend_tail(state)
        self._size = _identity(self.path)[1]
        self.lines = state.lines
        self.state = state
        return state

    def close(self) -> None:
        if self._fsync_pool is not None:
            self._fsync_pool.shutdown(wait=True)
            self._fsync_pool = None
        if self._fh is not None:
            self._fsync_now()
            self._fh.close()
            self._fh = None
        if self._lock_fh is not None:
            locks.release(self._lock_fh)
            self._lock_fh = None

    def __enter__(self) -> "StateLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _lock(self) -> None:
        # Next to the real file: two names for one state (a symlinked --state) must share one lock.
        real = Path(os.path.realpath(self.path))
        self._lock_fh = locks.take(real.with_name(real.name + ".lock"), lambda holder: (
            f"{self.path} is in use by another batchgen run ({holder}); wait for it to finish "
            "or stop it. Two runs on one state could pay twice for the same job."))

    def _mend_tail(self, state: State) -> None:
        """Cut a torn last line, or end a whole one, so the next append starts a new line."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        if not raw or raw.endswith(b"\n"):
            return
        with open(self.path, "r+b") as fh:
            if state.torn:
                fh.truncate(raw.rfind(b"\n") + 1)
            else:
                fh.seek(0, os.SEEK_END)
                fh.write(b"\n")
            os.fsync(fh.fileno())

    # -- writing ----------------------------------------------------------------------
    def append(self, ev: Event | dict[str, Any]) -> None:
        """Fold one event into the state and write it (not yet durable); an event the lifecycle does
        not allow raises before anything is written.

        One write per line keeps lines whole, so a kill can only tear the last one; a write the disk
        cuts short is cut back to the line before and raised (DiskFullError when the disk is full),
        so nothing is sent on the strength of a line that is not there.
        """
        event = _parsed(ev)
        event = stamped(event, round(self._clock(), 3))
        wire = event.to_json()
        if self._secrets and (masked := mask_all(wire, self._secrets)) != wire:
            wire, event = masked, _parsed(masked)
        apply(self.state, event, strict=self.strict)
        data = _line(wire)
        if self._fh is None:
            # Opened on the first append: planning and a "no" at the prompt leave the file untouched.
            self._fh = open(self.path, "ab", buffering=0)
            # A file deleted or moved since it was loaded is opened new and empty: shorter than loaded.
            self._ident = _identity(self._fh.fileno())[0]
        if (self._sync_task is None or self._sync_task.done()) and self._lost():
            self._appended += 1
            self._write_back()  # from memory, this event included
            return
        try:
            write_fully(self._fh.fileno(), data, whole=True)
        except OSError as exc:
            raise write_error(self.path, exc, what="the state log") from exc
        self._size += len(data)
        self.lines += 1
        self._appended += 1

    async def append_durable(self, ev: Event | dict[str, Any]) -> None:
        """Write one event and return only once it is on disk.

        Concurrent callers share one fsync (group commit), so hundreds of submits in flight
        do not each pay a disk flush, yet none is acknowledged before its line is durable. An
        fsync covers the lines written before it started; a line written while one runs waits
        for it and then the next, never for the log to be clean (under load it never is)."""
        self.append(ev)
        mine = self._appended
        while self._synced < mine:
            task = self._sync_task
            if task is None or task.done():
                task = self._sync_task = asyncio.ensure_future(self._group_fsync())
            await asyncio.shield(task)

    async def _group_fsync(self) -> None:
        upto = self._appended
        if self._fsync_pool is None:
            self._fsync_pool = ThreadPoolExecutor(1, thread_name_prefix="batchgen-state-fsync")
        try:
            await asyncio.get_running_loop().run_in_executor(self._fsync_pool, os.fsync, self._fh.fileno())
        except OSError as exc:
            raise write_error(self.path, exc, what="making the state log durable") from exc
        self._synced = max(self._synced, upto)
        self.fsyncs += 1
        # Appends made while the fsync ran could not rewrite a lost file (its descriptor was in use).
        self._write_back()

    def _fsync_now(self) -> None:
        if self._appended > self._synced and self._fh is not None:
            upto = self._appended
            try:
                os.fsync(self._fh.fileno())
            except OSError as exc:
                raise write_error(self.path, exc, what="making the state log durable") from exc
            self._synced = max(self._synced, upto)
            self.fsyncs += 1

    def flush(self) -> None:
        """Make everything written so far durable (used at checkpoints and exit)."""
        self._fsync_now()

    def file_lost(self) -> bool:
        """Deleted, moved or cut short by someone else during this run: it must be rewritten from memory,
        or paid jobs would look new to the next run."""
        if self._fh is None or not self._lost():
            return False
        log.warning("the state file %s was deleted, moved or cut short during the run; it is written again "
                    "from memory", self.path)
        return True

    def _lost(self) -> bool:
        ident, size = _identity(self.path)
        return ident != self._ident or size < self._size

    def _write_back(self) -> None:
        """Checked at every append and group commit: a kill soon after the file went missing loses nothing."""
        if not self.file_lost():
            return
        try:
            self.compact()
        except OSError as exc:
            raise write_error(self.path, exc, what="writing the state back") from exc

    # -- compaction -------------------------------------------------------------------
    def should_compact(self) -> bool:
        state = self.state
        return self.lines > 1000 and self.lines > 3 * (len(state.jobs) + len(state.uploads) + len(state.runs[-20:]))

    def compact(self) -> None:
        """Rewrite the log as one line per job/upload; crash-safe via write-new + replace."""
        state = self.state
        # Beside the real file, replacing it (not a link to it); a link planted at the temporary is refused.
        real = Path(os.path.realpath(self.path))
        tmp = real.with_name(real.name + ".compact")
        now = round(self._clock(), 3)
        count = 0
        with os.fdopen(create_fresh(tmp), "wb") as fh:
            for sha, url in state.uploads.items():
                # The original time is kept: it is when the provider's copy started to age.
                fh.write(_line(Upload(sha, url, state.uploaded_at.get(sha, now)).to_json()))
                count += 1
            for run in state.runs[-20:]:
                fh.write(_line(run))
                count += 1
            for rec in state.jobs.values():
                fh.write(_line(Snap(rec.key, rec.to_json(), now).to_json()))
                count += 1
            fh.flush()
            os.fsync(fh.fileno())
        if self._fh is not None:
            self._fh.close()
        os.replace(tmp, real)
        fsync_path(real.parent)
        self._fh = open(self.path, "ab", buffering=0)
        self._ident, self._size = _identity(self._fh.fileno())
        self._synced = self._appended
        self.lines = count


def _parsed(ev: Event | dict[str, Any]) -> Event:
    if isinstance(ev, Event):
        return ev
    event = event_from_json(ev)
    if event is None:
        raise StateError(f"not a state event: {str(ev)[:80]}")
    return event


def stamped(ev: Event, t: float) -> Event:
    """The event with its time set, unless it already has one."""
    if isinstance(ev, Run):
        return ev if "t" in ev.info else Run({**ev.info, "t": t})
    return ev if ev.t is not None else replace(ev, t=t)


def _line(ev: dict[str, Any]) -> bytes:
    return (json.dumps(ev, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")


def _identity(file: Path | int) -> tuple[tuple[int, int] | None, int]:
    """(device, inode) and size of a path (None when nothing is there) or an open descriptor."""
    try:
        info = os.stat(file)
    except OSError:  # gone, or no longer reachable as it was: either way not this log's file
        return None, 0
    return (info.st_dev, info.st_ino), info.st_size


def fsync_path(path: Path) -> None:
    """fsync a file or a folder by path (a folder's fsync makes a rename in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
