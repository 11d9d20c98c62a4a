"""API.md v2 "Account limits" as the simulator plays them: queueing over the cap, videos per minute
(submits only), account levels, and the balance charged per task."""

from __future__ import annotations

import argparse
import asyncio

import pytest

from batchgen.simulator import Faults, add_arguments, config_from_args
from sim_helpers import SEEDANCE_BODY, Api, with_api


def test_over_the_cap_a_submit_is_accepted_billed_and_waits_in_created(make_sim):
    sim = make_sim(concurrency_cap=2, gen_base=0.5)

    async def body(api: Api, session):
        first, second, third = [await api.accepted(body={**SEEDANCE_BODY, "prompt": f"p{i}"}) for i in range(3)]
        assert third["status"] == "created"
        await asyncio.sleep(0.3)
        statuses = [(await api.get(f"/api/v3/predictions/{d['id']}"))[1]["data"]["status"] for d in
                    (first, second, third)]
        assert statuses == ["processing", "processing", "created"], "the third waits for a slot"
        mid_ledger = sim.ledger()
        assert [s["charged"] for s in mid_ledger["submissions"]] == [True, True, True]
        finals = [(await api.wait(d["id"]))[0] for d in (first, second, third)]
        return finals, mid_ledger

    finals, mid_ledger = with_api(sim.base_url, body)
    assert [f["status"] for f in finals] == ["completed"] * 3
    assert finals[2]["timings"]["inference"] >= 900, "queued time counts: it started only when a slot freed"
    ledger = sim.ledger()
    assert ledger["max_concurrent"] == 2 and "limit-concurrency" not in ledger["faults"]
    assert mid_ledger["charged_total"] == ledger["charged_total"] == 1.44


def test_the_per_minute_limit_counts_videos_started_not_reads(make_sim):
    sim = make_sim(rpm=2)

    async def body(api: Api, session):
        data = await api.accepted()
        for _ in range(5):  # reads never count
            assert (await api.get(f"/api/v3/predictions/{data['id']}/result"))[0] == 200
        await api.accepted()
        status, payload, headers = await api.submit()
        assert status == 429 and "2 videos per minute" in payload["message"]
        assert 55 <= int(headers["Retry-After"]) <= 60
        other = Api(session, api.base, {"Authorization": "Bearer another-account"})
        assert (await other.submit())[0] == 200, "the limit is per account"

    with_api(sim.base_url, body)
    ledger = sim.ledger()
    assert len(ledger["submissions"]) == 3 and ledger["faults"]["limit-rpm"] == 1


def _config(*argv: str):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)))


@pytest.mark.parametrize("level, videos, cap", [("bronze", 5, 3), ("silver", 60, 100), ("gold", 600, 2000),
                                                ("ultra", 5000, 5000)])
def test_account_levels_preset_videos_per_minute_and_concurrency(level, videos, cap):
    config = _config("--account-level", level)
    assert (config.rpm, config.concurrency_cap, config.at_cap) == (videos, cap, "queue")


def test_explicit_limits_win_over_the_level_and_old_names_still_work():
    config = _config("--account-level", "bronze", "--concurrency-cap", "7", "--rpm", "9", "--at-cap", "429")
    assert (config.rpm, config.concurrency_cap, config.at_cap) == (9, 7, "429")
    config = _config("--videos-per-minute", "4", "--max-concurrent", "2")
    assert (config.rpm, config.concurrency_cap) == (4, 2)
    assert (_config().rpm, _config().concurrency_cap, _config().at_cap) == (None, None, "queue")


def test_balance_goes_down_per_task_and_a_submit_it_cannot_pay_is_refused(make_sim):
    sim = make_sim(balance=1.00)

    async def body(api: Api, session):
        start = (await api.get("/api/v3/balance"))[1]["data"]["balance"]
        first = await api.accepted()
        await api.accepted(body={**SEEDANCE_BODY, "prompt": "second"})
        after = (await api.get("/api/v3/balance"))[1]["data"]["balance"]
        status, payload, _ = await api.submit(body={**SEEDANCE_BODY, "prompt": "third"})
        await api.wait(first["id"])
        return start, after, status, payload

    start, after, status, payload = with_api(sim.base_url, body)
    assert (start, after) == (1.00, 0.04), "two 4 s Seedance 480p tasks at $0.48"
    assert 400 <= status < 500 and "balance" in payload["message"] and "$0.48" in payload["message"]
    assert len(sim.ledger()["submissions"]) == 2 and sim.ledger()["balance"] == 0.04


def test_a_failed_task_is_refunded_to_the_balance(make_sim):
    sim = make_sim(balance=10.0, faults=Faults(rate_fail=1.0))

    async def body(api: Api, session):
        data = await api.accepted()
        charged = (await api.get("/api/v3/balance"))[1]["data"]["balance"]
        await api.wait(data["id"])
        await asyncio.sleep(0.05)
        return charged, (await api.get("/api/v3/balance"))[1]["data"]["balance"]

    assert with_api(sim.base_url, body) == (9.52, 10.0)
