"""API.md v2 "List past predictions" and "Read a result": POST listing with paging, total, filters
and page_size validation; items without input unless asked; the /result-less alias; 7-day retention."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp import web

from batchgen.models import SEEDANCE, SEEDANCE_FAST, body_hash
from batchgen.providers.wavespeed import WaveSpeedProvider
from conftest import run
from sim_helpers import SEEDANCE_BODY, Api, advance_clock, with_api

RESULT_FIELDS = {"id", "model", "outputs", "urls", "status", "created_at", "error", "timings", "has_nsfw_contents"}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


async def _submit_five(api: Api) -> list[str]:
    ids = []
    for i in range(5):
        model = SEEDANCE_FAST if i % 2 else SEEDANCE
        ids.append((await api.accepted(model, {**SEEDANCE_BODY, "prompt": f"p{i}"}))["id"])
    return ids


async def _page(api: Api, **body):
    status, payload, _ = await api.post("/api/v3/predictions", body)
    assert status == 200, payload
    return payload["data"]


def test_listing_pages_to_total_newest_first_shaped_like_a_result(make_sim):
    sim = make_sim()

    async def body(api: Api, session):
        ids = await _submit_five(api)
        pages = [await _page(api, page=n, page_size=2) for n in (1, 2, 3, 4)]
        other = Api(session, api.base, {"Authorization": "Bearer elsewhere"})
        theirs = await _page(other, page=1, page_size=100)
        return ids, pages, theirs

    ids, pages, theirs = with_api(sim.base_url, body)
    assert [p["total"] for p in pages] == [5] * 4 and [p["page"] for p in pages] == [1, 2, 3, 4]
    assert [[i["id"] for i in p["items"]] for p in pages] == [ids[4:2:-1], ids[2:0:-1], ids[:1], []]
    item = pages[0]["items"][0]
    assert set(item) == RESULT_FIELDS, "like the docs' example: no input, no body hash"
    assert item["urls"]["get"].endswith(f"/api/v3/predictions/{item['id']}")
    assert theirs == {"page": 1, "page_size": 100, "total": 0, "items": []}, "only this account's predictions"


def test_listing_filters_by_model_status_and_created_window(make_sim):
    sim = make_sim(gen_base=0.05)

    async def body(api: Api, session):
        before = datetime.now(timezone.utc) - timedelta(seconds=1)
        ids = await _submit_five(api)
        await api.wait(ids[-1])
        after = datetime.now(timezone.utc) + timedelta(seconds=1)
        fast = await _page(api, page=1, page_size=10, model=SEEDANCE_FAST)
        window = await _page(api, page=1, page_size=10, created_after=_iso(before), created_before=_iso(after))
        none_yet = await _page(api, page=1, page_size=10, created_after=_iso(after))
        too_old = await _page(api, page=1, page_size=10, created_before=_iso(before))
        done = await _page(api, page=1, page_size=10, status="completed", model=SEEDANCE)
        return ids, fast, window, none_yet, too_old, done

    ids, fast, window, none_yet, too_old, done = with_api(sim.base_url, body)
    assert [i["id"] for i in fast["items"]] == [ids[3], ids[1]] and fast["total"] == 2
    assert {i["model"] for i in fast["items"]} == {SEEDANCE_FAST}
    assert window["total"] == 5 and none_yet["total"] == 0 and too_old["total"] == 0
    assert ids[4] in [i["id"] for i in done["items"]] and {i["status"] for i in done["items"]} == {"completed"}


@pytest.mark.parametrize("body, needle", [
    ({"page_size": 10}, "page is required"),
    ({"page": 1}, "page_size is required"),
    ({"page": 1, "page_size": 101}, "from 1 to 100"),
    ({"page": 0, "page_size": 10}, "page is required"),
    ({"page": 1, "page_size": "10"}, "page_size"),
    ({"page": 1, "page_size": 10, "created_after": "yesterday"}, "ISO 8601"),
    ({"page": 1, "page_size": 10, "created_before": "2026-01-02T03:04:05"}, "time zone"),
    ({"page": 1, "page_size": 10, "status": "done"}, "status must be one of"),
])
def test_listing_validates_paging_and_filters(sim, body, needle):
    status, payload, _ = with_api(sim.base_url, lambda api, _s: api.post("/api/v3/predictions", body))
    assert status == 400 and payload["code"] == 400 and needle in payload["message"], payload


def test_listing_input_switch_adds_the_request_input(make_sim):
    sim = make_sim(listing_input=True)

    async def body(api: Api, session):
        await api.accepted()
        return await _page(api, page=1, page_size=1)

    [item] = with_api(sim.base_url, body)["items"]
    assert item["input"] == SEEDANCE_BODY


def test_the_v1_get_listing_does_not_exist(sim):
    async def body(api: Api, session):
        return [await api.get(path) for path in ("/api/v3/predictions?limit=5", "/api/v3/predictions")]

    for status, payload, _ in with_api(sim.base_url, body):
        assert status == 404 and payload["code"] == 404 and "Not Found" in payload["message"]
    assert sim.ledger()["submissions"] == []


def test_the_result_alias_answers_like_result(sim):
    async def body(api: Api, session):
        data = await api.accepted()
        final, _ = await api.wait(data["id"])
        alias = await api.get(f"/api/v3/predictions/{data['id']}")
        missing = await api.get("/api/v3/predictions/doesnotexist")
        return final, alias, missing

    final, (status, payload, _), missing = with_api(sim.base_url, body)
    assert status == 200 and payload["data"]["status"] == "completed"
    assert {k: v for k, v in payload["data"].items() if k != "outputs"} == \
        {k: v for k, v in final.items() if k != "outputs"}
    assert missing[0] == 404


def test_predictions_and_outputs_are_deleted_after_seven_days(sim):
    async def body(api: Api, session):
        data = await api.accepted()
        final, _ = await api.wait(data["id"])
        await advance_clock(api, 6 * 86400)
        still = await api.get(f"/api/v3/predictions/{data['id']}"), await _page(api, page=1, page_size=10)
        await advance_clock(api, 86400 + 1)
        gone = await api.get(f"/api/v3/predictions/{data['id']}"), await _page(api, page=1, page_size=10)
        async with session.get(final["outputs"][0]) as resp:
            output = resp.status
        return still, gone, output

    (still_read, still_list), (gone_read, gone_list), output = with_api(sim.base_url, body)
    assert still_read[0] == 200 and still_list["total"] == 1
    assert gone_read[0] == 404 and "7 days" in gone_read[1]["message"] and gone_list["total"] == 0
    assert output == 404


# -- the WaveSpeed provider's listing read against it ------------------------------------------


async def _provider_listing(base_url: str, submits: int, **window):
    provider = WaveSpeedProvider("test-key", base_url)
    try:
        started = time.time()
        bodies = [{**SEEDANCE_BODY, "prompt": f"p{i}"} for i in range(submits)]
        ids = [(await provider.submit(SEEDANCE, body)).id for body in bodies]
        listing = await provider.list_predictions(model=SEEDANCE, created_after=window.get("after", started - 5),
                                                  created_before=time.time() + 5)
        return bodies, ids, listing
    finally:
        await provider.close()


def test_provider_pages_the_listing_to_total_and_reads_no_input_when_there_is_none(make_sim):
    sim = make_sim(concurrency_cap=1, gen_base=30)  # the tasks wait in created: nothing is rendered
    bodies, ids, listing = run(_provider_listing(sim.base_url, 105))
    assert listing.complete and sorted(p.id for p in listing.items) == sorted(ids)
    assert {(p.input, p.body_hash) for p in listing.items} == {(None, "")}
    assert all(p.model == SEEDANCE and p.created_at for p in listing.items)
    assert sim.ledger()["requests"]["list"] == 2, "two pages of at most 100"


def test_provider_reads_input_and_its_hash_when_items_carry_it(make_sim):
    sim = make_sim(listing_input=True)
    bodies, ids, listing = run(_provider_listing(sim.base_url, 3))
    by_id = {p.id: p for p in listing.items}
    assert listing.complete and [by_id[i].body_hash for i in ids] == [body_hash(b) for b in bodies]
    assert by_id[ids[0]].input == bodies[0]


def test_provider_listing_is_incomplete_when_a_later_page_fails():
    async def pages(request: web.Request) -> web.Response:
        page = (await request.json())["page"]
        if page > 1:
            return web.json_response({"code": 400, "message": "bad page", "data": {}}, status=400)
        items = [{"id": f"p{i}", "model": SEEDANCE, "status": "completed", "outputs": [],
                  "created_at": "2026-12-04T05:00:00.000Z"} for i in range(100)]
        return web.json_response({"code": 200, "message": "success",
                                  "data": {"page": 1, "total": 250, "items": items}})

    async def main():
        app = web.Application()
        app.router.add_post("/api/v3/predictions", pages)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        provider = WaveSpeedProvider("k", f"http://127.0.0.1:{runner.addresses[0][1]}")
        try:
            return await provider.list_predictions(model=SEEDANCE, created_after=0, created_before=2e9)
        finally:
            await provider.close()
            await runner.cleanup()

    listing = run(main())
    assert len(listing.items) == 100 and listing.complete is False
    assert listing.items[0].created_at == datetime(2026, 12, 4, 5, tzinfo=timezone.utc).timestamp()
