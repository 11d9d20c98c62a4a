"""The API key stays secret: never in any file a run writes, nor in what it prints, and it is sent only
to the configured base URL, never to output or image URLs on another origin (127.0.0.2 here)."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web
from conftest import image_bytes, run
from runner_helpers import make_images, run_cli, write_manifest
from threaded_server import ThreadedServer

from batchgen.cli import main
from batchgen.errors import FatalError, UsageError
from batchgen.providers.wavespeed import WaveSpeedProvider
from batchgen.simulator import Faults

KEY = "sk-live-SECRET-4f9a0c1d2e3b"


class OtherOrigin(ThreadedServer):
    """A second web server on 127.0.0.2 that records every request's headers; it serves one image and
    passes output downloads through to the simulator, so output URLs can point at another origin."""

    def __init__(self, upstream: str):
        super().__init__(host="127.0.0.2", name="other-origin")
        self.upstream = upstream
        self.seen: list[tuple[str, dict[str, str]]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/img/pic.png", self._image)
        app.router.add_get("/_sim/outputs/{tail:.*}", self._output)
        return app

    async def on_start(self) -> None:
        self._session = aiohttp.ClientSession()

    async def on_stop(self) -> None:
        await self._session.close()

    async def _image(self, request: web.Request) -> web.Response:
        self.seen.append((request.path, dict(request.headers)))
        return web.Response(body=image_bytes(96, 64), content_type="image/png")

    async def _output(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.path, dict(request.headers)))
        async with self._session.get(self.upstream + request.path_qs, allow_redirects=False) as up:
            body = await up.read()
            return web.Response(status=up.status, body=body, content_type=up.content_type)


@pytest.fixture
def other(sim):
    with OtherOrigin(sim.base_url) as origin:
        yield origin


def test_key_goes_only_to_the_base_url_and_is_never_written(make_sim, tmp_path, capsys):
    sim = make_sim(api_key=KEY, url_ttl=0.5, faults=Faults(rate_5xx=0.2, rate_truncate=0.2, rate_fail=0.2))
    with OtherOrigin(sim.base_url) as origin:
        sim.simulator.hostile.set({"output_base_url": origin.base_url})
        make_images(tmp_path / "img", 3)
        manifest = write_manifest(tmp_path, [
            {"image": "img/*.png", "prompt": "The {stem} turns", "duration": 4},
            {"image": f"{origin.base_url}/img/pic.png", "prompt": "A remote picture", "duration": 4, "id": "remote"},
        ])
        out = tmp_path / "out"
        codes = [run_cli(sim, manifest, out, "-vv", key=KEY)]
        sim.configure(faults={"fail": 0.0})
        codes.append(run_cli(sim, manifest, out, "-vv", "--retry-failed", key=KEY))
        assert codes[-1] == 0, capsys.readouterr().err
        assert main(["status", str(out / "state.jsonl"), "--json"]) == 0
        printed = capsys.readouterr()
    outputs = [h for path, h in origin.seen if path.startswith("/_sim/outputs/")]
    assert len(outputs) >= 4, "every video was fetched from the other origin"
    assert any(path == "/img/pic.png" for path, _ in origin.seen), "the simulator fetched the remote image"
    for path, headers in origin.seen:
        assert "Authorization" not in headers, f"{path} received an Authorization header"
        assert not any(KEY in value for value in headers.values()), path
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "batchgen.log" for p in written) and any(p.suffix == ".json" for p in written)
    for path in written:
        assert KEY.encode() not in path.read_bytes(), f"the API key is in {path}"
    assert KEY not in printed.out + printed.err


def test_refused_key_is_not_echoed_in_errors(make_sim, tmp_path, capsys):
    sim = make_sim(api_key="the-right-key")

    async def refused() -> FatalError:
        provider = WaveSpeedProvider(KEY, sim.base_url)
        try:
            with pytest.raises(FatalError) as info:
                await provider.result("0" * 32)
            return info.value
        finally:
            await provider.close()

    exc = run(refused())
    assert "WAVESPEED_API_KEY" in str(exc)
    assert KEY not in str(exc) and KEY not in repr(exc) and KEY not in repr(exc.args)
    make_images(tmp_path / "img", 1)
    manifest = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "x", "duration": 4}])
    assert run_cli(sim, manifest, tmp_path / "out", "-vv", key=KEY) == 3
    assert KEY not in capsys.readouterr().err
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_provider_refuses_a_base_url_that_is_not_http(other):
    with pytest.raises(UsageError) as info:
        WaveSpeedProvider(KEY, "file:///etc")
    assert KEY not in str(info.value)
