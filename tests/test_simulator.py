"""The simulator over real HTTP on 127.0.0.1: every endpoint, every limit, every fault."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import re
import time

import aiohttp
import av
import pytest
from aiohttp import web

from batchgen.models import SEEDANCE, SEEDANCE_FAST, SORA_PRO, SORA_STD, body_hash
from batchgen.simulator import Faults, SimConfig, Simulator, start
from conftest import API_KEY, AUTH, image_bytes, run
from sim_helpers import DATA_URI, PNG, SEEDANCE_BODY, Api, with_api


def probe(data: bytes) -> tuple[int, int, float, bool]:
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        duration = float(container.duration / av.time_base)
        return video.width, video.height, duration, bool(container.streams.audio)


# -- lifecycle -----------------------------------------------------------------------------


def test_lifecycle_upload_submit_poll_download(make_sim):
    sim = make_sim(gen_base=0.3, retired_mode="serve")
    portrait = image_bytes(48, 64, "JPEG")

    async def body(api: Api, session):
        form = aiohttp.FormData()
        form.add_field("file", portrait, filename="p.jpg", content_type="image/jpeg")
        async with session.post(api.base + "/api/v3/media/upload/binary", data=form, headers=AUTH) as resp:
            upload = (await resp.json())["data"]
        assert upload["type"] == "image" and upload["size"] == len(portrait) and upload["filename"] == "p.jpg"
        request = {"image": upload["download_url"], "prompt": "pan", "duration": 4, "resolution": "720p"}
        status, payload, _ = await api.submit(SORA_PRO, request)
        assert status == 200 and payload["code"] == 200
        data = payload["data"]
        assert re.fullmatch(r"[0-9a-f]{32}", data["id"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["created_at"])
        assert data["status"] == "created" and data["outputs"] == [] and data["error"] == ""
        assert data["model"] == SORA_PRO and data["timings"] == {"inference": 0} and data["has_nsfw_contents"] == []
        assert data["urls"]["get"] == f"{api.base}/api/v3/predictions/{data['id']}", "the docs' form, no /result"
        final, seen = await api.wait(data["id"])
        assert final["status"] == "completed" and "processing" in seen
        assert seen == sorted(seen, key=["created", "processing", "completed"].index)
        assert final["timings"]["inference"] >= 300 and final["model"] == SORA_PRO
        async with session.get(final["outputs"][0]) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "video/mp4"
            assert int(resp.headers["Content-Length"]) > 1000
            video = await resp.read()
        return data["id"], request, video

    prediction_id, request, video = with_api(sim.base_url, body)
    assert probe(video)[:2] == (720, 1280)  # a portrait picture gives a portrait clip
    assert probe(video)[3] is True
    ledger = sim.ledger()
    assert ledger["outputs"] == {prediction_id: hashlib.sha256(video).hexdigest()}
    assert ledger["downloads"] == ledger["downloads_started"] == 1
    assert ledger["uploads"] == 1 and ledger["upload_bytes"] == len(portrait)
    assert ledger["charged_total"] == 1.20  # 4 s at $0.30/s
    assert ledger["accepted_by_body_hash"] == {body_hash(request): 1}
    [entry] = ledger["submissions"]
    assert entry["status"] == "completed" and entry["charged"] and entry["model_used"] == SORA_PRO
    assert ledger["polls"] == ledger["polls_by_id"][prediction_id] >= 2
    assert ledger["requests"]["submit"] == 1 and ledger["responses"]["200"] >= 4


def test_start_in_current_loop_and_sync_mode(fast_config):
    async def main():
        running = await start(fast_config)
        try:
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", running.base_url)
            async with aiohttp.ClientSession() as session:
                api = Api(session, running.base_url)
                status, payload, _ = await api.submit(body={**SEEDANCE_BODY, "enable_sync_mode": True})
            assert status == 200 and payload["data"]["status"] == "completed" and payload["data"]["outputs"]
            return running.ledger()
        finally:
            await running.close()

    ledger = run(main())
    # The sync flag is transport, not content: the same job hashes the same either way.
    assert ledger["accepted_by_body_hash"] == {body_hash(SEEDANCE_BODY): 1}


def test_unknown_prediction_and_other_keys_predictions_are_404(sim):
    async def body(api: Api, session):
        status, payload, _ = await api.get("/api/v3/predictions/doesnotexist/result")
        assert status == 404 and payload["code"] == 404 and "doesnotexist" in payload["message"]
        data = await api.accepted()
        other = Api(session, api.base, {"Authorization": "Bearer someone-else"})
        status, payload, _ = await other.get(f"/api/v3/predictions/{data['id']}/result")
        assert status == 404

    with_api(sim.base_url, body)


# -- validation and auth -------------------------------------------------------------------


@pytest.mark.parametrize("model, body, needle", [
    ("acme/nothing", SEEDANCE_BODY, "acme/nothing"),
    (SEEDANCE, {"prompt": "x"}, "image is required"),
    (SEEDANCE, {"image": DATA_URI}, "prompt is required"),
    (SEEDANCE, {**SEEDANCE_BODY, "duration": 3}, "duration 3"),
    (SEEDANCE, {**SEEDANCE_BODY, "duration": 16, "resolution": "720p"}, "duration 16"),
    (SEEDANCE_FAST, {**SEEDANCE_BODY, "duration": 4, "resolution": "1080p"}, "resolution '1080p'"),
    (SEEDANCE, {**SEEDANCE_BODY, "generate_audio": "yes"}, "generate_audio 'yes'"),
    (SEEDANCE, {**SEEDANCE_BODY, "seed": 1.5}, "seed 1.5"),
    (SEEDANCE, {**SEEDANCE_BODY, "aspect_ratio": "2:1"}, "aspect_ratio"),
    (SEEDANCE, {**SEEDANCE_BODY, "image": "ftp://x/y.png"}, "http(s) URL"),
    (SEEDANCE, {**SEEDANCE_BODY, "image": "data:image/png;base64,@@@"}, "base64"),
])
def test_invalid_submits_answer_400_and_record_nothing(sim, model, body, needle):
    status, payload, _ = with_api(sim.base_url, lambda api, _s: api.submit(model, body))
    assert status == 400 and payload["code"] == 400 and needle in payload["message"], payload
    assert sim.ledger()["submissions"] == []


def test_non_json_body_is_400(sim):
    async def body(api: Api, session):
        async with session.post(api.base + f"/api/v3/{SEEDANCE}", data=b"{nope", headers=AUTH) as resp:
            return resp.status, await resp.json()

    status, payload = with_api(sim.base_url, body)
    assert status == 400 and "not valid JSON" in payload["message"]


def test_auth_missing_and_wrong_key_are_401(make_sim):
    sim = make_sim(api_key=API_KEY)

    async def body(api: Api, session):
        async with session.post(api.base + f"/api/v3/{SEEDANCE}", json=SEEDANCE_BODY) as resp:
            missing = resp.status, await resp.json()
        wrong = await api.submit(headers={"Authorization": "Bearer nope"})
        right = await api.submit()
        return missing, wrong, right

    missing, wrong, right = with_api(sim.base_url, body)
    assert missing[0] == 401 and "Authorization: Bearer" in missing[1]["message"]
    assert wrong[0] == 401 and wrong[1]["code"] == 401 and "nope" not in wrong[1]["message"]
    assert right[0] == 200
    assert len(sim.ledger()["submissions"]) == 1


# -- limits --------------------------------------------------------------------------------


def test_429_at_cap_mode_answers_429_until_a_slot_frees(make_sim):
    sim = make_sim(concurrency_cap=2, at_cap="429", gen_base=0.4)

    async def body(api: Api, session):
        first = await api.accepted()
        await api.accepted()
        status, payload, headers = await api.submit()
        assert status == 429 and payload["code"] == 429 and "concurrency" in payload["message"]
        assert headers["Retry-After"] == "1" and headers["retry-after-ms"] == "1000"
        await api.wait(first["id"])
        await api.accepted()

    with_api(sim.base_url, body)
    ledger = sim.ledger()
    assert len(ledger["submissions"]) == 3 and ledger["max_concurrent"] == 2
    assert ledger["faults"]["limit-concurrency"] == 1


# -- faults --------------------------------------------------------------------------------


def test_drop_before_closes_the_connection_and_records_nothing(make_sim):
    sim = make_sim(faults=Faults(rate_drop_before=1.0))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        with_api(sim.base_url, lambda api, _s: api.submit())
    ledger = sim.ledger()
    assert ledger["submissions"] == [] and ledger["charged_total"] == 0 and ledger["faults"] == {"drop-before": 1}


def test_drop_after_accepts_and_charges_then_listing_reconciles(make_sim):
    sim = make_sim(faults=Faults(rate_drop_after=1.0))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        with_api(sim.base_url, lambda api, _s: api.submit())
    ledger = sim.ledger()
    [entry] = ledger["submissions"]
    assert entry["charged"] and ledger["charged_total"] == 0.48  # 4 s of Seedance 480p at $0.12/s
    assert ledger["accepted_by_body_hash"] == {body_hash(SEEDANCE_BODY): 1}
    status, payload, _ = with_api(sim.base_url, lambda api, _s: api.post("/api/v3/predictions",
                                                                         {"page": 1, "page_size": 5}))
    [item] = payload["data"]["items"]
    assert item["id"] == entry["id"] and item["model"] == SEEDANCE and "input" not in item


def test_truncate_sends_less_than_content_length(make_sim):
    sim = make_sim(faults=Faults(rate_truncate=1.0))

    async def body(api: Api, session):
        final, _ = await api.wait((await api.accepted())["id"])
        received = bytearray()
        async with session.get(final["outputs"][0]) as resp:
            promised = int(resp.headers["Content-Length"])
            with pytest.raises(aiohttp.ClientPayloadError):
                async for chunk in resp.content.iter_any():
                    received += chunk
        return promised, len(received)

    promised, received = with_api(sim.base_url, body)
    assert received < promised
    ledger = sim.ledger()
    assert ledger["downloads_started"] == 1 and ledger["downloads"] == 0 and ledger["outputs"] == {}


def test_fail_ends_the_task_failed_and_refunds_it(make_sim):
    sim = make_sim(faults=Faults(rate_fail=1.0))

    async def body(api: Api, session):
        return await api.wait((await api.accepted())["id"])

    final, _ = with_api(sim.base_url, body)
    assert final["status"] == "failed" and "moderation" in final["error"] and final["outputs"] == []
    ledger = sim.ledger()
    assert ledger["submissions"][0]["charged"] is False and ledger["charged_total"] == 0


def test_fallback_reports_another_model_but_charges_the_asked_one(make_sim):
    sim = make_sim(faults=Faults(rate_fallback=1.0), retired_mode="serve")
    request = {"image": DATA_URI, "prompt": "x", "duration": 4}

    async def body(api: Api, session):
        data = await api.accepted(SORA_PRO, request)
        assert data["model"] == SORA_PRO
        return await api.wait(data["id"])

    final, _ = with_api(sim.base_url, body)
    assert final["status"] == "completed" and final["model"] == SORA_STD
    [entry] = sim.ledger()["submissions"]
    assert entry["model"] == SORA_PRO and entry["model_used"] == SORA_STD and entry["price"] == 1.20


def test_slow_delays_the_answer(make_sim):
    sim = make_sim(faults=Faults(rate_slow=1.0, slow_seconds=0.4))
    started = time.monotonic()
    status, _, _ = with_api(sim.base_url, lambda api, _s: api.get("/api/v3/balance"))
    assert status == 200 and time.monotonic() - started >= 0.4


def test_5xx_answers_an_error_envelope_and_does_nothing(make_sim):
    sim = make_sim(faults=Faults(rate_5xx=1.0))

    async def body(api: Api, session):
        return [await api.submit() for _ in range(6)]

    answers = with_api(sim.base_url, body)
    assert all(s in (500, 502, 503) and p["code"] == s for s, p, _ in answers)
    ledger = sim.ledger()
    assert ledger["submissions"] == [] and ledger["faults"]["5xx"] == 6


def test_429_burst_then_recovery_via_runtime_config(make_sim):
    sim = make_sim(faults=Faults(rate_429_burst=1.0, burst_len=3))

    async def body(api: Api, session):
        first = await api.submit()
        async with session.post(api.base + "/_sim/config", json={"faults": {"429": 0}}) as resp:
            assert resp.status == 200 and (await resp.json())["faults"]["rate_429_burst"] == 0
        rest = [await api.submit() for _ in range(3)]
        return [first[0]] + [s for s, _, _ in rest], first[2]

    statuses, headers = with_api(sim.base_url, body)
    assert statuses == [429, 429, 429, 200] and headers["Retry-After"] == "1"
    assert sim.ledger()["faults"]["429"] == 3


def test_unavailable_model_answers_503_and_others_still_work(make_sim):
    sim = make_sim(faults=Faults(unavailable_models={SORA_PRO}), retired_mode="serve")

    async def body(api: Api, session):
        return await api.submit(SORA_PRO, {**SEEDANCE_BODY, "resolution": "720p"}), await api.submit()

    (status, payload, _), (other, _, _) = with_api(sim.base_url, body)
    assert status == 503 and "unavailable" in payload["message"] and SORA_PRO in payload["message"]
    assert other == 200


def test_expired_output_url_is_403_and_a_fresh_read_mints_a_working_one(make_sim):
    sim = make_sim(url_ttl=0.3)

    async def body(api: Api, session):
        final, _ = await api.wait((await api.accepted())["id"])
        await asyncio.sleep(0.4)
        async with session.get(final["outputs"][0]) as resp:
            assert resp.status == 403 and "expired" in await resp.text()
        _, fresh, _ = await api.get(f"/api/v3/predictions/{final['id']}/result")
        assert fresh["data"]["outputs"][0] != final["outputs"][0]
        async with session.get(fresh["data"]["outputs"][0]) as resp:
            assert resp.status == 200 and len(await resp.read()) == int(resp.headers["Content-Length"])
        async with session.get(final["outputs"][0].replace("/video.mp4", "0/video.mp4")) as resp:
            assert resp.status == 403  # a tampered token is refused too

    with_api(sim.base_url, body)


def test_same_seed_same_request_order_gives_the_same_ids(make_sim):
    sims = [make_sim(seed=7, faults=Faults(rate_5xx=0.5)), make_sim(seed=7, faults=Faults(rate_5xx=0.5))]

    async def body(api: Api, session):
        return [(s, p["data"].get("id")) for s, p, _ in [await api.submit() for _ in range(5)]]

    first, second = (with_api(s.base_url, body) for s in sims)
    assert first == second and {s for s, _ in first} != {200}


# -- images --------------------------------------------------------------------------------


def test_image_fetched_over_http_and_bad_images_fail_the_task(make_sim):
    sim, host = make_sim(), make_sim()

    async def body(api: Api, session):
        form = aiohttp.FormData()
        form.add_field("file", PNG, filename="x.png")
        async with session.post(host.base_url + "/api/v3/upload", data=form, headers=AUTH) as resp:
            remote = (await resp.json())["data"]["url"]
        fetched = await api.accepted(body={**SEEDANCE_BODY, "image": remote})
        unreachable = await api.accepted(body={**SEEDANCE_BODY, "image": "http://127.0.0.1:9/gone.png"})
        garbage = "data:image/png;base64," + base64.b64encode(b"not a picture").decode()
        undecodable = await api.accepted(body={**SEEDANCE_BODY, "image": garbage})
        return [(await api.wait(d["id"]))[0] for d in (fetched, unreachable, undecodable)]

    fetched, unreachable, undecodable = with_api(sim.base_url, body)
    assert fetched["status"] == "completed"
    assert host.ledger()["requests"]["upload_get"] == 1  # really fetched over HTTP from the other server
    assert unreachable["status"] == "failed" and "could not download the image" in unreachable["error"]
    assert undecodable["status"] == "failed" and "cannot be decoded" in undecodable["error"]


def test_upload_flow_1_is_content_addressed_and_checks_type_and_size(sim):
    async def body(api: Api, session):
        async def post(path, data, name="a.png"):
            form = aiohttp.FormData()
            form.add_field("file", data, filename=name)
            async with session.post(api.base + path, data=form, headers=AUTH) as resp:
                return resp.status, await resp.json()

        first, again = await post("/api/v3/media/upload/binary", PNG), await post("/api/v3/upload", PNG, "b.png")
        assert first[1]["data"]["download_url"] == again[1]["data"]["download_url"] == again[1]["data"]["url"]
        async with session.get(first[1]["data"]["download_url"]) as resp:
            assert resp.headers["Content-Type"] == "image/png" and await resp.read() == PNG
        not_image = await post("/api/v3/media/upload/binary", b"%PDF-1.4 hello", "a.pdf")
        too_big = await post("/api/v3/media/upload/binary", io.BytesIO(b"\0" * (20 * 1048576 + 10)))
        async with session.post(api.base + "/api/v3/media/upload/binary", json={}, headers=AUTH) as resp:
            no_form = resp.status, await resp.json()
        return not_image, too_big, no_form

    not_image, too_big, no_form = with_api(sim.base_url, body)
    assert not_image[0] == 400 and "not a supported image" in not_image[1]["message"]
    assert too_big[0] == 400 and "at most 20 MB" in too_big[1]["message"]
    assert no_form[0] == 400 and "field named 'file'" in no_form[1]["message"]
    assert sim.ledger()["uploads"] == 2


def test_upload_flow_2_ticket_then_presigned_put(sim):
    jpeg = image_bytes(fmt="JPEG")

    async def body(api: Api, session):
        status, payload, _ = await api.post("/api/v3/media/uploads",
                                            {"filename": "shoe.jpg", "size": len(jpeg), "content_type": "image/jpeg"})
        assert status == 200
        ticket = payload["data"]
        assert ticket["upload"]["method"] == "PUT" and ticket["upload"]["headers"] == {"Content-Type": "image/jpeg"}
        async with session.get(ticket["download_url"]) as resp:
            assert resp.status == 404  # nothing there until the PUT
        async with session.put(ticket["upload"]["url"], data=jpeg[:-5]) as resp:
            assert resp.status == 400 and "IncompleteBody" in await resp.text()
        async with session.put(ticket["upload"]["url"], data=jpeg, headers=ticket["upload"]["headers"]) as resp:
            assert resp.status == 200
        async with session.get(ticket["download_url"]) as resp:
            assert await resp.read() == jpeg
        final, _ = await api.wait((await api.accepted(body={**SEEDANCE_BODY, "image": ticket["download_url"]}))["id"])
        assert final["status"] == "completed"
        big = await api.post("/api/v3/media/uploads", {"filename": "a.png", "size": 21 * 1048576})
        pdf = await api.post("/api/v3/media/uploads", {"filename": "a.pdf", "size": 10})
        return big, pdf

    big, pdf = with_api(sim.base_url, body)
    assert big[0] == 400 and "at most 20 MB" in big[1]["message"]
    assert pdf[0] == 400 and "application/pdf" in pdf[1]["message"]
    assert sim.ledger()["upload_bytes"] == len(jpeg)


# -- listing and test hooks ----------------------------------------------------------------


def test_reset_clears_everything_and_bad_config_is_400(sim):
    async def body(api: Api, session):
        await api.accepted()
        async with session.post(api.base + "/_sim/config", json={"faults": {"meteor": 1}}) as resp:
            bad = resp.status, await resp.json()
        async with session.post(api.base + "/_sim/reset") as resp:
            assert resp.status == 200
        async with session.get(api.base + "/_sim/ledger") as resp:
            return bad, await resp.json()

    bad, ledger = with_api(sim.base_url, body)
    assert bad[0] == 400 and "meteor" in bad[1]["message"]
    assert ledger["submissions"] == [] and ledger["requests"] == {"ledger": 1}


def test_a_crashing_handler_becomes_a_500_envelope_and_the_server_lives_on(fast_config):
    async def explode(request):
        raise RuntimeError("kaboom")

    async def main():
        simulator = Simulator(fast_config)
        app = simulator.app()
        app.router.add_get("/_sim/explode", explode, name="explode")
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(base + "/_sim/explode") as resp:
                    crashed = resp.status, await resp.json()
                after = await Api(session, base).get("/api/v3/balance")
            return crashed, after[0]
        finally:
            await runner.cleanup()

    (status, payload), after = run(main())
    assert status == 500 and payload["code"] == 500 and "kaboom" in payload["message"]
    assert after == 200


def test_config_from_cli_flags():
    import argparse

    from batchgen.simulator import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--seed", "3", "--fault", "5xx=0.25", "--fault", "drop-after=1",
                              "--unavailable", SORA_PRO, "--concurrency-cap", "4", "--url-ttl", "60"])
    config = config_from_args(args)
    assert isinstance(config, SimConfig) and config.seed == 3 and config.concurrency_cap == 4
    assert config.faults.rate_5xx == 0.25 and config.faults.rate_drop_after == 1.0
    assert config.faults.unavailable_models == {SORA_PRO} and config.url_ttl == 60 and config.api_key is None
    for bad in (["--fault", "meteor=1"], ["--fault", "5xx=2"], ["--gen-jitter", "1.5"]):
        with pytest.raises(ValueError):
            config_from_args(parser.parse_args(bad))
