"""Shared fixtures: a fast simulator on 127.0.0.1 and small real images.

There is no pytest-asyncio here: async test bodies run through ``run(coro)`` (asyncio.run), and the
simulator runs in its own thread (SimulatorThread), so sync code such as the SDK can use it too.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace
from typing import Any, Callable, Iterator

import pytest
from PIL import Image

from batchgen.simulator import Faults, SimConfig, SimulatorThread

API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def run(coro):
    """Run one async test body to completion."""
    return asyncio.run(coro)


def image_bytes(width: int = 64, height: int = 48, fmt: str = "PNG", color=(200, 80, 40)) -> bytes:
    """A small real picture (a two-colour split so encoders have something to see)."""
    image = Image.new("RGB", (width, height), color)
    image.paste((30, 90, 200), (0, 0, width // 2, height))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def no_user_config(tmp_path, monkeypatch):
    """A developer's own ~/.config/batchgen/models.yaml (or $BATCHGEN_MODELS) must not change any test."""
    monkeypatch.delenv("BATCHGEN_MODELS", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.fixture(scope="session")
def render_cache_dir(tmp_path_factory) -> str:
    """One disk cache for the whole session, so each distinct clip is encoded once."""
    return str(tmp_path_factory.mktemp("render-cache"))


@pytest.fixture
def fast_config(render_cache_dir) -> SimConfig:
    """A simulator that finishes every task in ~50 ms (plus encoding) with no faults, Sora 2 served."""
    # Tests of other behaviours play the API as it was before Sora 2's retirement; the retirement modes
    # are tested on their own (test_sim_account.py).
    return SimConfig(gen_base=0.05, gen_per_second=0.0, gen_jitter=0.0, render_cache_dir=render_cache_dir,
                     retired_mode="serve")


@pytest.fixture
def make_sim(fast_config) -> Iterator[Callable[..., SimulatorThread]]:
    """Start simulators with fast settings plus overrides: ``make_sim(url_ttl=0.3, faults=Faults(...))``."""
    started: list[SimulatorThread] = []

    def make(**overrides: Any) -> SimulatorThread:
        thread = SimulatorThread(replace(fast_config, faults=overrides.pop("faults", Faults()), **overrides))
        started.append(thread.__enter__())
        return thread

    yield make
    for thread in reversed(started):
        thread.stop()


@pytest.fixture
def sim(make_sim) -> SimulatorThread:
    return make_sim()
