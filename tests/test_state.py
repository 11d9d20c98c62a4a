"""The state log without a network: folding, torn lines, the lock, compaction, durability."""

from __future__ import annotations

import asyncio
import os

import pytest

from batchgen.errors import StateError, StateLockedError
from batchgen.lifecycle import JobStatus
from batchgen.state import StateLog, load


def _events(log: StateLog, *events):
    for ev in events:
        log.append(dict(ev))


def test_fold_follows_a_job_through_its_life(tmp_path):
    path = tmp_path / "state.jsonl"
    with StateLog(path) as log:
        log.open()
        _events(log,
                {"ev": "job", "key": "k1", "id": "a", "output": "a.mp4", "model": "m", "cost": 1.2},
                {"ev": "submitting", "key": "k1", "attempt": 1, "body_hash": "h", "model": "m", "cost": 1.2},
                {"ev": "submitted", "key": "k1", "pid": "p1"},
                {"ev": "completed", "key": "k1", "pid": "p1", "outputs": ["u"], "model_used": "m2"},
                {"ev": "downloaded", "key": "k1", "path": "a.mp4", "bytes": 10, "sha256": "s"})
    rec = load(path).jobs["k1"]
    assert rec.status is JobStatus.DOWNLOADED
    assert (rec.pid, rec.body_hash, rec.cost, rec.path, rec.bytes) == ("p1", "h", 1.2, "a.mp4", 10)
    assert rec.fell_back and not rec.switched


def test_intent_without_answer_loads_as_unknown(tmp_path):
    path = tmp_path / "state.jsonl"
    with StateLog(path) as log:
        log.open()
        _events(log, {"ev": "submitting", "key": "k1", "attempt": 1, "body_hash": "h", "model": "m"})
    rec = load(path).jobs["k1"]
    assert rec.status is JobStatus.UNKNOWN and "stopped" in rec.error


def test_torn_last_line_is_dropped_and_mended(tmp_path):
    path = tmp_path / "state.jsonl"
    with StateLog(path) as log:
        log.open()
        _events(log, {"ev": "submitting", "key": "k1", "body_hash": "h"}, {"ev": "submitted", "key": "k1", "pid": "p"})
    with open(path, "ab") as fh:
        fh.write(b'{"ev":"completed","key":"k1","pi')
    state = load(path)
    assert state.torn == 1 and state.jobs["k1"].status is JobStatus.SUBMITTED
    with StateLog(path) as log:
        log.open()
        log.append({"ev": "failed", "key": "k1", "class": "task", "message": "no"})
    raw = path.read_bytes()
    assert b'"pi\n' not in raw and raw.endswith(b"\n")
    assert load(path).jobs["k1"].status is JobStatus.FAILED


def test_whole_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "state.jsonl"
    path.write_bytes(b'{"ev":"submitting","key":"k1","attempt":1}\n{"ev":"submitted","key":"k1","pid":"p"}')
    with StateLog(path) as log:
        assert log.open().jobs["k1"].pid == "p"
        log.append({"ev": "failed", "key": "k1"})
    assert load(path).jobs["k1"].status is JobStatus.FAILED


def test_damage_in_the_middle_is_refused_with_its_line(tmp_path):
    path = tmp_path / "state.jsonl"
    path.write_text('{"ev":"submitted","key":"k1","pid":"p"}\ngarbage\n{"ev":"failed","key":"k1"}\n')
    with pytest.raises(StateError, match="line 2"):
        load(path)


def test_only_newline_splits_lines(tmp_path):
    path = tmp_path / "state.jsonl"
    prompt = "a\u2028b\u0085c\rd"  # line separators that str.splitlines() would split on
    with StateLog(path) as log:
        log.open()
        log.append({"ev": "job", "key": "k1", "id": "x", "prompt": prompt})
    assert load(path).jobs["k1"].prompt == prompt


def test_second_writer_is_refused(tmp_path):
    path = tmp_path / "state.jsonl"
    with StateLog(path) as first:
        first.open()
        with pytest.raises(StateLockedError, match="another batchgen run"):
            StateLog(path).open()
    with StateLog(path) as again:
        again.open()


def test_compaction_keeps_every_record_and_the_upload_cache(tmp_path):
    path = tmp_path / "state.jsonl"
    with StateLog(path) as log:
        log.open()
        log.append({"ev": "upload", "sha256": "img", "url": "http://x/img"})
        for i in range(400):
            key = f"k{i}"
            _events(log, {"ev": "job", "key": key, "id": f"j{i}", "cost": 1.0},
                    {"ev": "submitting", "key": key, "body_hash": f"h{i}"},
                    {"ev": "unsent", "key": key, "class": "429", "message": "busy"},
                    {"ev": "submitting", "key": key, "body_hash": f"h{i}", "attempt": 2},
                    {"ev": "submitted", "key": key, "pid": f"p{i}"})
        before = {k: r.to_json() for k, r in log.state.jobs.items()}
        assert log.should_compact()
        log.compact()
        log.append({"ev": "completed", "key": "k0", "pid": "p0", "outputs": ["u"]})
    state = load(path)
    assert len(path.read_text().splitlines()) == 1 + 400 + 1
    assert state.uploads == {"img": "http://x/img"}
    assert state.jobs["k0"].status is JobStatus.COMPLETED
    after = {k: r.to_json() for k, r in state.jobs.items() if k != "k0"}
    assert after == {k: v for k, v in before.items() if k != "k0"}
    assert not (tmp_path / "state.jsonl.compact").exists()


def test_durable_appends_share_fsyncs_and_are_on_disk_when_acknowledged(tmp_path):
    path = tmp_path / "state.jsonl"

    async def many():
        with StateLog(path) as log:
            log.open()
            await asyncio.gather(*(log.append_durable({"ev": "submitting", "key": f"k{i}"}) for i in range(200)))
            lines = path.read_bytes().count(b"\n")
            return log.fsyncs, lines

    fsyncs, lines = asyncio.run(many())
    assert lines == 200
    assert 1 <= fsyncs < 200, "concurrent intents are grouped into fewer fsyncs"



def test_a_durable_append_waits_for_its_own_line_not_for_a_quiet_log(tmp_path, monkeypatch):
    """Under a steady stream of intents the log is never clean: each caller must return after
    at most two fsyncs (the one running and the next), and only after one that began once its
    line was written."""
    import time as _time

    import batchgen.state as state_module

    path = tmp_path / "state.jsonl"
    started_at_size: list[int] = []  # file size when each fsync began, in completion order
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        size = os.fstat(fd).st_size
        _time.sleep(0.005)
        real_fsync(fd)
        started_at_size.append(size)

    monkeypatch.setattr(state_module.os, "fsync", slow_fsync)
    waits: list[int] = []
    covered: list[bool] = []

    async def caller(log: StateLog, i: int) -> None:
        await asyncio.sleep(i * 0.001)  # arrivals every 1 ms, faster than one fsync
        before = path.stat().st_size if path.exists() else 0
        done_before = len(started_at_size)
        await log.append_durable({"ev": "submitting", "key": f"k{i}"})
        finished = started_at_size[done_before:]
        covered.append(any(size > before for size in finished))
        waits.append(len(finished))

    async def run() -> int:
        with StateLog(path) as log:
            log.open()
            await asyncio.gather(*(caller(log, i) for i in range(300)))
            return log.fsyncs

    fsyncs = asyncio.run(run())
    assert all(covered), "a caller returned before an fsync that began after its line was written"
    assert max(waits) <= 2, f"a caller waited for {max(waits)} fsyncs"
    assert fsyncs < 300 / 2


def test_running_committed_total_always_equals_the_sum_over_jobs(tmp_path):
    from batchgen.state import committed_spend

    path = tmp_path / "state.jsonl"
    steps = [
        {"ev": "job", "key": "a", "id": "a", "cost": 1.2},
        {"ev": "submitting", "key": "a", "body_hash": "h", "cost": 1.2},
        {"ev": "unsent", "key": "a", "class": "429"},
        {"ev": "submitting", "key": "a", "body_hash": "h", "cost": 1.2},
        {"ev": "submitted", "key": "a", "pid": "p1"},
        {"ev": "failed", "key": "a", "class": "task", "cost": 0.0},
        {"ev": "submitting", "key": "b", "body_hash": "g", "cost": 2.0},
        {"ev": "unknown", "key": "b"},
        {"ev": "submitting", "key": "a", "body_hash": "h", "cost": 1.2},
        {"ev": "submitted", "key": "a", "pid": "p2"},
        {"ev": "completed", "key": "a", "pid": "p2", "outputs": ["u"]},
        {"ev": "downloaded", "key": "a", "path": "a.mp4", "bytes": 1, "sha256": "s"},
    ]
    expected = [0.0, 1.2, 0.0, 1.2, 1.2, 0.0, 2.0, 2.0, 3.2, 3.2, 3.2, 3.2]
    with StateLog(path) as log:
        log.open()
        for ev, want in zip(steps, expected):
            log.append(dict(ev))
            assert round(log.state.committed, 2) == want == committed_spend(log.state.jobs.values())
        log.compact()
    assert round(load(path).committed, 2) == 3.2, "snapshots fold to the same total"


JOB_A = ({"ev": "job", "key": "a", "id": "a", "output": "a.mp4", "model": "m", "cost": 1.2},
         {"ev": "submitting", "key": "a", "attempt": 1, "body_hash": "h", "model": "m", "cost": 1.2},
         {"ev": "submitted", "key": "a", "pid": "p1"})


@pytest.mark.parametrize("damage", ["delete", "move aside", "cut short"])
def test_a_state_file_lost_during_a_run_is_written_back_at_the_next_append(tmp_path, damage, caplog):
    """Issue 15 item 15: a kill right after that must not leave the paid jobs unrecorded."""
    path = tmp_path / "state.jsonl"
    with StateLog(path) as log:
        log.open()
        _events(log, *JOB_A)
        log.flush()
        if damage == "delete":
            path.unlink()
        elif damage == "move aside":
            os.replace(path, tmp_path / "state.jsonl.aside")
        else:
            os.truncate(path, 40)
        _events(log, {"ev": "job", "key": "b", "id": "b", "output": "b.mp4", "model": "m", "cost": 1.2})
        assert "was deleted, moved or cut short during the run; it is written again from memory" in caplog.text
        # Read while the run still holds it, as the next run would after a SIGKILL here.
        state = load(path)
        assert state.jobs["a"].status is JobStatus.SUBMITTED and state.jobs["a"].pid == "p1"
        assert state.jobs["b"].status is JobStatus.NEW
        _events(log, {"ev": "submitting", "key": "b", "attempt": 1, "body_hash": "h2", "model": "m", "cost": 1.2})
    assert load(path).jobs["b"].status is JobStatus.UNKNOWN
    if damage == "move aside":
        assert (tmp_path / "state.jsonl.aside").exists(), "the file moved aside is left alone"


def test_a_state_file_deleted_before_the_first_append_keeps_what_was_loaded(tmp_path):
    path = tmp_path / "state.jsonl"
    with StateLog(path) as log:
        log.open()
        _events(log, *JOB_A)
    with StateLog(path) as log:
        log.open()
        path.unlink()  # e.g. while the spend prompt waits
        _events(log, {"ev": "job", "key": "b", "id": "b", "output": "b.mp4", "model": "m", "cost": 1.2})
    assert load(path).jobs["a"].pid == "p1" and "b" in load(path).jobs


def test_a_state_file_deleted_while_a_group_fsync_runs_is_written_back_when_it_ends(tmp_path):
    path = tmp_path / "state.jsonl"

    async def main() -> None:
        with StateLog(path) as log:
            log.open()
            _events(log, JOB_A[0])
            first = asyncio.ensure_future(log.append_durable(dict(JOB_A[1])))
            await asyncio.sleep(0)  # its line is written and the shared fsync under way
            path.unlink()
            _events(log, JOB_A[2])  # the fsync holds the old file's descriptor: this line goes there
            assert not path.exists()
            await first
            assert load(path).jobs["a"].pid == "p1"

    asyncio.run(main())
