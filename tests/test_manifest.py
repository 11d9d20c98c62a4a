import hashlib
import json
import os
from pathlib import Path
from textwrap import dedent

import pytest
from PIL import Image

from batchgen.errors import ManifestError
from batchgen.images import ImageCache, clear_memory_cache
from batchgen.jobs import Location
from batchgen.manifest import Manifest, load_manifest
from batchgen.models import SEEDANCE, SORA_PRO, SORA_STD, ModelTable

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fresh_memory():
    clear_memory_cache()


@pytest.fixture
def d(tmp_path):
    return make_manifest_folder(tmp_path)


@pytest.fixture(autouse=True)
def sora_pro_default(monkeypatch):
    """These cases (ids like a-4s-720p, Sora's durations) were written when Sora 2 Pro was the default
    model; they test parsing, not the default, which test_models.py checks is Seedance 2.0."""
    monkeypatch.setattr("batchgen.manifest_rows.DEFAULT_MODEL", SORA_PRO)


def make_manifest_folder(tmp_path):
    """A manifest folder with a few real images and some broken ones (shared with the run-level tests)."""
    Image.new("RGB", (64, 48), "red").save(tmp_path / "a.jpg")
    Image.new("RGB", (48, 64), "blue").save(tmp_path / "b.png")
    (tmp_path / "shots").mkdir()
    for name in ("z.jpg", "m.jpg", "a2.jpg"):
        Image.new("RGB", (32, 32), "green").save(tmp_path / "shots" / name)
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("this is not a photo\n")
    Image.new("RGB", (16, 16)).save(tmp_path / "icon.ico", format="ICO")
    Image.new("RGB", (16, 16)).save(tmp_path / "huge.png")
    with open(tmp_path / "huge.png", "r+b") as fh:
        fh.truncate(21_000_000)  # sparse: 21 MB by size, costs nothing on disk
    return tmp_path


def write(folder: Path, content: str | bytes, name: str = "m.yaml") -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else dedent(content).lstrip("\n").encode())
    return path


def load(folder, content, name="m.yaml", **kw) -> Manifest:
    return load_manifest(write(folder, content, name), **kw)


def problems(folder, content, name="m.yaml"):
    with pytest.raises(ManifestError) as err:
        load(folder, content, name)
    return err.value.problems


def job(**fields) -> str:
    """One YAML job item at lines 2.. of a manifest that starts with 'jobs:'."""
    body = "\n".join(f"    {k}: {v}" for k, v in fields.items())
    return "jobs:\n  - " + body[4:] + "\n"


# (content, file name, [(line, text in message)]) -- each case must produce exactly these problems.
BAD = {
    "yaml-syntax": ("jobs:\n  - image: a.jpg\n    prompt: [unclosed\n  - image: b.png\n", "m.yaml",
                    [(4, "YAML syntax error: expected ',' or ']'")]),
    "yaml-unclosed-quote": ('jobs:\n  - image: a.jpg\n    prompt: "never closed\n', "m.yaml",
                            [(4, "YAML syntax error")]),
    "yaml-empty": ("", "m.yaml", [(None, "the manifest is empty")]),
    "yaml-not-mapping": ("- image: a.jpg\n", "m.yaml", [(1, "must be a mapping with a 'jobs:' list")]),
    "yaml-control-character": ('jobs:\n  - image: a.jpg\n    prompt: "a\x01b"\n', "m.yaml", [(3, (
        "the file contains the control character U+0001, which YAML does not allow; delete it"))]),
    "vars-under-defaults": ("defaults:\n  vars: {tone: warm}\n" + job(image="a.jpg", prompt="x"), "m.yaml", [(2, (
        "vars: does not go under defaults:; move it to the top level"))]),
    "unknown-top-level": ("job:\n  - image: a.jpg\n", "m.yaml",
                          [(2, "unknown top-level key 'job'; did you mean 'jobs'?"), (None, "no 'jobs:' list")]),
    "jobs-not-list": ("jobs: a.jpg\n", "m.yaml", [(1, "jobs: must be a list")]),
    "jobs-empty": ("jobs: []\n", "m.yaml", [(1, "jobs: is empty")]),
    "job-not-mapping": ("jobs:\n  - a.jpg\n", "m.yaml", [(2, "each job must be a mapping")]),
    "duplicate-key": (job(image="a.jpg", prompt="one") + "    prompt: two\n", "m.yaml",
                      [(4, "'prompt' is given twice (also on line 3)")]),
    "unknown-field": (job(image="a.jpg", promt="hi", prompt="x"), "m.yaml",
                      [(3, "unknown field 'promt' (did you mean 'prompt'?)")]),
    "field-of-other-model": (job(image="a.jpg", prompt="x", aspect_ratio='"16:9"'), "m.yaml",
                             [(4, f"'aspect_ratio' is not a field of {SORA_PRO}; it is taken by {SEEDANCE}")]),
    "nested-value": (job(image="a.jpg", prompt="{a: 1}"), "m.yaml", [(3, "prompt: must be a value")]),
    "prompt-missing": (job(image="a.jpg"), "m.yaml", [(2, "prompt is required")]),
    "prompt-empty": (job(image="a.jpg", prompt="'   '"), "m.yaml", [(3, "prompt is empty")]),
    "prompt-blank-value": (job(image="a.jpg", prompt=""), "m.yaml", [(3, "prompt is empty")]),
    "prompt-list": (job(image="a.jpg", prompt="[a, b]"), "m.yaml", [(3, "prompt must be a single value")]),
    "image-missing-field": (job(prompt="x"), "m.yaml", [(2, "image is required")]),
    "image-empty-text": (job(image="' '", prompt="x"), "m.yaml", [(2, "image is required; give a path")]),
    "last-image-empty-text": (job(image="a.jpg", prompt="x", model=SEEDANCE, last_image="''"), "m.yaml",
                              [(5, "last_image is empty; give the picture the clip should end on")]),
    "image-not-found": (job(image="nope.jpg", prompt="x"), "m.yaml", [(2, "nope.jpg does not exist")]),
    "image-zero-bytes": (job(image="zero.jpg", prompt="x"), "m.yaml", [(2, "is empty (0 bytes)")]),
    "image-text-named-jpg": (job(image="text.jpg", prompt="x"), "m.yaml", [(2, "text.jpg is not an image")]),
    "image-unsupported-type": (job(image="icon.ico", prompt="x"), "m.yaml", [(2, "is a ICO file")]),
    "image-over-20mb": (job(image="huge.png", prompt="x"), "m.yaml", [(2, "21.0 MB, over the API's 20 MB limit")]),
    "image-directory": (job(image="shots", prompt="x"), "m.yaml", [(2, "is not a file")]),
    "glob-matches-nothing": (job(image="'shots/*.webp'", prompt="x"), "m.yaml", [(2, "matches no files")]),
    "image-ftp-url": (job(image="ftp://host/a.jpg", prompt="x"), "m.yaml", [(2, "only http(s) URLs")]),
    "unknown-model": (job(image="a.jpg", prompt="x", model="acme/veo-9"), "m.yaml",
                      [(4, "unknown model 'acme/veo-9'; known models: bytedance")]),
    "duration-5-for-sora": (job(image="a.jpg", prompt="x", duration=5), "m.yaml",
                            [(4, f"duration 5 is not accepted by {SORA_PRO}; use one of 4, 8, 12, 16, 20")]),
    "duration-5s": (job(image="a.jpg", prompt="x", duration="5s"), "m.yaml",
                    [(4, "duration '5s' must be a whole number, e.g. duration: 5")]),
    "duration-float": (job(image="a.jpg", prompt="x", duration="8.0"), "m.yaml",
                       [(4, "duration '8.0' must be a whole number, e.g. duration: 8")]),
    "duration-list-one-bad": (job(image="a.jpg", prompt="x", duration="[4, 6]"), "m.yaml",
                              [(4, "duration 6 is not accepted")]),
    "resolution-4k": (job(image="a.jpg", prompt="x", resolution="4k"), "m.yaml",
                      [(4, "resolution '4k' is not accepted by")]),
    "seedance-aspect": (job(image="a.jpg", prompt="x", model=SEEDANCE, aspect_ratio='"5:4"'), "m.yaml",
                        [(5, "aspect_ratio '5:4' is not accepted")]),
    "takes-0": (job(image="a.jpg", prompt="x", takes=0), "m.yaml", [(4, "takes is 0; it must be at least 1")]),
    "takes-words": (job(image="a.jpg", prompt="x", takes="two"), "m.yaml", [(4, "takes 'two' must be a whole number")]),
    "duplicate-ids": (job(image="a.jpg", prompt="x", id="hero") + "  - image: b.png\n    prompt: y\n    id: hero\n",
                      "m.yaml", [(7, "id 'hero' is used twice (lines 2 and 5)")]),
    "duplicate-outputs": (job(image="a.jpg", prompt="x") + "  - image: a.jpg\n    prompt: y\n", "m.yaml",
                          [(4, "output 'a-4s-720p.mp4' is written by two jobs: ")]),
    "duplicate-outputs-case": (job(image="a.jpg", prompt="x", output="Clip") + job(image="b.png", prompt="x",
                               output="clip")[6:], "m.yaml", [(7, "output 'clip.mp4' is written by two jobs: ")]),
    "output-absolute": (job(image="a.jpg", prompt="x", output="/tmp/{stem}"), "m.yaml", [(4, "is an absolute path")]),
    "output-dotdot": (job(image="a.jpg", prompt="x", output="clips/../../{stem}"), "m.yaml",
                      [(4, "climbs out of the output folder")]),
    "output-renders-empty": ("vars:\n  tag: ''\n" + job(image="a.jpg", prompt="x", output="'{tag}'"), "m.yaml",
                             [(6, "output renders to an empty name")]),
    "output-folder-is-a-file-of-another-job": (job(image="a.jpg", prompt="x", output="clip") + job(
        image="b.png", prompt="x", output="Clip.json/x")[6:], "m.yaml", [(7, (
            "output 'Clip.json/x.mp4' needs a folder 'Clip.json', but that is a file of "))]),
    "output-folder-is-a-run-name": (job(image="a.jpg", prompt="x", output="'unmatched/{stem}'"), "m.yaml", [(4, (
        "output 'unmatched/a.mp4' needs a folder 'unmatched', but that is a name the run itself uses"))]),
    "output-only-extension": (job(image="a.jpg", prompt="x", output=".mp4"), "m.yaml", [(4, "empty name")]),
    "output-uses-derived-id": (job(image="a.jpg", prompt="x", output="'{id}'"), "m.yaml",
                               [(4, "output uses {id}, but this job has no id")]),
    "unknown-placeholder-prompt": (job(image="a.jpg", prompt="'{colour} mug'"), "m.yaml",
                                   [(3, "prompt uses unknown placeholder {colour}")]),
    "unknown-placeholder-output": (job(image="a.jpg", prompt="x", output="'{sku}-{stem}'"), "m.yaml",
                                   [(4, "output uses unknown placeholder {sku}")]),
    "malformed-template": (job(image="a.jpg", prompt="'a { b'"), "m.yaml", [(3, "malformed template")]),
    "attribute-placeholder": (job(image="a.jpg", prompt="'{stem.__class__}'"), "m.yaml",
                              [(3, "must be a plain name")]),
    "bad-id-chars": (job(image="a.jpg", prompt="x", id="'my clip'"), "m.yaml", [(4, "id 'my clip' contains ' '")]),
    "var-shadows-builtin": ("vars:\n  stem: x\n" + job(image="a.jpg", prompt="x"), "m.yaml",
                            [(4, "template variable 'stem' clashes with the built-in {stem}")]),
    "bad-default": ("defaults:\n  duration: 7\n" + job(image="a.jpg", prompt="x") + "  - image: b.png\n    prompt: y\n",
                    "m.yaml", [(2, "duration 7 is not accepted")]),
    "fallback-model-unknown": ("fallback_model: nope/model\n" + job(image="a.jpg", prompt="x"), "m.yaml",
                               [(1, "fallback_model 'nope/model' is not a known model")]),
    "max-cost-text": ("max_cost: lots\n" + job(image="a.jpg", prompt="x"), "m.yaml", [(1, "max_cost 'lots' must be")]),
    "max-cost-quoted": ('max_cost: "25"\n' + job(image="a.jpg", prompt="x"), "m.yaml", [(1, (
        "max_cost '25' must be a dollar amount above zero, like 25 or 12.50 (YAML read it as text: write the bare "
        "number, without quotes or '$'"))]),
    "max-cost-empty": ("max_cost:\n" + job(image="a.jpg", prompt="x"), "m.yaml", [(1, "(it is empty)")]),
    "concurrency-0": ("concurrency: 0\n" + job(image="a.jpg", prompt="x"), "m.yaml", [(1, "concurrency 0 must be")]),
    "models-block-incomplete": ("models:\n  acme/new:\n    durations: [5]\n" + job(image="a.jpg", prompt="x"), "m.yaml",
                                [(2, "models.acme/new: a new model needs price_per_second, resolutions")]),
    "models-block-broken-no-cascade": ("fallback_model: acme/new\nmodels:\n  acme/new:\n    durations: [5]\n"
                                       "    resolutions: 720p\n    price_per_second: 0.2\n"
                                       + job(image="a.jpg", prompt="x", model="acme/new"), "m.yaml",
                                       [(3, "models.acme/new: resolutions must be a list")]),
    "yaml-not-utf8": (b"jobs:\n  - image: a.jpg\n    prompt: caf\xe9\n", "m.yaml", [(3, "not UTF-8 at byte 38; save it as UTF-8 (your editor's encoding setting)")]),
    "unknown-extension": ("jobs: []\n", "m.txt", [(None, "unknown manifest type '.txt'")]),
    # CSV
    "csv-empty": ("\n\n", "m.csv", [(None, "the CSV file is empty")]),
    "csv-no-header": ("a.jpg,a red mug\n", "m.csv", [(1, "no 'prompt' column"), (1, "no 'image' column")]),
    "csv-typo-column": ("image,promt\na.jpg,x\n", "m.csv", [(1, "no 'prompt' column in the header row; did you mean 'promt'?")]),
    "csv-header-only": ("image,prompt\n", "m.csv", [(1, "has a header but no rows")]),
    "csv-ragged": ("image,prompt\na.jpg,x\nb.png,y,extra\n", "m.csv", [(3, "this row has 3 cells but the header names 2")]),
    "csv-unnamed-column": ("image,,prompt\na.jpg,oops,x\n", "m.csv", [(2, "column 2 has a value but no header")]),
    "csv-duplicate-column": ("image,prompt,Prompt\na.jpg,x,y\n", "m.csv", [(1, "column 'prompt' appears twice")]),
    "csv-unclosed-quote": ('image,prompt\na.jpg,"x\nb.png,y\n', "m.csv", [(2, "a quoted cell is probably not closed")]),
    "csv-not-utf8": (b"image,prompt\na.jpg,ok\nb.png,gr\xfcn\n", "m.csv", [(3, "not UTF-8 at byte 30; save it as UTF-8")]),
    "csv-duration-after-multiline": ('image,prompt,duration\na.jpg,"two\nlines",4\nb.png,y,5s\n', "m.csv",
                                     [(4, "duration '5s' must be a whole number")]),
    "csv-missing-prompt-cell": ("image,prompt\na.jpg,\n", "m.csv", [(2, "prompt is required")]),
    "csv-column-clashes-with-builtin-once": ("image,prompt,stem\na.jpg,x,1\nb.png,y,2\na.jpg,z,3\n", "m.csv",
                                            [(2, "template variable 'stem' clashes with the built-in {stem}")]),
    "csv-typo-column-near-field": ("image,prompt,Duraton\na.jpg,x,8\n", "m.csv", [(1, (
        "column 'Duraton' is not a job field and no prompt, output or id uses it, so it would do nothing; "
        "did you mean 'duration'?"))]),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_manifest(d, case):
    content, name, expected = BAD[case]
    found = problems(d, content, name)
    assert len(found) == len(expected), "\n".join(map(str, found))
    for (line, text), problem in zip(expected, found):
        assert problem.line == line and text in problem.message, str(problem)
        assert problem.file == str(d / name)


def test_a_column_named_like_a_field_that_a_template_uses_is_a_variable(d):
    # Used (with a format spec, even): the user meant it, so it is no typo of 'duration'.
    manifest = load(d, "image,prompt,Duraton\na.jpg,take {Duraton:>3} of the mug,8\n", "m.csv")
    assert [j.prompt for j in manifest.jobs] == ["take   8 of the mug"]


def test_bad_case_count():
    assert len(BAD) >= 30


def test_every_problem_reported_at_once_with_job_ids(d):
    found = problems(d, """
        jobs:
          - image: nope.jpg
            prompt: x
          - image: a.jpg
            id: second
            prompt: y
            duration: 5
          - image: b.png
            promt: z
    """)
    # The typo'd 'promt' is one problem: no redundant "prompt is required" beside it.
    assert [(p.line, p.job) for p in found] == [(2, "nope-4s-720p"), (7, "second"), (9, None)]
    assert "nope.jpg" in found[0].message and "duration 5" in found[1].message
    assert found[2].message == "unknown field 'promt' (did you mean 'prompt'?)"


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest file not found"):
        load_manifest(tmp_path / "gone.yaml")


def test_problem_text_has_file_line_and_job(d):
    with pytest.raises(ManifestError) as err:
        load(d, job(image="a.jpg", prompt="x", id="hero", duration=5))
    text = str(err.value)
    assert text.startswith("1 problem in the manifest; nothing was sent:")
    assert f"{d / 'm.yaml'}:5: [job hero] duration 5 is not accepted" in text


# -- good manifests ---------------------------------------------------------------------------


def test_minimal_job_fields(d):
    m = load(d, job(image="a.jpg", prompt="A red mug turns slowly"))
    [j] = m.jobs
    sha = hashlib.sha256((d / "a.jpg").read_bytes()).hexdigest()
    assert (j.id, j.model, j.prompt, j.image, j.image_path, j.image_url, j.image_sha256) == (
        "a-4s-720p", SORA_PRO, "A red mug turns slowly", "a.jpg", str(d / "a.jpg"), None, sha)
    assert dict(j.params) == {"duration": 4, "resolution": "720p"}
    assert (j.take, j.output, j.where, j.fallback_model) == (1, "a-4s-720p.mp4", Location(str(d / "m.yaml"), 2), None)
    assert (m.path, m.max_cost, m.fallback_model, m.fallback_after, m.settings) == (d / "m.yaml", None, None, 3, {})


def test_list_expansion_order_and_lines(d):
    m = load(d, """
        # comment
        jobs:
          - image: a.jpg
            prompt: x
            duration: [4, 8]
            resolution: [720p, 1080P]
          - image: b.png
            prompt: y
    """)
    assert [(j.duration, j.resolution, j.where.line) for j in m.jobs] == [
        (4, "720p", 3), (4, "1080p", 3), (8, "720p", 3), (8, "1080p", 3), (4, "720p", 7)]
    assert [j.output for j in m.jobs][:2] == ["a-4s-720p.mp4", "a-4s-1080p.mp4"]


def test_glob_sorted_one_job_per_file(d):
    m = load(d, job(image="'shots/*.jpg'", prompt="'{stem}'"))
    assert [(j.image, j.prompt, j.output) for j in m.jobs] == [
        ("shots/a2.jpg", "a2", "a2-4s-720p.mp4"), ("shots/m.jpg", "m", "m-4s-720p.mp4"),
        ("shots/z.jpg", "z", "z-4s-720p.mp4")]
    assert all(j.image_path == str(d / j.image) for j in m.jobs)


def test_image_list_and_url_and_parent_folder(d):
    sub = d / "manifests"
    sub.mkdir()
    m = load(sub, """
        jobs:
          - image: [../a.jpg, "https://cdn.example.com/p/Red%20Mug.webp?v=2"]
            prompt: "{stem}"
    """)
    local, url = m.jobs
    assert (local.image, local.image_path, local.prompt) == ("../a.jpg", str(d / "a.jpg"), "a")
    assert (url.image_url, url.image_path, url.image_sha256, url.prompt, url.output) == (
        "https://cdn.example.com/p/Red%20Mug.webp?v=2", None, None, "Red Mug", "Red_Mug-4s-720p.mp4")


def test_takes_default_output_and_explicit_id_suffixes(d):
    m = load(d, """
        jobs:
          - image: a.jpg
            prompt: "take {take} of {id}"
            takes: 2
          - image: b.png
            id: hero
            prompt: "{id}"
            duration: [4, 8]
            takes: 2
    """)
    assert [(j.id, j.take, j.output, j.prompt) for j in m.jobs[:2]] == [
        ("a-4s-720p-take1", 1, "a-4s-720p-take1.mp4", "take 1 of a-4s-720p-take1"),
        ("a-4s-720p-take2", 2, "a-4s-720p-take2.mp4", "take 2 of a-4s-720p-take2")]
    assert [j.id for j in m.jobs[2:]] == ["hero-4s-take1", "hero-4s-take2", "hero-8s-take1", "hero-8s-take2"]
    assert m.jobs[2].prompt == "hero-4s-take1"


def test_literal_id_on_glob_gets_safe_stem_suffix(d):
    Image.new("RGB", (8, 8)).save(d / "shots" / "Red Mug.jpg")
    m = load(d, job(image="'shots/*.jpg'", prompt="x", id="hero"))
    assert [j.id for j in m.jobs] == ["hero-Red_Mug", "hero-a2", "hero-m", "hero-z"]
    assert m.jobs[0].output == "Red_Mug-4s-720p.mp4"


def test_templates_vars_row_vars_and_format_specs(d):
    m = load(d, """
        vars:
          brand: Acme
          n: 7
          ratio: 16:9
        defaults:
          output: "{brand}/{model_name}/{stem}-{n:03d}-t{take:02d}"
          prompt: "{brand} {stem} at {ratio}, {duration}s {resolution}"
        jobs:
          - image: a.jpg
          - image: b.png
            vars: {brand: "Zeta Co", n: 8}
            model: bytedance/seedance-2.0/image-to-video
            aspect_ratio: 16:9
    """)
    a, b = m.jobs
    assert (a.prompt, a.output) == ("Acme a at 16:9, 4s 720p", "Acme/image-to-video-pro/a-007-t01.mp4")
    assert (b.prompt, b.output) == ("Zeta Co b at 16:9, 5s 720p", "Zeta_Co/image-to-video/b-008-t01.mp4")
    assert dict(b.params) == {"duration": 5, "resolution": "720p", "aspect_ratio": "16:9"}


def test_variables_are_templates_filled_per_job_and_a_note_stays_literal(d):
    """A variable holding placeholders used to reach the paid prompt as literal braces."""
    m = load(d, """
        vars:
          look: "the {stem} in {light}"
          light: "{tone} light"
          tone: warm
          folder: "{stem}/{duration}s"
        jobs:
          - image: a.jpg
            prompt: "{look}, {{literal}}. {note}"
            output: "{folder}/clip"
          - image: b.png
            prompt: "{look}"
            vars: {tone: cold}
    """, notes={(7, "a.jpg"): "make it {brighter}"})
    a, b = m.jobs
    assert (a.prompt, a.output) == ("the a in warm light, {literal}. make it {brighter}", "a/4s/clip.mp4")
    assert b.prompt == "the b in cold light"


@pytest.mark.parametrize("lines, message", [
    ('  a: "{b} and"\n  b: "{a}"\n', "prompt cannot be rendered: variables refer to each other in a loop "
                                     "({a} -> {b} -> {a}); give one of them a plain value"),
    ('  a: "{a}"\n  b: x\n', "variables refer to each other in a loop ({a} -> {a})"),
    ('  a: "{b}"\n  b: "{nope}"\n', "prompt cannot be rendered: variable {b} uses unknown placeholder {nope}"),
    ('  a: "smile :-{"\n  b: x\n', "prompt cannot be rendered: variable {a}: malformed template"),
])
def test_variable_loops_and_unknowns_inside_variables_are_problems(d, lines, message):
    found = problems(d, "vars:\n" + lines + job(image="a.jpg", prompt="'{a}'"))
    assert [(p.line, message in p.message) for p in found] == [(6, True)], found


def test_output_sanitised_and_mp4_added_once(d):
    m = load(d, """
        jobs:
          - {image: a.jpg, prompt: x, output: "My Clip (final)!"}
          - {image: a.jpg, prompt: x, output: "./clips//..hidden/b  c.MP4"}
          - {image: a.jpg, prompt: x, output: 'sub\\été'}
    """)
    assert [j.output for j in m.jobs] == ["My_Clip_final_.mp4", "clips/hidden/b_c.mp4", "sub/été.mp4"]
    assert [j.id for j in m.jobs] == ["My_Clip_final_", "clips/hidden/b_c", "sub/été"]


def test_settings_models_block_and_fallback(d):
    m = load(d, """
        max_cost: 12.5
        fallback_model: acme/cheap
        fallback_after: 2
        concurrency: 3
        models:
          openai/sora-2/image-to-video-pro:
            price_per_second: {720p: 0.4, 1080p: 0.6}
          acme/cheap:
            durations: [3, 6]
            resolutions: [540p]
            price_per_second: 0.05
        jobs:
          - {image: a.jpg, prompt: x}
          - {image: a.jpg, prompt: x, model: acme/cheap, duration: 6, output: cheap}
    """)
    assert (m.max_cost, m.fallback_model, m.fallback_after, m.settings) == (12.5, "acme/cheap", 2, {"concurrency": 3})
    assert m.models.get(SORA_PRO).price("720p", 4) == 1.6
    assert [(j.model, dict(j.params), j.fallback_model) for j in m.jobs] == [
        (SORA_PRO, {"duration": 4, "resolution": "720p"}, "acme/cheap"),
        ("acme/cheap", {"duration": 6, "resolution": "540p"}, "acme/cheap")]


def test_caller_model_table_is_used(d):
    table = ModelTable().extended({"acme/only": {"durations": [2], "resolutions": ["360p"], "price_per_second": 1}})
    [j] = load(d, job(image="a.jpg", prompt="x", model="acme/only"), models=table).jobs
    assert dict(j.params) == {"duration": 2, "resolution": "360p"}


def test_seedance_last_image_and_yaml_anchors(d):
    m = load(d, """
        defaults: &base
          model: bytedance/seedance-2.0/image-to-video
        jobs:
          - <<: *base
            image: a.jpg
            last_image: b.png
            prompt: morph
            duration: 12
          - image: a.jpg
            prompt: plain
            model: openai/sora-2/image-to-video
            duration: 12
            output: std
    """)
    seed, std = m.jobs
    assert dict(seed.params) == {"duration": 12, "resolution": "720p", "last_image": str(d / "b.png")}
    assert (std.model, std.duration) == (SORA_STD, 12)


def test_csv_bom_crlf_semicolon_quotes_and_trailing_junk(d):
    text = (
        "\ufeffimage;Prompt;duration;colour;;\r\n"
        'a.jpg;"A {colour} mug; steam, rising";8;red;;\r\n'
        'b.png;"Line one\r\nline two ""quoted""";;"blue; navy";;\r\n'
        "shots/*.jpg;{stem} in {colour};4|8;;\r\n"
        ";;;;;\r\n"
        "\r\n"
    )
    m = load(d, text.encode("utf-8"), "jobs.csv")
    assert [(j.where.line, j.image, j.duration) for j in m.jobs] == [
        (2, "a.jpg", 8), (3, "b.png", 4),
        (5, "shots/a2.jpg", 4), (5, "shots/a2.jpg", 8), (5, "shots/m.jpg", 4), (5, "shots/m.jpg", 8),
        (5, "shots/z.jpg", 4), (5, "shots/z.jpg", 8)]
    assert m.jobs[0].prompt == "A red mug; steam, rising"
    assert m.jobs[1].prompt == 'Line one\r\nline two "quoted"'
    assert m.jobs[2].prompt == "a2 in"  # rendered prompts are stripped
    assert m.jobs[2].output == "a2-4s-720p.mp4"


@pytest.mark.parametrize("sep", ["\t", ","])
def test_csv_other_delimiters_and_string_numbers(d, sep):
    rows = [["image", "prompt", "duration", "takes", "resolution"], ["a.jpg", "x, y", "8", "2", "1080p"]]
    text = "\n".join(sep.join(f'"{c}"' if sep in c else c for c in r) for r in rows) + "\n"
    m = load(d, text, "m.tsv" if sep == "\t" else "m.csv")
    assert [(j.prompt, j.duration, j.resolution, j.take) for j in m.jobs] == [("x, y", 8, "1080p", 1), ("x, y", 8, "1080p", 2)]


def test_csv_extra_columns_are_template_vars_and_short_rows_pad(d):
    m = load(d, "image,prompt,product,unused\na.jpg,{product} spins,mug\n", "m.csv")
    assert m.jobs[0].prompt == "mug spins"


def test_csv_column_near_a_field_is_a_variable_when_a_template_uses_it_or_the_field_is_there(d):
    m = load(d, f"image,prompt,model,seed,seeds,images\na.jpg,{{images}} at {{seeds}},{SEEDANCE},7,three,two mugs\n",
             "m.csv")
    assert (m.jobs[0].prompt, m.jobs[0].params["seed"]) == ("two mugs at three", 7)


def test_persistent_image_cache_is_written(d):
    cache_file = d / ".cache" / "images.json"
    load(d, job(image="a.jpg", prompt="x"), image_cache=ImageCache(cache_file))
    assert list(json.loads(cache_file.read_text())) == [os.path.realpath(d / "a.jpg")]


def test_same_rows_give_same_keys(d):
    first = load(d, job(image="a.jpg", prompt="x")).jobs[0].key
    other = d / "elsewhere"
    other.mkdir()
    (other / "a.jpg").write_bytes((d / "a.jpg").read_bytes())
    assert load(other, job(image="a.jpg", prompt="x")).jobs[0].key == first


@pytest.mark.parametrize("name, count", [("demo.yaml", 6), ("example.yaml", 11), ("example.csv", 6)])
def test_shipped_manifests_load(name, count):
    m = load_manifest(REPO / "manifests" / name)
    assert len(m.jobs) == count
    assert all(j.image_sha256 or j.image_url for j in m.jobs)


def test_demo_is_seedance_720p_with_4_and_8_seconds():
    m = load_manifest(REPO / "manifests" / "demo.yaml")
    assert {j.model for j in m.jobs} == {SEEDANCE}
    assert {j.resolution for j in m.jobs} == {"720p"}
    assert sorted({j.duration for j in m.jobs}) == [4, 8]
