"""Issue 13 against the simulator over real HTTP: the primed provider queue and webhooks."""

from __future__ import annotations

import json
import re
import socket

from runner_helpers import assert_batch_intact, make_images, run_cli, write_manifest

from batchgen.simulator.config import Faults


def _batch(tmp_path, count: int):
    make_images(tmp_path / "img", count)
    return write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} spins", "duration": 4}])


def _most_in_flight(state_path) -> int:
    """The most jobs submitted and not yet seen completed at once, from the state's own times."""
    moves = []
    for line in state_path.read_text().splitlines():
        event = json.loads(line)
        if event["ev"] in ("submitted", "completed"):
            moves.append((event["t"], 1 if event["ev"] == "submitted" else -1))
    most = now = 0
    for _, step in sorted(moves):
        now += step
        most = max(most, now)
    return most


def test_a_queueing_provider_is_kept_busy_by_a_few_queued_submits(make_sim, tmp_path):
    """Over its cap the simulator queues (API.md v2): batchgen keeps the cap plus the margin in flight,
    so a slot that frees starts the next task before any read notices; the cap still holds."""
    sim = make_sim(concurrency_cap=2, gen_base=0.4)
    manifest, out = _batch(tmp_path, 8), tmp_path / "out"
    assert run_cli(sim, manifest, out, "--concurrency", "2", "--queue-margin", "2") == 0
    ledger = assert_batch_intact(sim, out, 8)
    assert ledger["max_concurrent"] == 2
    assert _most_in_flight(out / "state.jsonl") == 4
    assert "provider queue primed: up to 2 generating + 2 queued" in (out / "batchgen.log").read_text()


def test_a_provider_that_refuses_the_margin_at_its_cap_costs_retries_not_money(make_sim, tmp_path):
    """Told the provider queues, batchgen sends the margin; one that answers 429 at its cap instead
    (refused, so not billed) only delays those submits: every job is done, none paid twice."""
    sim = make_sim(concurrency_cap=2, at_cap="429", gen_base=0.3)
    manifest, out = _batch(tmp_path, 4), tmp_path / "out"
    assert run_cli(sim, manifest, out, "--concurrency", "2", "--queue-margin", "1") == 0
    ledger = assert_batch_intact(sim, out, 4)
    assert int(ledger["responses"].get("429", 0)) >= 1 and len(ledger["submissions"]) == 4


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_webhooks_bring_the_results_and_reads_are_only_a_safety_net(make_sim, tmp_path):
    """Every delivery is sent twice (duplicates are recorded once); with reads allowed every 50 ms
    the jobs would be read several times each, with deliveries they are not read at all."""
    sim = make_sim(gen_base=0.5, faults=Faults(rate_webhook_duplicate=1.0))
    manifest, out = _batch(tmp_path, 6), tmp_path / "out"
    port = _free_port()
    assert run_cli(sim, manifest, out, "--webhook-url", f"http://127.0.0.1:{port}/hook",
                   "--listen", f"127.0.0.1:{port}") == 0
    ledger = assert_batch_intact(sim, out, 6)
    assert ledger["requests"].get("result", 0) == 0
    delivered = [a for a in ledger["webhook_attempts"] if a.get("status") == 204]
    assert len(delivered) == 12  # each of the 6 twice, each answered 2xx
    log = (out / "batchgen.log").read_text()
    assert "6 job end(s) recorded from deliveries" in log


def test_a_refused_submit_waits_without_its_slot_so_another_job_goes_meanwhile(make_sim, tmp_path, monkeypatch):
    """One slot, no margin: the first submit is refused (a 503, which proves nothing was created) and
    backs off without its slot, so the next job's submit is sent during that wait; the refused job
    takes a slot again before sending. Holding slots through backoffs left the provider idle under
    20 % refusals (bench/perf.py's faults row)."""
    from batchgen.errors import TransientError
    from batchgen.providers.wavespeed import WaveSpeedProvider

    real, sent = WaveSpeedProvider.submit, []

    async def refused_once(self, model, body, **options):
        sent.append(body["image"])
        if len(sent) == 1:
            raise TransientError("submit: HTTP 503: busy, retry later", status=503)
        return await real(self, model, body, **options)

    monkeypatch.setattr(WaveSpeedProvider, "submit", refused_once)
    sim = make_sim(concurrency_cap=1, gen_base=0.3)
    manifest, out = _batch(tmp_path, 2), tmp_path / "out"
    assert run_cli(sim, manifest, out, "--concurrency", "1", "--queue-margin", "0") == 0
    assert_batch_intact(sim, out, 2)
    assert len(sent) == 3 and sent[0] != sent[1] and sent[2] == sent[0], sent
    assert _most_in_flight(out / "state.jsonl") == 1


def test_the_margin_is_sized_for_submits_as_long_as_their_refusals_make_them(make_sim, tmp_path, monkeypatch):
    """Every job's first submit is refused (a 503 with Retry-After 0.4 s): a freed place is refilled
    0.4 s later, not in the POST's few milliseconds, and the margin is sized for that (under 20 %
    refusals and lost answers, counting only the POST left the provider's queue empty)."""
    from batchgen.errors import TransientError
    from batchgen.providers.wavespeed import WaveSpeedProvider

    real, tried = WaveSpeedProvider.submit, set()

    async def refused_first(self, model, body, **options):
        if body["prompt"] not in tried:
            tried.add(body["prompt"])
            raise TransientError("submit: HTTP 503: busy, retry later", status=503, retry_after=0.4)
        return await real(self, model, body, **options)

    monkeypatch.setattr(WaveSpeedProvider, "submit", refused_first)
    # Jobs of 4 s +-50 %: few enough end at once that the margin is sized under its cap (and announced).
    sim = make_sim(concurrency_cap=8, gen_base=4.0, gen_jitter=0.5)
    manifest, out = _batch(tmp_path, 10), tmp_path / "out"
    assert run_cli(sim, manifest, out, "--concurrency", "8") == 0
    assert_batch_intact(sim, out, 10)
    sized = re.findall(r"provider queue primed: .*, submit (\d+\.\d+)s,", (out / "batchgen.log").read_text())
    assert sized and all(float(took) >= 0.35 for took in sized), sized
