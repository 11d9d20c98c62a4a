"""What the local provider (``batchgen run --provider local``) keeps across runs, under the output folder.

A real server still has its uploads and predictions when batchgen stops or is killed; an in-process
simulator died with it, so a resumed or repaired local run asked a fresh one about tasks it never
heard of (jobs failed, a deleted video was retried against a dead port). ``Keeper`` gives the
simulator a memory in ``<out>/.local-simulator/``::

    sim.json        the port it listened on: the next run listens there again when it is free
    tasks.jsonl     a line per accepted task, written before its submit is answered, and a line
                    per task that ended (error, sha256, time taken)
    videos/ID.mp4   each completed task's video, in place before its 'ended' line
    uploads/ID      each uploaded image's bytes, in place before its line in uploads.jsonl

Lines are written with one os.write each, so a SIGKILL can tear only the last one, which loading
skips. A task that had not ended is generated again from the start, as a server would have
carried on with it meanwhile. Images are looked up by URL path, so a run on another port still
finds them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlsplit, urlunsplit

from .tasks import Task
from .uploads import StoredFile

if TYPE_CHECKING:
    from .server import Simulator

FOLDER = ".local-simulator"
#: Task fields not written: bytes go to their own file, the event is live, and monotonic times mean
#: nothing to another process (a task generated again takes its ``gen`` seconds from when it gets a slot).
_NOT_KEPT = frozenset({"video", "finished", "accepted_at", "start_at", "finish_at"})


class _WriteThrough(dict):
    """A dict that reports every item set, so the simulator's own code needs no persistence calls."""

    def __init__(self, items: dict, on_set: Callable[[Any, Any], None]):
        super().__init__(items)
        self._on_set = on_set

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self._on_set(key, value)


class Keeper:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        for sub in ("videos", "uploads"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)

    def port(self) -> int:
        """The port the last run listened on (0: none yet, pick a free one)."""
        try:
            port = int(json.loads((self.folder / "sim.json").read_text(encoding="utf-8"))["port"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0
        return port if 0 < port < 65536 else 0

    def attach(self, sim: "Simulator", port: int) -> None:
        """Give ``sim`` what earlier runs kept, then keep what it does from now on."""
        _write_new(self.folder / "sim.json", json.dumps({"version": 1, "port": port}).encode())
        store = sim.uploads.store
        store.files = _WriteThrough({**self._uploads(), **store.files}, self._kept_upload)
        restored = self._tasks(port)
        # Fresh ids: the seeded generator would hand out the earlier runs' task ids again.
        sim.rng = random.Random(f"{sim.config.seed}:resumed:{len(restored)}")
        sim.tasks = _WriteThrough(restored, lambda _id, task: self._accepted(sim, task))
        for task in restored.values():
            if not task.done:
                sim.active[task.key_id] += 1  # the spawned job's end takes it off again
                sim._spawn(task)
                self._watch(sim, task)

    # -- uploads ----------------------------------------------------------------------------
    def _uploads(self) -> dict[str, StoredFile]:
        found = {}
        for line in _lines(self.folder / "uploads.jsonl"):
            path = self.folder / "uploads" / str(line.get("id", ""))
            if path.is_file() and path.parent == self.folder / "uploads":
                found[line["id"]] = StoredFile(path.read_bytes(), str(line.get("content_type", "")))
        return found

    def _kept_upload(self, file_id: str, stored: StoredFile) -> None:
        _write_new(self.folder / "uploads" / file_id, stored.data)
        _append(self.folder / "uploads.jsonl", {"id": file_id, "content_type": stored.content_type})

    # -- tasks ------------------------------------------------------------------------------
    def _accepted(self, sim: "Simulator", task: Task) -> None:
        line = {f.name: getattr(task, f.name) for f in dataclasses.fields(task) if f.name not in _NOT_KEPT}
        _append(self.folder / "tasks.jsonl", {"ev": "task", **line})
        self._watch(sim, task)

    def _watch(self, sim: "Simulator", task: Task) -> None:
        # In the simulator's own set of jobs: closing it cancels this watch with the task's job.
        job = asyncio.get_running_loop().create_task(self._ended(task))
        sim._jobs.add(job)
        job.add_done_callback(sim._jobs.discard)

    async def _ended(self, task: Task) -> None:
        await task.finished.wait()
        if task.video is not None:
            _write_new(self.folder / "videos" / f"{task.id}.mp4", task.video)
        _append(self.folder / "tasks.jsonl", {"ev": "ended", "id": task.id, "error": task.error,
                                              "video_sha256": task.video_sha256, "inference_ms": task.inference_ms})

    def _tasks(self, port: int) -> dict[str, Task]:
        accepted, ended = {}, {}
        for line in _lines(self.folder / "tasks.jsonl"):
            (accepted if line.get("ev") == "task" else ended)[str(line.get("id"))] = line
        tasks = {}
        for task_id, line in accepted.items():
            task = _task(line, port)
            end = ended.get(task_id)
            video = self.folder / "videos" / f"{task_id}.mp4"
            if end is not None and (end.get("error") or video.is_file()):
                task.error, task.inference_ms = str(end.get("error") or ""), int(end.get("inference_ms") or 0)
                task.video = None if task.error else video.read_bytes()
                task.video_sha256 = str(end.get("video_sha256") or "")
                task.done = True
                task.finished.set()
            tasks[task_id] = task
        return tasks


def _task(line: dict[str, Any], port: int) -> Task:
    """A task as it was accepted, its clock started again now; its links name this run's port (an
    earlier run may have listened on another)."""
    known = {f.name for f in dataclasses.fields(Task)}
    fields = {k: v for k, v in line.items() if k in known and k not in _NOT_KEPT}
    task = Task(**fields, accepted_at=time.monotonic())
    if task.origin:
        parts = urlsplit(task.origin)
        task.origin = urlunsplit(parts._replace(netloc=f"{parts.hostname}:{port}")) if parts.hostname else task.origin
    return task


def _lines(path: Path) -> list[dict[str, Any]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    found = []
    for text in raw.split(b"\n"):
        try:
            line = json.loads(text)
        except ValueError:
            continue  # a line torn by a kill (only ever the last one)
        if isinstance(line, dict):
            found.append(line)
    return found


def _append(path: Path, line: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(line, separators=(",", ":")) + "\n").encode())
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes) -> None:
    """Write whole or not at all (a temp file renamed over), so a kill never leaves half a video."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
