"""Validation that must be complete in one round and cost nothing: every problem of a row at
once, settings that could switch off the budget or crash the reader, expansion bounds, file
name lengths, image sizes, and the warnings a careful user wants before paying."""

import json
import math
import os
import time
import tracemalloc
from pathlib import Path
from textwrap import dedent

import pytest
from PIL import Image

from batchgen.cli import main
from batchgen.errors import ManifestError
from batchgen.images import MAX_IMAGE_SIDE, clear_memory_cache
from batchgen.manifest import DEFAULT_MAX_JOBS, NAME_SUFFIX_RESERVE, load_manifest
from batchgen.manifest_fields import FieldProblem, param_problems
from batchgen.models import SEEDANCE, SORA_PRO, ModelTable


@pytest.fixture(autouse=True)
def _fresh_memory():
    clear_memory_cache()


@pytest.fixture
def d(tmp_path):
    Image.new("RGB", (320, 256), "red").save(tmp_path / "a.jpg")
    return tmp_path


def write(folder: Path, text: str, name: str = "m.yaml") -> Path:
    path = folder / name
    path.write_text(dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(folder: Path, text: str) -> list:
    with pytest.raises(ManifestError) as err:
        load_manifest(write(folder, text))
    return err.value.problems


def test_a_row_with_four_problems_gets_all_four_in_one_round(d):
    found = problems(d, """
        jobs:
          - image: missing.jpg
            prompt: "The {colour} mug"
            duration: 3
            resolution: 4k
    """)
    messages = sorted((p.line, p.message.split(" ", 1)[0]) for p in found)
    assert messages == [(2, "image"), (3, "prompt"), (4, "duration"), (5, "resolution")], found
    assert "missing.jpg does not exist" in found[-1].message or any("missing.jpg" in p.message for p in found)
    assert any("unknown placeholder {colour}" in p.message for p in found)


def test_a_missing_last_image_does_not_hide_duration_and_aspect_errors(d):
    found = problems(d, f"""
        jobs:
          - image: a.jpg
            model: {SEEDANCE}
            prompt: x
            last_image: gone.jpg
            duration: 40
            aspect_ratio: "5:4"
    """)
    assert sorted(p.line for p in found) == [5, 6, 7], found
    assert "last_image" in next(p.message for p in found if p.line == 5)


def test_a_typo_is_one_problem_with_a_suggestion(d):
    found = problems(d, """
        jobs:
          - image: a.jpg
            promt: x
    """)
    assert [(p.line, p.message) for p in found] == [(3, "unknown field 'promt' (did you mean 'prompt'?)")]


def test_model_problems_are_typed_by_field():
    spec = ModelTable().get(SEEDANCE)
    assert param_problems(spec, [5, 40], ["720p", "4k"], {"aspect_ratio": "5:4"}) == [
        FieldProblem("duration", f"duration 40 is not accepted by {SEEDANCE}; use one of 4-15 (whole seconds)"),
        FieldProblem("resolution", f"resolution '4k' is not accepted by {SEEDANCE}; use one of 480p, 720p, 1080p"),
        FieldProblem("aspect_ratio", f"aspect_ratio '5:4' is not accepted by {SEEDANCE}; use one of "
                                     "16:9, 9:16, 4:3, 3:4, 1:1, 21:9"),
    ]


def test_an_output_collision_names_both_rows_by_file_line_and_id(d):
    path = write(d, """
        jobs:
          - image: a.jpg
            prompt: x
            id: first
            output: clip
          - image: a.jpg
            prompt: y
            id: second
            output: clip
    """)
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    (problem,) = err.value.problems
    assert problem.line == 9
    assert f"{path}:2 (job first) and {path}:6 (job second)" in problem.message


@pytest.mark.parametrize("size", [(16, 16), (255, 900), (MAX_IMAGE_SIDE + 1, 300)])
def test_images_too_small_or_too_large_on_a_side_are_flagged(d, size):
    Image.new("1", size).save(d / "odd.png")
    manifest = load_manifest(write(d, "jobs:\n  - image: odd.png\n    prompt: x\n"))
    (warning,) = manifest.warnings
    assert warning.line == 2 and f"{size[0]}x{size[1]} px" in warning.message


def test_a_9000_px_image_is_flagged(d):
    Image.new("1", (9000, 9000)).save(d / "big.png")
    manifest = load_manifest(write(d, "jobs:\n  - image: big.png\n    prompt: x\n"))
    assert [w.line for w in manifest.warnings] == [2] and "9000x9000" in manifest.warnings[0].message


def test_a_fitting_image_has_no_warning(d):
    assert load_manifest(write(d, "jobs:\n  - image: a.jpg\n    prompt: x\n")).warnings == []


def test_an_output_name_too_long_for_the_runners_temporaries_is_refused(d):
    fits = "x" * (255 - NAME_SUFFIX_RESERVE)
    assert load_manifest(write(d, f"jobs:\n  - image: a.jpg\n    prompt: x\n    output: {fits}\n")).jobs
    found = problems(d, f"jobs:\n  - image: a.jpg\n    prompt: x\n    output: {'x' * 250}\n")
    assert [p.line for p in found] == [4] and "too long for this file system" in found[0].message


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "0", "-5", "0.0"])
def test_max_cost_must_be_finite_and_positive(d, value):
    found = problems(d, f"max_cost: {value}\njobs:\n  - image: a.jpg\n    prompt: x\n")
    assert [p.line for p in found] == [1] and "above zero" in found[0].message


@pytest.mark.parametrize("setting", [
    "fallback_model: [a, b]",
    "fallback_model: !!python/object/apply:os.system ['echo hi']",
    "max_cost: !!int zz",
    "max_cost: !!timestamp 2020-13-45",
    "concurrency: !!python/name:os.system",
])
def test_settings_of_the_wrong_type_are_problems_not_tracebacks(d, setting, capsys):
    path = write(d, f"{setting}\njobs:\n  - image: a.jpg\n    prompt: x\n")
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert [p.line for p in err.value.problems] == [1]
    assert main(["validate", str(path)]) == 2
    assert f"{path}:1:" in capsys.readouterr().err


def test_takes_is_bounded_before_anything_is_built(d):
    tracemalloc.start()
    start = time.perf_counter()
    found = problems(d, "jobs:\n  - image: a.jpg\n    prompt: x\n    takes: 100000000\n")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - start < 2 and peak < 20_000_000
    assert [p.line for p in found] == [4]
    assert f"over the manifest's limit of {DEFAULT_MAX_JOBS}" in found[0].message and "max_jobs: N" in found[0].message


def test_max_jobs_is_configurable_and_counts_the_whole_manifest(d):
    row = "  - image: a.jpg\n    prompt: {p}\n    takes: 3\n    output: '{p}-{{take}}'\n"
    found = problems(d, "max_jobs: 5\njobs:\n" + row.format(p="one") + row.format(p="two"))
    assert [p.line for p in found] == [7] and "more than 5 jobs" in found[0].message
    assert len(load_manifest(write(d, "max_jobs: 6\njobs:\n" + row.format(p="one") + row.format(p="two"))).jobs) == 6


@pytest.mark.parametrize("pattern", ["/**/*.jpg", "../**/*.jpg", "shots/../../*.jpg"])
def test_a_glob_stays_inside_the_manifests_folder(d, pattern):
    found = problems(d, f"jobs:\n  - image: '{pattern}'\n    prompt: x\n")
    assert [p.line for p in found] == [2] and "outside the manifest's folder" in found[0].message


def test_a_glob_matching_more_files_than_max_jobs_is_refused(d):
    for i in range(4):
        Image.new("RGB", (300, 300)).save(d / f"s{i}.png")
    found = problems(d, "max_jobs: 3\njobs:\n  - image: 's*.png'\n    prompt: x\n")
    assert [p.line for p in found] == [3] and "matches more than 3 files" in found[0].message


def test_a_glob_through_a_folder_link_matches_each_picture_once(d):
    # '**' follows folder links: 'up -> ..' made 41 jobs of one picture, all writing one output.
    (d / "shots" / "more").mkdir(parents=True)
    Image.new("RGB", (320, 256), "blue").save(d / "shots" / "mug.jpg")
    Image.new("RGB", (320, 256), "green").save(d / "shots" / "more" / "cup.jpg")
    (d / "shots" / "more" / "up").symlink_to("..")
    (d / "shots" / "same.jpg").symlink_to("mug.jpg")  # another name in its folder: a picture of its own
    manifest = load_manifest(write(d, "jobs:\n  - image: 'shots/**/*.jpg'\n    prompt: x\n"))
    assert [j.image for j in manifest.jobs] == ["shots/more/cup.jpg", "shots/mug.jpg", "shots/same.jpg"]


def test_a_row_over_50_jobs_or_100_dollars_is_warned_in_validate(d, capsys):
    path = write(d, f"jobs:\n  - image: a.jpg\n    prompt: x\n    takes: 51\n"
                    f"  - image: a.jpg\n    prompt: y\n    model: {SORA_PRO}\n    duration: 20\n"
                    f"    resolution: 1080p\n    takes: 11\n")
    manifest = load_manifest(path)
    big = [w for w in manifest.warnings if "retired" not in w.message]  # Sora 2's own warning aside
    assert [w.line for w in big] == [2, 5]
    assert "51 jobs" in big[0].message and "$110.00" in big[1].message
    assert main(["validate", str(path)]) == 0
    assert f"warning: {path}:5:" in capsys.readouterr().err


def test_plan_lists_every_job_as_a_table_and_as_json(d, capsys):
    path = write(d, f"""
        jobs:
          - image: a.jpg
            prompt: "The {{stem}} turns, take {{take}}"
            model: {SEEDANCE}
            aspect_ratio: "9:16"
            takes: 2
    """)
    assert main(["plan", str(path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["id", "output", "model", "params", "price", "prompt"]
    assert table[1].split() == ["a-5s-720p-take1", "a-5s-720p-take1.mp4", SEEDANCE, "5s", "720p",
                                "aspect_ratio=9:16", "$1.20", "The", "a", "turns,", "take", "1"]
    assert table[-1] == "2 jobs, $2.40 at list price"
    assert main(["plan", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["jobs"][1] == {
        "id": "a-5s-720p-take2", "output": "a-5s-720p-take2.mp4", "prompt": "The a turns, take 2",
        "model": SEEDANCE, "params": {"duration": 5, "resolution": "720p", "aspect_ratio": "9:16"},
        "price": 1.2, "where": f"{path}:2",
    }
    assert math.isclose(data["total"], 2.4) and data["warnings"] == []


def test_a_retired_model_validates_with_one_warning_that_names_the_way_out(d):
    """Issue 12: Sora 2 is retired upstream; its rows still validate, with one warning per model (not per
    job) saying so and naming fallback_model: (or what the fallback will do once it is set)."""
    rows = "".join(f"  - image: a.jpg\n    prompt: take {i}\n    model: {SORA_PRO}\n    output: t{i}\n" for i in range(3))
    manifest = load_manifest(write(d, "jobs:\n" + rows))
    (warning,) = manifest.warnings
    assert warning.line == 2 and "retired upstream since 2026-09-24" in warning.message
    assert "fallback_model" in warning.message and SEEDANCE in warning.message
    with_fallback = load_manifest(write(d, f"fallback_model: {SEEDANCE}\njobs:\n" + rows))
    assert [w.message.endswith(f"move to fallback_model {SEEDANCE} on any sign of the retirement")
            for w in with_fallback.warnings] == [True]


def test_the_retirement_warning_names_the_jobs_the_fallback_cannot_take(d):
    """It used to promise every job would move to the fallback, while Seedance refuses Sora's 20 s
    (or Fast refuses 1080p): those jobs would wait for a retired model."""
    rows = "".join(f"  - image: a.jpg\n    prompt: shot\n    model: {SORA_PRO}\n    duration: {s}\n    output: s{s}\n"
                   for s in (8, 16, 20))
    manifest = load_manifest(write(d, f"fallback_model: {SEEDANCE}\njobs:\n" + rows))
    (warning,) = manifest.warnings
    assert warning.message.endswith(
        f"on any sign of the retirement; but 2 of its jobs cannot move there (first: {d / 'm.yaml'}:8 job s16: "
        f"duration 16 is not accepted by {SEEDANCE}; use one of 4-15 (whole seconds)): give them values the "
        "fallback takes, or they wait for a retired model"), warning.message


def test_many_jobs_on_one_output_or_id_are_one_problem_each_not_one_per_job(d):
    """10,000 CSV rows over one picture without an output: template printed 9,999 problems."""
    path = d / "m.csv"
    path.write_text("image,prompt\n" + "".join(f"a.jpg,shot {i}\n" for i in range(2000)), encoding="utf-8")
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    (problem,) = err.value.problems
    assert (problem.line, problem.message) == (3, (
        f"output 'a-5s-720p.mp4' is written by 2000 jobs: {path}:2 (job a-5s-720p), {path}:3 (job a-5s-720p) and "
        f"1998 more, the last at {path}:2001 (job a-5s-720p); give them different output: names, e.g. add {{take}} "
        "or a variable"))
    path.write_text("image,prompt,id,output\n" + "".join(f"a.jpg,shot,hero,o{i}\n" for i in range(4)), encoding="utf-8")
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert [p.message for p in err.value.problems] == [
        "id 'hero' is used 4 times (lines 2 and 3 and 2 more, the last on line 5); ids must be unique"]


@pytest.mark.parametrize("kind", ["folder", "pipe", "device", "huge"])
def test_a_manifest_that_is_no_regular_file_or_huge_is_refused_not_read_forever(d, kind):
    """'batchgen validate' on /dev/zero, a named pipe or a video renamed .yaml used to read until memory
    ran out (or wait for a writer forever)."""
    path = d / "m.yaml"
    if kind == "folder":
        path.mkdir()
    elif kind == "pipe":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    else:
        with open(path, "wb") as fh:
            fh.truncate(101 * 10**6)  # sparse: costs nothing on disk
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    (problem,) = err.value.problems
    assert problem.message.startswith("the manifest is 101 MB, over the 100 MB a manifest may be" if kind == "huge"
                                      else "the manifest is not a regular file (a folder, device or pipe)")
