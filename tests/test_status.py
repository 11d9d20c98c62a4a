"""``batchgen status``: a state with every kind of job, written with StateLog, read back offline."""

from __future__ import annotations

import json

import pytest

from batchgen.cli import main
from batchgen.state import StateLog, load
from batchgen.status import summarize

SORA = "openai/sora-2/image-to-video-pro"
SEED = "bytedance/seedance-v2/image-to-video"


def _job(log: StateLog, key: str, line: int, cost: float = 1.2) -> None:
    log.append({"ev": "job", "key": key, "id": f"id-{key}", "output": f"{key}.mp4", "model": SORA,
                "params": {"duration": 4, "resolution": "720p"}, "prompt": "p", "image": "a.png",
                "where": f"shots.yaml:{line}", "cost": cost})


def _submit(log: StateLog, key: str, pid: str, cost: float = 1.2) -> None:
    log.append({"ev": "submitting", "key": key, "attempt": 1, "body_hash": "h" + key, "model": SORA, "cost": cost})
    log.append({"ev": "submitted", "key": key, "pid": pid, "model": SORA})


@pytest.fixture
def state_path(tmp_path):
    """Eight jobs: two done (one on a fallback model), two failed, one unknown, one of each in flight, one new."""
    path = tmp_path / "state.jsonl"
    with StateLog(path) as log:
        log.open()
        log.append({"ev": "run", "phase": "start", "jobs": 8})
        for n, key in enumerate(["done", "fallback", "taskfail", "rejected", "lost", "gen", "fetch", "new"]):
            _job(log, key, 10 + n)
        for key in ("done", "fallback", "taskfail", "gen", "fetch"):
            _submit(log, key, f"pid-{key}")
        for key, model in (("done", SORA), ("fallback", SEED), ("fetch", SORA)):
            log.append({"ev": "completed", "key": key, "pid": f"pid-{key}", "outputs": [f"https://x/{key}.mp4"],
                        "model_used": model, "inference_ms": 4000})
        for key, model in (("done", SORA), ("fallback", SEED)):
            log.append({"ev": "downloaded", "key": key, "path": f"{key}.mp4", "bytes": 10, "sha256": "0" * 64,
                        "model_used": model})
        log.append({"ev": "failed", "key": "taskfail", "class": "task", "message": "content policy", "attempt": 1,
                    "cost": 0.0})
        log.append({"ev": "submitting", "key": "rejected", "attempt": 1, "body_hash": "hr", "model": SORA, "cost": 1.2})
        log.append({"ev": "failed", "key": "rejected", "class": "rejected", "message": "HTTP 400: bad duration",
                    "attempt": 1, "cost": 0.0})
        log.append({"ev": "submitting", "key": "lost", "attempt": 1, "body_hash": "hl", "model": SORA, "cost": 1.2})
        log.append({"ev": "unknown", "key": "lost", "message": "connection reset after the POST was sent"})
        log.append({"ev": "run", "phase": "end", "counts": {}})
    return path


def test_summary_has_counts_spend_failures_unknowns_fallbacks_and_the_next_run(state_path):
    s = summarize(load(state_path), str(state_path))
    assert s["schema"] == 1 and s["jobs"] == 8 and s["runs"] == 1
    assert s["counts"] == {"new": 1, "submitting": 0, "unknown": 1, "submitted": 1, "completed": 1,
                           "downloaded": 2, "failed": 2}
    # Paid or in flight: 2 downloaded + submitted + completed + unknown; failed jobs cost nothing.
    assert s["spend"] == {"committed": 6.0, "downloaded": 2.4, "in_flight": 3.6}
    assert s["failed"] == [
        {"id": "id-taskfail", "key": "taskfail", "where": "shots.yaml:12", "class": "task", "error": "content policy",
         "attempts": 1, "pid": "pid-taskfail"},
        {"id": "id-rejected", "key": "rejected", "where": "shots.yaml:13", "class": "rejected",
         "error": "HTTP 400: bad duration", "attempts": 1, "pid": ""},
    ]
    assert s["unknown"] == [{"id": "id-lost", "key": "lost", "where": "shots.yaml:14",
                             "error": "connection reset after the POST was sent"}]
    assert s["fallbacks"] == [{"id": "id-fallback", "key": "fallback", "where": "shots.yaml:11",
                               "model_asked": SORA, "model_submitted": SORA, "model_used": SEED,
                               "switched": False, "answered_by_other": True}]
    assert s["next_run"] == {"submit": 1, "poll": 1, "download": 1, "skip_failed": 2, "unknown": 1}


def test_cli_json_is_the_summary_and_text_names_each_problem_job(state_path, capsys):
    assert main(["status", str(state_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == summarize(load(state_path), str(state_path))
    assert main(["status", str(state_path)]) == 0
    text = capsys.readouterr().out
    assert "8 jobs over 1 run(s)" in text
    assert "new 1, unknown 1, submitted 1, completed 1, downloaded 2, failed 2" in text
    assert ("$6.00 committed ($2.40 downloaded, $3.60 in flight: 3 jobs billed or maybe billed, not yet on disk)"
            in text)
    assert "failed  id-taskfail (shots.yaml:12) [task]: content policy" in text
    assert "unknown id-lost (shots.yaml:14): connection reset" in text
    assert f"fallback id-fallback: asked {SORA}, got {SEED} (answered by another model)" in text
    assert "next run: submit 1, poll 1, download 1; 2 failed kept" in text


def test_status_reads_while_a_run_holds_the_lock_and_a_dead_runs_submit_is_unknown(tmp_path, capsys):
    path = tmp_path / "state.jsonl"
    log = StateLog(path)
    log.open()
    _job(log, "a", 3)
    log.append({"ev": "submitting", "key": "a", "attempt": 1, "body_hash": "x", "model": SORA, "cost": 1.2})
    log.flush()
    try:
        assert main(["status", str(path), "--json"]) == 0
    finally:
        log.close()
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["unknown"] == 1 and data["next_run"]["unknown"] == 1
    assert "stopped between recording the submit" in data["unknown"][0]["error"]


def test_missing_state_file_says_where_it_comes_from(tmp_path, capsys):
    assert main(["status", str(tmp_path / "nope.jsonl")]) != 0
    err = capsys.readouterr().err
    assert "nope.jsonl: no such state file" in err and "batchgen run" in err
