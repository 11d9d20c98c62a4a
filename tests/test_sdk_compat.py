"""The official ``wavespeed`` SDK 2.0.5, unmodified, against the simulator: proof the wire format matches."""

from __future__ import annotations

import base64
import urllib.request

import pytest
import wavespeed

from batchgen.models import SEEDANCE
from batchgen.probe import probe_video
from batchgen.simulator import Faults
from conftest import API_KEY, image_bytes


@pytest.fixture
def sdk_sim(make_sim):
    return make_sim(api_key=API_KEY)


def test_sdk_upload_run_and_download_a_real_720p_clip(sdk_sim, tmp_path):
    picture = tmp_path / "product.png"
    picture.write_bytes(image_bytes(320, 180))
    client = wavespeed.Client(api_key=API_KEY, base_url=sdk_sim.base_url)

    url = client.upload(str(picture))
    output = client.run(SEEDANCE, {"image": url, "prompt": "slow orbit, soft music", "duration": 4,
                                   "resolution": "720p"}, poll_interval=0.1)

    clip = tmp_path / "clip.mp4"
    with urllib.request.urlopen(output["outputs"][0], timeout=30) as response:
        clip.write_bytes(response.read())
    info = probe_video(clip)
    assert (info.width, info.height) == (1280, 720) and info.video_codec == "h264"
    assert info.audio_codec == "aac", "the clip has no AAC audio stream"
    assert abs(info.duration - 4.0) < 0.3
    ledger = sdk_sim.ledger()
    assert ledger["uploads"] == 1 and ledger["requests"]["upload_ticket"] == 1 and ledger["requests"]["upload_put"] == 1
    assert [s["model"] for s in ledger["submissions"]] == [SEEDANCE] and ledger["charged_total"] == 0.96


def test_sdk_sync_mode_and_wrong_key(sdk_sim):
    data_uri_body = {"image": "data:image/png;base64," + base64.b64encode(image_bytes()).decode(),
                     "prompt": "zoom", "duration": 4}
    client = wavespeed.Client(api_key=API_KEY, base_url=sdk_sim.base_url)
    output = client.run(SEEDANCE, data_uri_body, enable_sync_mode=True)
    assert output["outputs"][0].endswith("/video.mp4")

    stranger = wavespeed.Client(api_key="not-the-key", base_url=sdk_sim.base_url)
    with pytest.raises(RuntimeError, match="HTTP 401"):
        stranger.run(SEEDANCE, data_uri_body, poll_interval=0.1)


def test_sdk_reports_a_failed_task_with_the_servers_error(make_sim):
    sim = make_sim(api_key=API_KEY, faults=Faults(rate_fail=1.0))
    client = wavespeed.Client(api_key=API_KEY, base_url=sim.base_url)
    body = {"image": sim.base_url + "/_sim/uploads/none/x.png", "prompt": "x", "duration": 4}
    with pytest.raises(RuntimeError, match=r"Prediction failed \(task_id: [0-9a-f]{32}\): .*moderation"):
        client.run(SEEDANCE, body, poll_interval=0.05)
