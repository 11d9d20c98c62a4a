"""The model table as data: ModelSpec checks, bodies and prices, and the user's models file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runner_helpers import make_images, run_cli, write_manifest

from batchgen.cli import main
from batchgen.errors import ModelTableError
from batchgen.models import BUILTIN_MODELS, DEFAULT_MODEL, SEEDANCE, SEEDANCE_FAST, SORA_PRO, SORA_STD, ModelTable
from batchgen.providers.wavespeed import WaveSpeedProvider
from batchgen.state import load
from batchgen.user_config import user_model_table, user_models_path

build_body = WaveSpeedProvider.build_body
ACME = "acme/motion-1/image-to-video"



# -- ModelSpec ----------------------------------------------------------------------------


def test_prices_follow_the_seed_table_per_second_and_resolution():
    pro = ModelTable().get(SORA_PRO)
    seed_page = {(4, "720p"): 1.20, (8, "720p"): 2.40, (12, "720p"): 3.60, (16, "720p"): 4.80, (20, "720p"): 6.00,
                 (4, "1080p"): 2.00, (8, "1080p"): 4.00, (12, "1080p"): 6.00, (16, "1080p"): 8.00,
                 (20, "1080p"): 10.00}
    assert {(d, r): pro.price(r, d) for d, r in seed_page} == seed_page
    seedance = ModelTable().get(SEEDANCE)
    assert seedance.price("720p", 5) == 1.20, "the docs: $1.20 per 5 s"
    assert seedance.price("480p", 7) == 0.84


def test_price_rounds_each_generation_to_the_cent_and_refuses_an_unpriced_resolution():
    table = ModelTable().extended({ACME: {"durations": [3], "resolutions": ["720p"], "price_per_second": 0.333}})
    assert table.get(ACME).price("720p", 3) == 1.00
    with pytest.raises(ModelTableError, match=r"no price for resolution '4k'; known: 720p"):
        table.get(ACME).price("4k", 3)


def test_check_accepts_defaults_and_names_every_bad_parameter():
    pro = ModelTable().get(SORA_PRO)
    assert pro.check({}) == []
    assert pro.check({"duration": 20, "resolution": "1080p"}) == []
    problems = pro.check({"duration": 5, "resolution": "480p"})
    assert problems == [
        "duration 5 is not accepted by openai/sora-2/image-to-video-pro; use one of 4, 8, 12, 16, 20",
        "resolution '480p' is not accepted by openai/sora-2/image-to-video-pro; use one of 720p, 1080p",
    ]
    assert pro.check({"duration": True}) and pro.check({"duration": "4"}), "only a real integer is a duration"


def test_check_compacts_a_range_and_checks_extra_fields():
    seedance = ModelTable().get(SEEDANCE)
    assert seedance.check({"duration": 15, "aspect_ratio": "21:9", "last_image": "anything"}) == []
    assert seedance.check({"duration": 16}) == [
        "duration 16 is not accepted by bytedance/seedance-2.0/image-to-video; use one of 4-15 (whole seconds)"]
    assert seedance.check({"aspect_ratio": "2:1"})[0].startswith("aspect_ratio '2:1' is not accepted")


def test_body_fills_defaults_and_sends_only_what_the_model_takes():
    table = ModelTable()
    assert build_body(table.get(SORA_PRO), "https://i/x.png", "turns", {}) == {
        "image": "https://i/x.png", "prompt": "turns", "duration": 4, "resolution": "720p"}
    assert build_body(table.get(SORA_STD), "u", "p", {"duration": 8, "resolution": "720p"}) == {
        "image": "u", "prompt": "p", "duration": 8}, "Sora 2 standard takes no resolution field"
    assert build_body(table.get(SEEDANCE), "u", "p", {"duration": 6, "aspect_ratio": "9:16", "last_image": None}) == {
        "image": "u", "prompt": "p", "duration": 6, "resolution": "720p", "aspect_ratio": "9:16"}


def test_unconfirmed_figures_are_marked_so_the_estimate_can_say_so():
    confirmed = {m.id: m.confirmed for m in BUILTIN_MODELS}
    assert confirmed == {SORA_PRO: True, SORA_STD: False, SEEDANCE: False, SEEDANCE_FAST: False}


def test_v2_facts_seedance_default_fast_built_in_sora_retired():
    table = ModelTable()
    assert DEFAULT_MODEL == SEEDANCE
    fast = table.get(SEEDANCE_FAST)
    assert (fast.durations, fast.resolutions, fast.price("720p", 5)) == (tuple(range(4, 16)), ("480p", "720p"), 0.80)
    std = table.get(SORA_STD)
    assert (std.durations, std.price("720p", 20)) == ((4, 8, 12, 16, 20), 2.00)
    for sora in (SORA_STD, SORA_PRO):
        retired = table.get(sora).retired
        assert retired and (retired.date, retired.replacement) == ("2026-09-24", SEEDANCE)
    assert table.get(SEEDANCE).retired is None and table.get(SEEDANCE_FAST).retired is None
    assert {m.min_read_interval for m in BUILTIN_MODELS} == {5.0}, "the docs ask 5 s between reads of a video task"


def test_seedance_generate_audio_and_seed_are_typed_extra_fields():
    seedance = ModelTable().get(SEEDANCE)
    assert seedance.check({"generate_audio": False, "seed": 42}) == []
    assert seedance.check({"generate_audio": "yes", "seed": 1.5, "aspect_ratio": "1:1"}) == [
        f"generate_audio 'yes' is not accepted by {SEEDANCE}; use a true/false",
        f"seed 1.5 is not accepted by {SEEDANCE}; use a whole number"]
    assert seedance.check({"seed": True}), "a bool is not a seed"
    assert build_body(seedance, "u", "p", {"generate_audio": True, "seed": 7}) == {
        "image": "u", "prompt": "p", "duration": 5, "resolution": "720p", "generate_audio": True, "seed": 7}


def test_retired_and_read_floor_are_data_a_models_file_sets():
    table = ModelTable().extended({
        SORA_PRO: {"retired": False, "min_read_interval": 2},
        SEEDANCE: {"retired": {"date": "2027-01-01", "message": "gone", "replacement": SEEDANCE_FAST}},
        ACME: {"durations": [5], "resolutions": ["720p"], "price_per_second": 0.2,
               "extra_fields": {"loud": "bool", "mood": ["calm", "wild"]}},
    })
    assert table.get(SORA_PRO).retired is None and table.get(SORA_PRO).min_read_interval == 2.0
    assert table.get(SEEDANCE).retired.replacement == SEEDANCE_FAST
    assert table.get(ACME).extra_fields == {"loud": "bool", "mood": ("calm", "wild")}
    assert table.get(ACME).min_read_interval == 5.0


@pytest.mark.parametrize("prices", [float("nan"), float("inf"), 0, -0.1, {"720p": 0}, {"720p": float("nan")}])
def test_non_finite_zero_and_negative_prices_are_refused(prices):
    with pytest.raises(ModelTableError, match=r"models\.acme/motion-1/image-to-video: price_per_second\.720p must "
                                              r"be a finite number above zero"):
        ModelTable().extended({ACME: {"durations": [5], "resolutions": ["720p"], "price_per_second": prices}})


@pytest.mark.parametrize("entry, message", [
    ({"retired": "soon"}, "retired must be false or a mapping with date, message and replacement"),
    ({"min_read_interval": -1}, "min_read_interval must be a finite number"),
    ({"extra_fields": {"x": "float"}}, "an extra field is a list of allowed values or one of bool, int"),
])
def test_bad_retired_read_floor_and_field_kind_are_refused(entry, message):
    with pytest.raises(ModelTableError, match=message):
        ModelTable().extended({SORA_PRO: entry})


@pytest.mark.parametrize("entry, message", [
    ({"resolutions": "720p"}, r"resolutions must be a list, like \[720p, 1080p\], got '720p'"),
    ({"durations": 5}, r"durations must be a list, like \[5, 10\], got 5"),
    ({"durations": [5.9]}, r"durations\[0\] must be a whole number, got 5.9"),
    ({"durations": [True]}, r"durations\[0\] must be a whole number, got True"),
    ({"confirmed": "false"}, r"confirmed must be true or false, got 'false'"),
    ({"sends_resolution": "no"}, r"sends_resolution must be true or false, got 'no'"),
    ({"extra_fields": ["mood"]}, r"extra_fields must be a mapping of name: value, got \['mood'\]"),
    ({"price_per_second": True}, r"price_per_second\.720p must be a number, like 0\.24, got True"),
    ({"price_per_second": {"720p": "cheap"}}, r"price_per_second\.720p must be a number, like 0\.24, got 'cheap'"),
])
def test_models_block_values_of_the_wrong_type_are_refused_not_coerced(entry, message):
    """'resolutions: 720p' used to become ('7', '2', '0', 'p') and send resolution '7'; a quoted
    'false' became True; 5.9 s became 5 s."""
    base = {"durations": [5], "resolutions": ["720p"], "price_per_second": 0.2}
    with pytest.raises(ModelTableError, match=r"models\.acme/motion-1/image-to-video: " + message):
        ModelTable().extended({ACME: {**base, **entry}})


def test_models_command_lists_built_in_and_user_models(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BATCHGEN_MODELS", str(_models_file(tmp_path / "models.yaml", USER_MODELS)))
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert (f"{ACME}  (on wavespeed; user)\n    durations: 5, 10; resolutions: 720p\n    price: $0.22/s (unconfirmed); "
            "results read at most every 5 s") in text
    assert f"{SORA_STD}  (on wavespeed; built-in, changed by the user)" in text
    assert "replicate:bytedance/seedance-2.0  (on replicate; built-in)" in text
    assert f"{SEEDANCE_FAST}  (on wavespeed; built-in)\n    durations: 4-15 (whole seconds); resolutions: 480p, 720p" in text
    assert text.count("RETIRED since 2026-09-24") == 2 and f"use {SEEDANCE} instead" in text
    assert main(["models", "--json"]) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[SORA_PRO]["retired"]["replacement"] == SEEDANCE and rows[SORA_PRO]["confirmed"]
    assert rows[SEEDANCE]["retired"] is None and rows[SEEDANCE]["price"].startswith("$0.12/s at 480p")
    assert rows[SORA_STD]["resolutions"] == "none to choose" and rows[ACME]["origin"] == "user"
    assert rows[SEEDANCE]["min_read_interval"] == 5.0
    assert rows[SEEDANCE]["provider"] == "wavespeed" and rows["replicate:bytedance/seedance-2.0"]["provider"] == "replicate"


def test_replicate_rows_come_from_its_module_under_their_prefix():
    from batchgen.providers.replicate import MODELS
    from batchgen.routing import split, tag

    table = ModelTable.builtin()
    row = table.get("replicate:bytedance/seedance-2.0")
    assert row.provider == "replicate" and row.price_per_second == MODELS[0].price_per_second
    assert row.durations == MODELS[0].durations and table.get(SEEDANCE).provider == "wavespeed"
    assert split("replicate:abc") == ("replicate", "abc") and split("abc") == ("wavespeed", "abc")
    assert split("owner/model:v2") == ("wavespeed", "owner/model:v2") and tag("wavespeed", "x") == "x"


def test_extended_overrides_one_field_and_keeps_the_rest():
    table = ModelTable().extended({SORA_PRO: {"price_per_second": {"720p": 0.35, "1080p": 0.55}}})
    pro = table.get(SORA_PRO)
    assert pro.price("720p", 4) == 1.40 and pro.durations == (4, 8, 12, 16, 20)
    assert ModelTable().get(SORA_PRO).price("720p", 4) == 1.20, "the built-in table is not changed"


# -- the user's models file ---------------------------------------------------------------


def _models_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


USER_MODELS = f"""\
{SORA_STD}:
  price_per_second: {{720p: 0.15}}
  confirmed: true
  note: from our invoice
{ACME}:
  durations: [5, 10]
  resolutions: [720p]
  price_per_second: 0.22
"""


def test_models_file_from_env_adds_a_model_and_overrides_a_price(tmp_path):
    path = _models_file(tmp_path / "models.yaml", USER_MODELS)
    table = user_model_table({"BATCHGEN_MODELS": str(path)})
    assert table.get(SORA_STD).price("720p", 8) == 1.20 and table.get(SORA_STD).confirmed
    acme = table.get(ACME)
    assert (acme.durations, acme.default_duration, acme.resolutions) == ((5, 10), 5, ("720p",))
    assert acme.price("720p", 10) == 2.20 and not acme.confirmed, "a model added by a user is unconfirmed by default"
    assert table.get(SORA_PRO).price("1080p", 4) == 2.00


def test_models_file_in_xdg_config_home_and_models_wrapper(tmp_path):
    xdg = tmp_path / "cfg"
    env = {"XDG_CONFIG_HOME": str(xdg), "HOME": str(tmp_path / "home")}
    assert user_models_path(env) is None and ACME not in user_model_table(env)
    indented = "\n".join("  " + line for line in USER_MODELS.splitlines())
    _models_file(xdg / "batchgen" / "models.yaml", "models:\n" + indented + "\n")
    assert user_models_path(env) == xdg / "batchgen" / "models.yaml"
    assert user_model_table(env).get(ACME).price("720p", 5) == 1.10


def test_models_file_defaults_to_dot_config_under_home(tmp_path):
    home = tmp_path / "home"
    _models_file(home / ".config" / "batchgen" / "models.yaml", USER_MODELS)
    assert ACME in user_model_table({"HOME": str(home)})


def test_env_var_wins_over_the_config_folder(tmp_path):
    xdg = tmp_path / "cfg"
    _models_file(xdg / "batchgen" / "models.yaml", f"{SORA_PRO}:\n  price_per_second: {{720p: 9, 1080p: 9}}\n")
    named = _models_file(tmp_path / "mine.yaml", f"{SORA_PRO}:\n  price_per_second: {{720p: 0.4, 1080p: 0.6}}\n")
    table = user_model_table({"XDG_CONFIG_HOME": str(xdg), "BATCHGEN_MODELS": str(named)})
    assert table.get(SORA_PRO).price("720p", 4) == 1.60


@pytest.mark.parametrize("text, message", [
    (f"{ACME}:\n  durations: [5]\n", r"models\.yaml: models\.acme/motion-1/image-to-video: a new model needs "
                                      r"price_per_second, resolutions; fix the models file or unset BATCHGEN_MODELS"),
    (f"{SORA_PRO}:\n  price: 0.3\n",
     r"models\.yaml: models\.openai/sora-2/image-to-video-pro: unknown field\(s\) price"),
    (f"{SORA_PRO}:\n  durations: [four]\n", r"models\.yaml: models\.openai/sora-2/image-to-video-pro: durations\[0\] must be a whole number, got 'four'"),
    (f"{SORA_PRO}: 0.3\n", r"models\.yaml: models\.openai/sora-2/image-to-video-pro: expected a mapping of fields"),
    ("- just\n- a list\n", r"models\.yaml: a models file maps a model path to its fields .* got list"),
    (f"{SORA_PRO}:\n  durations: [4, 8\n  note: x\n", r"models\.yaml:3: the models file is not valid YAML"),
    (f"{ACME}:\n  durations: [5]\n  resolutions: [720p]\n  price_per_second: {{1080p: 1}}\n",
     r"models\.yaml: models\.acme/motion-1/image-to-video: no price_per_second for 720p"),
])
def test_malformed_models_file_names_the_file_and_the_problem(tmp_path, text, message):
    path = _models_file(tmp_path / "models.yaml", text)
    with pytest.raises(ModelTableError, match=message) as info:
        user_model_table({"BATCHGEN_MODELS": str(path)})
    assert str(path) in str(info.value)


def test_models_file_named_but_missing_is_an_error_not_ignored(tmp_path):
    with pytest.raises(ModelTableError, match=r"nope\.yaml: models file not found \(named by \$BATCHGEN_MODELS\)"):
        user_model_table({"BATCHGEN_MODELS": str(tmp_path / "nope.yaml")})


def test_empty_models_file_changes_nothing(tmp_path):
    path = _models_file(tmp_path / "models.yaml", "# nothing yet\n")
    assert user_model_table({"BATCHGEN_MODELS": str(path)}).ids() == ModelTable.builtin().ids()


def test_cli_reports_a_malformed_models_file_with_exit_2(tmp_path, monkeypatch, capsys):
    make_images(tmp_path / "img", 1)
    manifest = write_manifest(tmp_path, [{"image": "img/shot00.png", "prompt": "p"}])
    path = _models_file(tmp_path / "models.yaml", "- not a mapping\n")
    monkeypatch.setenv("BATCHGEN_MODELS", str(path))
    for command in (["validate", str(manifest)], ["estimate", str(manifest)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"batchgen: {path}: a models file maps a model path"), err


def test_a_model_added_by_a_models_file_runs_end_to_end_without_code_changes(make_sim, tmp_path, monkeypatch, capsys):
    """The same file feeds the simulator's table: the run, the state and the estimate agree with its bill."""
    path = _models_file(tmp_path / "models.yaml", USER_MODELS)
    monkeypatch.setenv("BATCHGEN_MODELS", str(path))
    sim = make_sim(models=user_model_table())
    make_images(tmp_path / "img", 2)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} glides", "model": ACME,
                                          "duration": 10}])
    assert main(["validate", str(manifest)]) == 0
    assert "2 jobs, 20 s of video, $4.40 at list price" in capsys.readouterr().out
    out = tmp_path / "out"
    assert run_cli(sim, manifest, out) == 0
    ledger = sim.ledger()
    assert {s["model"] for s in ledger["submissions"]} == {ACME} and ledger["charged_total"] == 4.40
    assert sorted(r.cost for r in load(out / "state.jsonl").jobs.values()) == [2.20, 2.20]
    capsys.readouterr()
    assert main(["estimate", str(manifest), "--state", str(out / "state.jsonl"), "--json"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["split"]["paid"] == {"jobs": 2, "seconds": 20, "dollars": 4.40}
    assert est["unconfirmed"] == [{"model": ACME, "note": ""}]


def test_typed_turns_manifest_text_into_the_fields_json_type():
    seedance = ModelTable().get(SEEDANCE)
    assert [seedance.typed("generate_audio", t) for t in ("true", "False", "maybe")] == [True, False, "maybe"]
    assert [seedance.typed("seed", t) for t in ("42", "-3", "4.5")] == [42, -3, "4.5"]
    assert seedance.typed("aspect_ratio", "9:16") == "9:16" and seedance.typed("seed", 7) == 7


def test_a_manifest_naming_no_model_runs_seedance_2_at_its_defaults(tmp_path):
    from batchgen.manifest import load_manifest

    make_images(tmp_path / "img", 1)
    manifest = tmp_path / "m.yaml"
    manifest.write_text("jobs:\n  - image: img/shot00.png\n    prompt: p\n", encoding="utf-8")
    [job] = load_manifest(manifest).jobs
    assert (job.model, job.duration, job.resolution, job.id) == (SEEDANCE, 5, "720p", "shot00-5s-720p")
