"""The simulator's hostile submit modes: the task is created and charged, then the answer lies."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest
from conftest import API_KEY, image_bytes

MODEL = "openai/sora-2/image-to-video-pro"


def post(sim, path: str, body: dict, key: str | None = API_KEY) -> tuple[int, str, bytes]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(f"{sim.base_url}{path}", data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.headers.get_content_type(), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get_content_type(), exc.read()


def image_url() -> str:
    return "data:image/png;base64," + base64.b64encode(image_bytes()).decode()


@pytest.mark.parametrize("mode, status, ctype", [("submit-500", 500, "text/html"), ("submit-502", 502, "text/html"),
                                                 ("submit-504", 504, "text/html"),
                                                 ("submit-non-json", 200, "text/html"),
                                                 ("submit-code-500", 200, "application/json")])
def test_a_hostile_submit_answer_comes_after_the_task_was_created(sim, mode, status, ctype):
    assert post(sim, "/_sim/hostile", {"mode": mode, "count": 1}, key=None)[0] == 200
    body = {"image": image_url(), "prompt": "The bottle turns", "duration": 4}
    got_status, got_type, raw = post(sim, f"/api/v3/{MODEL}", body)
    assert (got_status, got_type) == (status, ctype)
    ledger = sim.ledger()
    assert len(ledger["submissions"]) == 1 and ledger["charged_total"] > 0, "the task was created and charged"
    if mode == "submit-code-500":
        answer = json.loads(raw)
        assert answer["code"] == 500 and answer["data"]["id"] == ledger["submissions"][0]["id"]
    assert post(sim, f"/api/v3/{MODEL}", body)[0] == 200, "count 1: the next submit is answered normally"
