"""API.md v2 account and catalog endpoints, Sora 2's retirement modes, the user's model table in the
simulator, and the modes ``batchgen simulate --help`` says it plays."""

from __future__ import annotations

import argparse

import pytest

from batchgen.cli import main
from batchgen.models import SEEDANCE, SEEDANCE_FAST, SORA_PRO, SORA_STD
from batchgen.simulator import add_arguments, config_from_args
from sim_helpers import DATA_URI, SEEDANCE_BODY, Api, with_api

SORA_BODY = {"image": DATA_URI, "prompt": "slow orbit", "duration": 4, "resolution": "720p"}
ACME = "acme/motion-1/image-to-video"


def test_models_catalog_lists_the_table_with_base_prices_and_price_quotes(make_sim):
    sim = make_sim(retired_mode="refuse")

    async def body(api: Api, session):
        catalog = (await api.get("/api/v3/models"))[1]["data"]
        quote = await api.post("/api/v3/model/price", {"model_id": SEEDANCE,
                                                       "inputs": {"duration": 10, "resolution": "1080p"}})
        default = await api.post("/api/v3/model/price", {"model_id": SEEDANCE_FAST})
        bad = await api.post("/api/v3/model/price", {"model_id": SEEDANCE, "inputs": {"duration": 99}})
        unknown = await api.post("/api/v3/model/price", {"model_id": "acme/x"})
        return catalog, quote, default, bad, unknown

    catalog, quote, default, bad, unknown = with_api(sim.base_url, body)
    prices = {m["model_id"]: m["base_price"] for m in catalog}
    assert prices == {SEEDANCE: 1.20, SEEDANCE_FAST: 0.80}, "retired models are refused by default, so not listed"
    assert quote[0] == 200 and quote[1]["data"]["unit_price"] == 5.40
    assert default[1]["data"]["unit_price"] == 0.80
    assert bad[0] == 400 and "duration 99" in bad[1]["message"]
    assert unknown[0] == 400 and "acme/x" in unknown[1]["message"]
    assert sim.ledger()["submissions"] == [] and sim.ledger()["balance"] == 1_000_000


def test_sora2_refuse_answers_not_found_unavailable_and_charges_nothing(make_sim):
    sim = make_sim(retired_mode="refuse")
    status, payload, _ = with_api(sim.base_url, lambda api, _s: api.submit(SORA_PRO, SORA_BODY))
    assert status == 404 and "not found" in payload["message"] and "unavailable" in payload["message"]
    assert SEEDANCE in payload["message"], "the message names the replacement"
    assert sim.ledger()["submissions"] == [] and sim.ledger()["faults"] == {"retired-refused": 1}


def test_sora2_fail_accepts_then_fails_unbilled(make_sim):
    sim = make_sim(retired_mode="fail")

    async def body(api: Api, session):
        data = await api.accepted(SORA_STD, {"image": DATA_URI, "prompt": "x", "duration": 8})
        return (await api.wait(data["id"]))[0]

    final = with_api(sim.base_url, body)
    assert final["status"] == "failed" and "unavailable" in final["error"] and final["outputs"] == []
    assert sim.ledger()["charged_total"] == 0 and sim.ledger()["balance"] == 1_000_000


def test_sora2_substitute_completes_with_the_replacement_in_data_model(make_sim):
    sim = make_sim(retired_mode="substitute")

    async def body(api: Api, session):
        data = await api.accepted(SORA_PRO, SORA_BODY)
        assert data["model"] == SORA_PRO
        return (await api.wait(data["id"]))[0]

    final = with_api(sim.base_url, body)
    assert final["status"] == "completed" and final["model"] == SEEDANCE and final["outputs"]
    [entry] = sim.ledger()["submissions"]
    assert entry["model"] == SORA_PRO and entry["model_used"] == SEEDANCE and entry["price"] == 1.20


def test_sora2_serve_works_as_before(make_sim):
    sim = make_sim(retired_mode="serve")

    async def body(api: Api, session):
        data = await api.accepted(SORA_PRO, SORA_BODY)
        return (await api.wait(data["id"]))[0]

    final = with_api(sim.base_url, body)
    assert final["status"] == "completed" and final["model"] == SORA_PRO


def _parse(*argv: str):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("mode", ["refuse", "fail", "substitute", "serve"])
def test_sora2_flag_sets_the_mode(mode):
    assert config_from_args(_parse("--sora2", mode)).retired_mode == mode
    assert config_from_args(_parse()).retired_mode == "refuse"


def test_standalone_simulate_knows_the_users_models_file(tmp_path, monkeypatch, make_sim):
    models = tmp_path / "models.yaml"
    models.write_text(f"{ACME}:\n  durations: [5]\n  resolutions: [720p]\n  price_per_second: 0.2\n", encoding="utf-8")
    monkeypatch.setenv("BATCHGEN_MODELS", str(models))
    config = config_from_args(_parse("--listing-input", "--balance", "50"))
    assert ACME in config.models and config.listing_input and config.balance == 50
    sim = make_sim(models=config.models)

    async def body(api: Api, session):
        data = await api.accepted(ACME, {**SEEDANCE_BODY, "duration": 5, "resolution": "720p"})
        return (await api.wait(data["id"]))[0]

    assert with_api(sim.base_url, body)["status"] == "completed"
    assert sim.ledger()["charged_total"] == 1.00


def test_help_says_which_modes_it_plays(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("QUEUED", "--at-cap {queue,429}", "counts videos started (submits), never reads",
                   "NO 'input' unless --listing-input", "REFUSED", "--sora2 {refuse,fail,substitute,serve}",
                   "--account-level {bronze,silver,gold,ultra}", "bronze 5/min x 3", "loopback"):
        assert needle in text, needle
