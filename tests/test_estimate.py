"""``batchgen estimate``: hand-computed sums, the --json shape, and splits against states of real runs."""

from __future__ import annotations

import json

import pytest
from runner_helpers import lost_submits_left_unknown, make_images, run_cli, write_manifest

from batchgen.cli import main
from batchgen.estimate import classify, estimate
from batchgen.lifecycle import JobStatus
from batchgen.manifest import load_manifest
from batchgen.models import SEEDANCE, SORA_PRO, SORA_STD
from batchgen.state import committed_spend
from batchgen.simulator import Faults
from batchgen.state import JobRecord, State, apply

PROMPT = "The {stem} turns slowly on a studio table"



def mixed_jobs():
    return [
        {"image": "img/shot00.png", "prompt": PROMPT, "duration": [4, 12, 20], "resolution": ["720p", "1080p"]},
        {"image": "img/shot01.png", "prompt": PROMPT, "duration": 8, "resolution": "1080p", "takes": 2},
        {"image": "img/shot02.png", "prompt": PROMPT, "model": SEEDANCE, "duration": [5, 7, 15]},
        {"image": "img/shot03.png", "prompt": PROMPT, "model": SEEDANCE, "resolution": "480p", "duration": 10,
         "takes": 3, "aspect_ratio": "1:1"},
        {"image": "img/shot04.png", "prompt": PROMPT, "model": SORA_STD, "duration": [4, 8, 12]},
    ]


@pytest.fixture
def mixed(tmp_path):
    make_images(tmp_path / "img", 5)
    return write_manifest(tmp_path, mixed_jobs(), fallback_model=SEEDANCE, max_cost=40)


# Worked by hand from the price table (per second: Pro 0.30/0.50, standard 0.10, Seedance 0.12/0.24):
#   Pro 720p    4+12+20 s          = 36 s x 0.30 = 10.80
#   Pro 1080p   4+12+20 + 8+8 s    = 52 s x 0.50 = 26.00
#   Seedance 720p  5+7+15 s        = 27 s: 1.20 + 1.68 + 3.60 = 6.48
#   Seedance 480p  3 takes of 10 s = 30 s: 3 x 1.20 = 3.60
#   standard 720p  4+8+12 s        = 24 s x 0.10 = 2.40
MIXED_ROWS = [
    {"model": SEEDANCE, "resolution": "480p", "jobs": 3, "seconds": 30, "dollars": 3.60, "price_per_second": 0.12,
     "confirmed": False},
    {"model": SEEDANCE, "resolution": "720p", "jobs": 3, "seconds": 27, "dollars": 6.48, "price_per_second": 0.24,
     "confirmed": False},
    {"model": SORA_STD, "resolution": "720p", "jobs": 3, "seconds": 24, "dollars": 2.40, "price_per_second": 0.10,
     "confirmed": False},
    {"model": SORA_PRO, "resolution": "720p", "jobs": 3, "seconds": 36, "dollars": 10.80, "price_per_second": 0.30,
     "confirmed": True},
    {"model": SORA_PRO, "resolution": "1080p", "jobs": 5, "seconds": 52, "dollars": 26.00, "price_per_second": 0.50,
     "confirmed": True},
]
MIXED_TOTAL = {"jobs": 17, "seconds": 169, "dollars": 49.28}


def estimate_json(*argv: str, capsys) -> dict:
    capsys.readouterr()
    assert main(["estimate", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_mixed_manifest_estimate_equals_the_hand_computed_sum(mixed):
    est = estimate(load_manifest(mixed)).to_json()
    assert est["rows"] == MIXED_ROWS
    assert est["total"] == MIXED_TOTAL
    assert est["split"] is None and est["other_in_state"] is None and est["max_cost"] == 40.0


def test_fallback_line_prices_jobs_on_the_fallback_and_names_what_it_refuses(mixed):
    fb = estimate(load_manifest(mixed)).fallback
    # 11 jobs on Sora models (88 s, $36.80 Pro; 24 s, $2.40 standard); Seedance takes 4-15 s, so the two 20 s jobs
    # cannot move; the other nine: 720p 4+12+4+8+12 s x 0.24 = 9.60, 1080p 4+12+8+8 s x 0.54 = 17.28.
    assert (fb.model, fb.jobs, fb.seconds, fb.dollars_asked) == (SEEDANCE, 11, 112, 39.20)
    assert (fb.accepted_jobs, fb.dollars_on_fallback) == (9, 26.88)
    refusal = f"duration 20 is not accepted by {SEEDANCE}; use one of 4-15 (whole seconds)"
    assert fb.not_accepted == [{"problem": refusal, "jobs": 2}]


def test_text_table_is_aligned_and_flags_unconfirmed_prices_and_the_fallback(mixed, capsys):
    assert main(["estimate", str(mixed)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"{mixed}: 17 jobs, 169 s of video, $49.28 at list price"
    table = lines[1:9]
    assert len({len(line) for line in table if not line.lstrip().startswith("-")}) == 1, "columns line up"
    assert table[2].split() == [SEEDANCE, "*", "480p", "0.12", "3", "30", "3.60"]
    assert table[6].split() == [SORA_PRO, "1080p", "0.50", "5", "52", "26.00"]
    assert table[7].split() == ["total", "17", "169", "49.28"]
    assert f"* price unconfirmed: {SORA_STD} (durations and price unconfirmed" in out
    assert "max_cost $40.00: $49.28 does not fit; the run will refuse to start (--partial runs" in out
    assert (f"fallback {SEEDANCE}: the 11 jobs on other models cost $39.20 as asked; on the fallback, "
            "the 9 it accepts would cost $26.88") in out
    assert f"2 jobs could not fall back: duration 20 is not accepted by {SEEDANCE}" in out


def test_json_shape_is_stable(mixed, capsys):
    est = estimate_json(str(mixed), capsys=capsys)
    assert set(est) == {"manifest", "state", "rows", "total", "split", "max_cost", "unconfirmed", "fallback",
                        "other_in_state"}
    assert est["manifest"] == str(mixed) and est["state"] is None
    assert est["rows"] == MIXED_ROWS and est["total"] == MIXED_TOTAL
    assert [u["model"] for u in est["unconfirmed"]] == [SEEDANCE, SORA_STD]
    assert set(est["fallback"]) == {"model", "jobs", "seconds", "dollars_asked", "dollars_on_fallback",
                                    "accepted_jobs", "not_accepted"}


def test_manifest_models_block_overriding_the_sora_price_changes_the_estimate(tmp_path, capsys):
    make_images(tmp_path / "img", 5)
    manifest = write_manifest(tmp_path, mixed_jobs(), models={
        SORA_PRO: {"price_per_second": {"720p": 0.40, "1080p": 0.70}, "note": "new contract"}})
    est = estimate_json(str(manifest), capsys=capsys)
    pro = [r for r in est["rows"] if r["model"] == SORA_PRO]
    assert [(r["resolution"], r["dollars"], r["price_per_second"]) for r in pro] == [
        ("720p", 14.40, 0.40), ("1080p", 36.40, 0.70)]
    assert est["total"]["dollars"] == 63.28  # 49.28 - 10.80 - 26.00 + 14.40 + 36.40


def test_user_models_file_price_applies_and_the_manifest_overrides_it_again(tmp_path, monkeypatch, capsys):
    make_images(tmp_path / "img", 5)
    models = tmp_path / "models.yaml"
    models.write_text(f"{SORA_STD}:\n  price_per_second: {{720p: 0.15}}\n  confirmed: true\n", encoding="utf-8")
    monkeypatch.setenv("BATCHGEN_MODELS", str(models))
    manifest = write_manifest(tmp_path, mixed_jobs())
    est = estimate_json(str(manifest), capsys=capsys)
    std = next(r for r in est["rows"] if r["model"] == SORA_STD)
    assert (std["dollars"], std["confirmed"]) == (3.60, True)  # 24 s x 0.15
    assert SORA_STD not in [u["model"] for u in est["unconfirmed"]]
    write_manifest(tmp_path, mixed_jobs(), models={SORA_STD: {"price_per_second": {"720p": 0.05}}})
    est = estimate_json(str(manifest), capsys=capsys)
    assert next(r for r in est["rows"] if r["model"] == SORA_STD)["dollars"] == 1.20


# -- against the state of real runs ---------------------------------------------------------


@pytest.fixture
def batch(tmp_path):
    """Three images, one 4 s Sora 2 Pro job each ($1.20 apiece)."""
    make_images(tmp_path / "img", 3)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": PROMPT, "duration": 4}])
    return manifest, tmp_path / "out"


def test_budget_capped_run_splits_into_paid_and_still_to_pay(sim, batch, capsys):
    manifest, out = batch
    assert run_cli(sim, manifest, out, "--max-cost", "2.5", "--partial", "--concurrency", "1") == 3
    state = str(out / "state.jsonl")
    est = estimate_json(str(manifest), "--state", state, capsys=capsys)
    assert est["state"] == state
    assert est["split"] == {
        "paid": {"jobs": 2, "seconds": 8, "dollars": 2.40},
        "in_flight": {"jobs": 0, "seconds": 0, "dollars": 0.0},
        "failed": {"jobs": 0, "seconds": 0, "dollars": 0.0},
        "to_pay": {"jobs": 1, "seconds": 4, "dollars": 1.20},
    }
    assert est["total"] == {"jobs": 3, "seconds": 12, "dollars": 3.60}
    assert est["split"]["paid"]["dollars"] == sim.ledger()["charged_total"], "paid is what the provider billed"
    assert est["other_in_state"] == {"jobs": 0, "dollars": 0.0, "fetching": 0}

    assert main(["estimate", str(manifest), "--state", state]) == 0
    out_text = capsys.readouterr().out
    assert "already paid      2 jobs       8 s        $2.40  (prices recorded at submit)" in out_text
    assert "still to pay      1 job        4 s        $1.20" in out_text


def test_paid_jobs_keep_their_submit_price_when_the_table_changes(sim, batch, capsys):
    manifest, out = batch
    assert run_cli(sim, manifest, out, "--max-cost", "2.5", "--partial", "--concurrency", "1") == 3
    write_manifest(manifest.parent, [{"image": "img/*.png", "prompt": PROMPT, "duration": 4}],
                   models={SORA_PRO: {"price_per_second": {"720p": 0.40, "1080p": 0.60}}})
    est = estimate_json(str(manifest), "--state", str(out / "state.jsonl"), capsys=capsys)
    assert est["split"]["paid"]["dollars"] == 2.40, "already paid at $0.30/s"
    assert est["split"]["to_pay"]["dollars"] == 1.60, "the rest at the new $0.40/s"
    assert est["rows"][0]["dollars"] == est["total"]["dollars"] == 4.00


def test_failed_tasks_are_not_billed_and_shown_apart(make_sim, batch, capsys):
    sim = make_sim(faults=Faults(rate_fail=1.0))
    manifest, out = batch
    assert run_cli(sim, manifest, out) == 1
    assert sim.ledger()["charged_total"] == 0
    state = out / "state.jsonl"
    est = estimate_json(str(manifest), "--state", str(state), capsys=capsys)
    assert est["split"]["failed"] == {"jobs": 3, "seconds": 12, "dollars": 3.60}
    assert est["split"]["paid"]["jobs"] == est["split"]["to_pay"]["jobs"] == 0
    assert main(["estimate", str(manifest), "--state", str(state)]) == 0
    assert "(not billed; paid again only with --retry-failed)" in capsys.readouterr().out


def test_lost_submit_answers_count_as_in_flight_and_were_charged(make_sim, batch, capsys):
    sim = make_sim(faults=Faults(rate_drop_after=1.0))
    manifest, out = batch
    with lost_submits_left_unknown():
        assert run_cli(sim, manifest, out) == 1
    est = estimate_json(str(manifest), "--state", str(out / "state.jsonl"), capsys=capsys)
    assert est["split"]["in_flight"] == {"jobs": 3, "seconds": 12, "dollars": 3.60}
    assert est["split"]["in_flight"]["dollars"] == sim.ledger()["charged_total"]


def test_edited_job_is_to_pay_and_the_old_one_is_reported_apart(sim, batch, capsys):
    manifest, out = batch
    assert run_cli(sim, manifest, out) == 0
    write_manifest(manifest.parent, [
        {"image": "img/shot0[01].png", "prompt": PROMPT, "duration": 4},
        {"image": "img/shot02.png", "prompt": "Another motion for {stem}", "duration": 8},
    ])
    est = estimate_json(str(manifest), "--state", str(out / "state.jsonl"), capsys=capsys)
    assert est["split"]["paid"] == {"jobs": 2, "seconds": 8, "dollars": 2.40}
    assert est["split"]["to_pay"] == {"jobs": 1, "seconds": 8, "dollars": 2.40}
    assert est["other_in_state"] == {"jobs": 1, "dollars": 1.20, "fetching": 0}
    assert main(["estimate", str(manifest), "--state", str(out / "state.jsonl")]) == 0
    assert "not in this manifest: 1 job in the state ($1.20 committed)" in capsys.readouterr().out


def test_missing_state_file_and_bad_manifest_exit_2(tmp_path, mixed, capsys):
    assert main(["estimate", str(mixed), "--state", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl: no such state file" in capsys.readouterr().err
    bad = write_manifest(tmp_path, [{"image": "img/shot00.png", "prompt": "p", "duration": 5}])
    assert main(["estimate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "batch.yaml:" in err and "duration 5 is not accepted" in err


# -- pure classification ----------------------------------------------------------------------


@pytest.mark.parametrize("status, pid, cost, error_class, bucket", [
    (JobStatus.NEW, "", 1.2, "", "to_pay"),
    (JobStatus.SUBMITTING, "", 1.2, "", "in_flight"),
    (JobStatus.UNKNOWN, "", 1.2, "", "in_flight"),
    (JobStatus.SUBMITTED, "p1", 1.2, "", "in_flight"),
    (JobStatus.COMPLETED, "p1", 1.2, "", "paid"),
    (JobStatus.DOWNLOADED, "p1", 1.2, "", "paid"),
    (JobStatus.FAILED, "p1", 0.0, "task", "failed"),    # the task failed: refunded
    (JobStatus.FAILED, "", 1.2, "rejected", "failed"),  # refused for good: paid again only with --retry-failed
    (JobStatus.FAILED, "", 1.2, "submit", "to_pay"),    # the submit gave up, never accepted: the next run pays it
    (JobStatus.FAILED, "p1", 1.2, "download", "paid"),  # generated, then the download failed: billed
])
def test_classify(status, pid, cost, error_class, bucket):
    assert classify(JobRecord(key="k", status=status, pid=pid, cost=cost, error_class=error_class)) == bucket
    assert classify(None) == "to_pay"


def test_paid_plus_in_flight_equals_the_runners_committed_spend_and_switched_jobs_show_on_their_model(mixed):
    manifest = load_manifest(mixed)
    jobs = manifest.jobs
    state = State()
    events = [
        # 0: downloaded on Pro at an older price; 1: switched to Seedance by the run; 2: in flight;
        # 3: failed task (refunded); 4: download failed after completion (billed).
        (0, [("submitting", {"model": SORA_PRO, "cost": 1.00}), ("submitted", {"pid": "a"}),
             ("completed", {"pid": "a"}), ("downloaded", {"path": "x", "bytes": 1, "sha256": "s"})]),
        (1, [("submitting", {"model": SEEDANCE, "cost": 2.88}), ("submitted", {"pid": "b"}),
             ("completed", {"pid": "b"})]),
        (2, [("submitting", {"model": SORA_PRO, "cost": 3.60}), ("submitted", {"pid": "c"})]),
        (3, [("submitting", {"model": SORA_PRO, "cost": 2.00}), ("submitted", {"pid": "d"}),
             ("failed", {"class": "task", "cost": 0.0})]),
        (4, [("submitting", {"model": SORA_PRO, "cost": 6.00}), ("submitted", {"pid": "e"}),
             ("failed", {"class": "download"})]),
    ]
    for index, evs in events:
        job = jobs[index]
        apply(state, {"ev": "job", "key": job.key, "id": job.id, "model": job.model})
        for kind, fields in evs:
            apply(state, {"ev": kind, "key": job.key, **fields})
    assert [(j.model, j.resolution, j.duration) for j in jobs[:5]] == [
        (SORA_PRO, "720p", 4), (SORA_PRO, "1080p", 4), (SORA_PRO, "720p", 12), (SORA_PRO, "1080p", 12),
        (SORA_PRO, "720p", 20)]
    est = estimate(manifest, state, "s.jsonl")
    split = {k: (v.jobs, v.dollars) for k, v in est.split.items()}
    assert split == {"paid": (3, 9.88), "in_flight": (1, 3.60), "failed": (1, 6.00), "to_pay": (12, 30.48)}
    assert round(split["paid"][1] + split["in_flight"][1], 2) == committed_spend(state.jobs.values())
    seedance_1080 = next(r for r in est.rows if (r.model, r.resolution) == (SEEDANCE, "1080p"))
    assert (seedance_1080.jobs, seedance_1080.dollars) == (1, 2.88)
    # Total: the hand sum with job 0 at $1.00 instead of $1.20 and job 1 at $2.88 instead of $2.00.
    assert est.total.dollars == round(49.28 - 0.20 + 0.88, 2)
