"""``batchgen run MANIFEST --redo``: one new paid take per row marked redo, the note in {note}, the old takes kept."""

from __future__ import annotations

import re

from runner_helpers import assert_batch_intact, make_images, run_cli, write_manifest

from batchgen.lifecycle import JobStatus
from batchgen.manifest import load_manifest
from batchgen.picks import group_rows, load_picks, make_pick, redo_rows, save_picks
from batchgen.redo import redo_jobs
from batchgen.state import apply, load
from batchgen.state_events import Job

PROMPT = "The {stem} turns slowly. {note}"


def _first_run(sim, tmp_path):
    make_images(tmp_path / "img", 3)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": PROMPT, "duration": 4}])
    out = tmp_path / "out"
    assert run_cli(sim, manifest, out) == 0
    return manifest, out


def _mark(out, image_name: str, status: str, note: str = "") -> str:
    state = load(out / "state.jsonl")
    row = next(r for r in group_rows(state) if r.image.endswith(image_name))
    picks = load_picks(out)
    picks[row.key] = make_pick(row, status, row.takes[0].key if status == "picked" else "", note)
    save_picks(out, picks)
    return row.key


def test_the_note_is_empty_unless_redoing(tmp_path):
    make_images(tmp_path / "img", 1)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": PROMPT, "duration": 4}])
    assert load_manifest(manifest).jobs[0].prompt == "The shot00 turns slowly."
    noted = load_manifest(manifest, notes={(2, "img/shot00.png"): "Slower, please."})
    assert noted.jobs[0].prompt == "The shot00 turns slowly. Slower, please."


def test_redo_pays_one_new_take_per_marked_row_keeps_the_old_ones_and_never_twice(sim, tmp_path, capsys):
    manifest, out = _first_run(sim, tmp_path)
    paid_before = sim.ledger()["charged_total"]
    row = _mark(out, "shot01.png", "redo", "Keep the camera still.")
    _mark(out, "shot00.png", "picked")
    capsys.readouterr()
    assert run_cli(sim, manifest, out, "--redo") == 0
    err = capsys.readouterr().err
    assert "--redo: 1 take(s) for 1 row(s) marked redo" in err and "about to pay: $1.20 for 1 submit(s)" in err
    ledger = sim.ledger()
    assert len(ledger["submissions"]) == 4 and round(ledger["charged_total"] - paid_before, 2) == 1.2
    state = load(out / "state.jsonl")
    done = {r.id: r for r in state.jobs.values() if r.status is JobStatus.DOWNLOADED}
    assert sorted(done) == ["shot00-4s-720p", "shot01-4s-720p", "shot01-4s-720p-take2", "shot02-4s-720p"]
    new = done["shot01-4s-720p-take2"]
    assert new.prompt == "The shot01 turns slowly. Keep the camera still."
    assert done["shot01-4s-720p"].prompt == "The shot01 turns slowly.", "the old take stays as it was"
    assert (out / "shot01-4s-720p-take2.mp4").exists() and (out / "shot01-4s-720p.mp4").exists()
    assert load_picks(out)[row]["redo_take"] == new.key
    assert [len(r.takes) for r in group_rows(state)] == [1, 2, 1], "the new take joins its row"
    assert_batch_intact(sim, out, 4)

    assert run_cli(sim, manifest, out, "--redo") == 0, "a second --redo finds its take done"
    assert run_cli(sim, manifest, out) == 0
    assert len(sim.ledger()["submissions"]) == 4


def test_redo_with_nothing_marked_says_how_to_mark_a_row_and_pays_nothing(sim, tmp_path, capsys):
    manifest, out = _first_run(sim, tmp_path)
    capsys.readouterr()
    assert run_cli(sim, manifest, out, "--redo") == 0
    err = capsys.readouterr().err
    assert "--redo: no row is marked redo in " + str(out / "picks.json") in err
    assert "'r' in 'batchgen review " + str(out / "state.jsonl") + "'" in err
    assert len(sim.ledger()["submissions"]) == 3


def test_a_note_the_prompt_cannot_carry_is_named_before_paying(sim, tmp_path, capsys):
    make_images(tmp_path / "img", 1)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} turns slowly.", "duration": 4}])
    out = tmp_path / "out"
    assert run_cli(sim, manifest, out) == 0
    _mark(out, "shot00.png", "redo", "Make it blue.")
    assert run_cli(sim, manifest, out, "--redo") == 0
    err = capsys.readouterr().err
    assert "the note 'Make it blue.' is not in the prompt, which has no {note}" in err
    assert "add {note} to the row's prompt" in err

    _mark(out, "shot00.png", "redo", "")
    assert run_cli(sim, manifest, out, "--redo") == 0 and "not in the prompt" not in capsys.readouterr().err, (
        "no note, nothing to warn about")


def test_an_interrupted_redo_take_is_resumed_not_paid_again(sim, tmp_path):
    manifest, out = _first_run(sim, tmp_path)
    row = _mark(out, "shot02.png", "redo", "Zoom in.")
    state = load(out / "state.jsonl")
    noted = load_manifest(manifest, notes={(2, "img/shot02.png"): "Zoom in."}).jobs
    picks = load_picks(out)
    first = redo_jobs(redo_rows(picks, state), picks, noted, load_manifest(manifest).jobs, state)
    assert [j.id for j in first.jobs] == ["shot02-4s-720p-take2"] and first.links == {row: first.jobs[0].key}
    assert re.search(r"Zoom in\.$", first.jobs[0].prompt)
    # Linked (as a confirmed --redo does) and recorded: planned again as the same take, not a third one.
    picks[row]["redo_take"] = first.jobs[0].key
    take = first.jobs[0]
    apply(state, Job(take.key, id=take.id, output=take.output, model=take.model, params=dict(take.params),
                     prompt=take.prompt, image=take.image, where=str(take.where), cost=1.2))
    again = redo_jobs(redo_rows(picks, state), picks, noted, load_manifest(manifest).jobs, state)
    assert [j.key for j in again.jobs] == [take.key] and again.links == {}
