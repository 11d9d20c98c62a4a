"""Progress display and the log file: the bar path (tqdm into a buffer), plain lines, and a real run's log."""

from __future__ import annotations

import io
import logging
import re

from runner_helpers import make_images, run_cli, write_manifest

from batchgen import events as ev
from batchgen.jobs import JobSpec
from batchgen.planner import Plan
from batchgen.progress import Progress, setup_logging

MODEL = "openai/sora-2/image-to-video-pro"


def _jobs(n: int) -> list[JobSpec]:
    return [JobSpec(id=f"job{i:02d}", model=MODEL, prompt="p", image=f"img{i}.png", image_path=None,
                    image_url=None, image_sha256=f"{i:064x}", params={"duration": 4, "resolution": "720p"},
                    take=1, output=f"job{i:02d}.mp4") for i in range(n)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_come_every_15_seconds_or_each_tenth_and_say_counts_rate_and_eta():
    jobs = _jobs(20)
    out, clock = io.StringIO(), Clock()
    progress = Progress(20, stream=out, bar=False, clock=clock)
    progress(ev.Planned(plan=Plan(submit=jobs[2:], done=jobs[:2])))
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].endswith("] 2/20 done, queued 18, $0.00 committed")

    committed = 0.0
    for job in jobs[2:6]:
        committed += 1.2
        progress(ev.Submitting(job=job, attempt=1, model=MODEL, cost=1.2, committed=committed))
        progress(ev.Submitted(job=job, pid="p", model=MODEL, cost=1.2, committed=committed))
    clock.now += 5
    progress(ev.Downloaded(job=jobs[2], path="a", bytes=1, sha256="s", committed=committed))
    assert progress.lines == 1, "3/20 is not a new tenth and 5 s is not 15 s: no line"

    clock.now += 11
    progress(ev.Generating(job=jobs[3], pid="p", committed=committed))
    assert progress.lines == 2, "15 s after the last line, any event prints one"
    last = out.getvalue().splitlines()[-1]
    assert "3/20 done, queued 14, generating 3, $4.80 committed" in last
    assert re.search(r"3\.8/min, ETA 4m\d\ds$", last), last  # 1 video in 16 s, 17 left

    clock.now += 1
    progress(ev.Downloaded(job=jobs[4], path="a", bytes=1, sha256="s", committed=committed))
    assert progress.lines == 3 and "4/20 done" in out.getvalue().splitlines()[-1], "20 % reached: a line"
    progress(ev.Failed(job=jobs[5], error="x", cls="task", committed=committed))
    assert progress.lines == 3
    progress.close()
    assert progress.lines == 4 and "failed 1" in out.getvalue().splitlines()[-1]
    progress.close()
    assert progress.lines == 4, "the same summary twice in a row is printed once"


def test_bar_shows_done_of_total_rate_and_the_counts_with_dollars():
    jobs = _jobs(6)
    out = io.StringIO()
    progress = Progress(6, stream=out, bar=True)
    progress(ev.Planned(plan=Plan(submit=jobs[1:], done=jobs[:1])))
    for n, job in enumerate(jobs[1:4], 1):
        progress(ev.Submitting(job=job, attempt=1, model=MODEL, cost=1.2, committed=round(1.2 * n, 2)))
    progress(ev.Generating(job=jobs[1], pid="p", committed=3.6))
    progress(ev.Downloaded(job=jobs[2], path="a", bytes=1, sha256="s", committed=3.6))
    progress(ev.Unknown(job=jobs[3], error="lost", committed=3.6))
    frames = out.getvalue().split("\r")
    assert any("2/6" in f and "queued 2, generating 1, unknown 1, $3.60" in f for f in frames), frames[-3:]
    assert re.search(r"batch:\s+33%", out.getvalue())
    final = out.getvalue().split("\r")[-1]
    assert "2/6 [" in final and "video" in final  # tqdm's elapsed<ETA, rate in videos


def _screen(text: str) -> list[str]:
    """What a terminal shows for ``text``: each line as its carriage returns and ANSI clears left it."""
    shown = []
    for line in re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).split("\n"):
        cells: list[str] = []
        for part in line.split("\r"):
            cells[:len(part)] = part
        shown.append("".join(cells).rstrip())
    return [line for line in shown if line]


def test_the_bar_is_cleared_at_the_end_not_left_stuck():
    jobs = _jobs(5)
    out = io.StringIO()
    progress = Progress(5, stream=out, bar=True)
    progress(ev.Planned(plan=Plan(submit=jobs)))
    progress(ev.Downloaded(job=jobs[0], path="a", bytes=1, sha256="s", committed=1.2))
    progress(ev.Downloaded(job=jobs[1], path="a", bytes=1, sha256="s", committed=2.4))
    assert any("40%" in line for line in _screen(out.getvalue()))
    progress.close()
    assert _screen(out.getvalue()) == [], "a 40 % bar must not stay on screen under the summary"


def test_after_a_stop_the_bar_and_lines_say_what_is_in_flight_instead_of_an_eta():
    jobs, clock = _jobs(6), Clock()
    for bar in (True, False):
        out = io.StringIO()
        progress = Progress(6, stream=out, bar=bar, clock=clock)
        progress(ev.Planned(plan=Plan(submit=jobs)))
        for job in jobs[:3]:
            progress(ev.Submitted(job=job, pid="p", model=MODEL, cost=1.2, committed=3.6))
        clock.now += 20
        progress(ev.Downloaded(job=jobs[0], path="a", bytes=1, sha256="s", committed=3.6))
        assert "ETA" in out.getvalue() or "<" in out.getvalue()
        progress(ev.Stopping(reason="interrupted (Ctrl-C)"))
        clock.now += 20
        progress(ev.Generating(job=jobs[1], pid="p", committed=3.6))
        last = _screen(out.getvalue())[-1]
        assert "stopping: 2 in flight" in last, last
        assert "ETA" not in last and "<" not in last and "/min" not in last and "s/video" not in last, last


def test_a_job_far_past_its_expected_time_is_named():
    jobs, clock = _jobs(4), Clock()
    out = io.StringIO()
    progress = Progress(4, stream=out, bar=False, clock=clock, every=1.0, expected=lambda job: 40.0)
    progress(ev.Planned(plan=Plan(submit=jobs[1:], poll=jobs[:1])))
    for job in jobs[1:]:
        progress(ev.Submitted(job=job, pid="p", model=MODEL, cost=1.2, committed=4.8))
        clock.now += 30
    progress(ev.Downloaded(job=jobs[1], path="a", bytes=1, sha256="s", committed=4.8))
    assert progress.slow() == "", "90 s in, nobody is 2 x 40 s past the expected 40 s"
    clock.now += 130
    progress(ev.Generating(job=jobs[3], pid="p", committed=4.8))
    last = out.getvalue().splitlines()[-1]
    assert last.endswith("slow: job00 (3m00s past its expected 40s), job02 (2m30s past its expected 40s), "
                         "job03 (2m00s past its expected 40s)"), last
    progress(ev.Downloaded(job=jobs[0], path="a", bytes=1, sha256="s", committed=4.8))
    assert progress.slow().startswith("job02 ("), "a finished job is no longer slow"


def test_quiet_prints_nothing():
    jobs = _jobs(2)
    for bar in (True, False):
        out = io.StringIO()
        progress = Progress(2, stream=out, quiet=True, bar=bar)
        progress(ev.Planned(plan=Plan(submit=jobs)))
        progress(ev.Downloaded(job=jobs[0], path="a", bytes=1, sha256="s"))
        progress.close()
        assert out.getvalue() == ""


def test_verbosity_levels_and_the_key_is_masked_everywhere(tmp_path):
    log = logging.getLogger("batchgen")
    for verbosity, shown in ((-1, ["ERROR"]), (0, ["WARNING", "ERROR"]), (1, ["INFO", "WARNING", "ERROR"])):
        console = io.StringIO()
        setup_logging(tmp_path / f"v{verbosity}.log", verbosity, stream=console, secret="sk-SECRET-123")
        log.info("info line")
        log.warning("warning with key %s inside", "sk-SECRET-123")
        log.error("error line")
        assert [line.split(":")[0] for line in console.getvalue().splitlines()] == shown
        text = (tmp_path / f"v{verbosity}.log").read_text()
        assert "sk-SECRET-123" not in console.getvalue() + text
        assert "warning with key *** inside" in text and "info line" in text
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO info line", text)
    setup_logging(None, 0)


def test_a_toy_key_leaves_log_lines_readable_as_the_stored_state_does(tmp_path):
    """A simulator rehearsal's key such as 'k' is no secret (redact.MIN_KEY_LENGTH): masking it would turn
    'kept the older video of sneaker-4s' into '***ept the older video of snea***er-4s'."""
    console = io.StringIO()
    setup_logging(tmp_path / "k.log", 0, stream=console, secret="k")
    logging.getLogger("batchgen").warning("kept the older video of sneaker-4s as sneaker-4s.prev-1.mp4")
    setup_logging(None, 0)
    for text in (console.getvalue(), (tmp_path / "k.log").read_text()):
        assert "kept the older video of sneaker-4s as sneaker-4s.prev-1.mp4" in text, text


def test_a_real_run_writes_plain_lines_and_a_log_of_every_decision(sim, tmp_path, capsys):
    make_images(tmp_path / "img", 3)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "turns {stem}", "duration": 4}])
    out = tmp_path / "out"
    assert run_cli(sim, manifest, out) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("[")]
    assert lines[0].endswith("0/3 done, queued 3, $0.00 committed")
    assert re.search(r"3/3 done, \$3\.60 committed, [\d.]+/min$", lines[-1]), lines
    log_text = (out / "batchgen.log").read_text()
    ledger = sim.ledger()
    assert "run planned: 3 to submit" in log_text
    for pid in ledger["outputs"]:
        assert f"submitted as {pid} ({MODEL}, $1.20)" in log_text
    assert len(re.findall(rf"generated by {re.escape(MODEL)} in \d+\.\ds", log_text)) == 3
    assert len(re.findall(r"saved shot0\d-4s-720p\.mp4 \(\d+ bytes, sha256 [0-9a-f]{12}\)", log_text)) == 3
    assert "test-key" not in log_text
    setup_logging(None, 0)
