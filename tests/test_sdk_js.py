"""The official JavaScript SDK (npm ``wavespeed`` 0.3.2, unmodified) against ``batchgen simulate``:
an upload through the SDK's ticket flow and one Seedance job, proof the wire format matches for JS too.

The SDK is installed with npm into a cache folder on first use; the test skips, saying why, only
when node or npm is missing or the install fails (CI installs Debian's nodejs and npm, see .ci/run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from batchgen.models import SEEDANCE
from batchgen.probe import probe_video
from conftest import image_bytes

SDK_VERSION = "0.3.2"  # the version shared/API.md cites
KEY = "js-sdk-key"

# The SDK's documented way to point at another server: new Client(apiKey, { baseUrl }).
SCRIPT = """
const { Client } = require('wavespeed');
(async () => {
  const [baseUrl, apiKey, imagePath, model] = process.argv.slice(2);
  const client = new Client(apiKey, { baseUrl, maxConnectionRetries: 0 });
  const url = await client.upload(imagePath);
  const output = await client.run(model, { image: url, prompt: 'slow orbit, soft music', duration: 4,
                                           resolution: '720p' }, { pollInterval: 0.1, timeout: 60 });
  console.log(JSON.stringify({ url, outputs: output.outputs, version: require('wavespeed/package.json').version }));
})().catch((err) => { console.error(err && err.stack ? err.stack : String(err)); process.exit(1); });
"""


@pytest.fixture(scope="session")
def js_sdk() -> Path:
    """A folder with node_modules/wavespeed at the pinned version (installed once, then reused)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node or npm is not installed (Debian: apt-get install nodejs npm; .ci/run does it)")
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = cache_home / "batchgen-tests" / f"wavespeed-js-{SDK_VERSION}"
    installed = cache / "node_modules" / "wavespeed" / "package.json"
    if not installed.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run([npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund", "--ignore-scripts",
                                   "--save-exact", f"wavespeed@{SDK_VERSION}"],
                                  capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm install wavespeed@{SDK_VERSION} timed out after 300 s")
        if done.returncode != 0 or not installed.is_file():
            pytest.skip(f"npm install wavespeed@{SDK_VERSION} failed: {done.stderr.strip()[-300:]}")
    assert json.loads(installed.read_text())["version"] == SDK_VERSION
    return cache


@pytest.fixture
def simulate(tmp_path, render_cache_dir):
    """``batchgen simulate`` as a user starts it, on a free loopback port; stopped after the test."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchgen", "simulate", "--port", "0", "--api-key", KEY, "--gen-base", "0.2",
         "--gen-per-second", "0", "--gen-jitter", "0", "--render-cache", render_cache_dir],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in first, (first, proc.stderr.read() if proc.poll() else "")
        yield first.rsplit(" ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def test_js_sdk_uploads_and_runs_a_seedance_job(js_sdk, simulate, tmp_path):
    picture = tmp_path / "product.png"
    picture.write_bytes(image_bytes(320, 180))
    script = js_sdk / "run_job.js"
    script.write_text(SCRIPT, encoding="utf-8")
    done = subprocess.run(["node", str(script), simulate, KEY, str(picture), SEEDANCE],
                          capture_output=True, text=True, timeout=120, cwd=js_sdk)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["version"] == SDK_VERSION and answer["url"].startswith(simulate)
    clip = tmp_path / "clip.mp4"
    with urllib.request.urlopen(answer["outputs"][0], timeout=30) as response:
        clip.write_bytes(response.read())
    info = probe_video(clip)
    assert (info.width, info.height) == (1280, 720) and info.video_codec == "h264" and abs(info.duration - 4) < 0.3
    with urllib.request.urlopen(simulate + "/_sim/ledger", timeout=10) as response:
        ledger = json.loads(response.read())
    assert ledger["uploads"] == 1 and ledger["requests"]["upload_ticket"] == 1 and ledger["requests"]["upload_put"] == 1
    assert [s["model"] for s in ledger["submissions"]] == [SEEDANCE] and ledger["charged_total"] == 0.96
