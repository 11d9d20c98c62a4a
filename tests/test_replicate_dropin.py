"""Drop-in proof: today's Runner, unchanged, drives the Replicate client against the Replicate simulator.

The runner redesign owns manifests naming providers and fallback across them; this only shows the
provider keeps the runner's promises as it is: lost answers found by input, nothing paid twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from runner_helpers import make_images, sha256, write_manifest

from batchgen.manifest import load_manifest
from batchgen.models import ModelTable
from batchgen.providers.replicate import MODELS, SEEDANCE, ReplicateProvider
from batchgen.runner import RunOptions, Runner
from batchgen.poll_policy import PollPolicy
from batchgen.simulator import Faults
from batchgen.simulator.replicate import ReplicateConfig, start
from batchgen.state import StateLog, load
from batchgen.verifier import Verifier
from conftest import API_KEY


def test_the_runner_finishes_a_faulty_replicate_batch_paying_each_job_once(render_cache_dir, tmp_path):
    make_images(tmp_path / "img", 4)
    manifest_path = write_manifest(tmp_path, [{"image": "img/*.png", "prompt": "The {stem} turns", "duration": 4,
                                               "resolution": "480p", "model": SEEDANCE}])
    manifest = load_manifest(manifest_path, ModelTable(MODELS))
    out = tmp_path / "out"
    out.mkdir()
    config = ReplicateConfig(api_key=API_KEY, seed=3, gen_base=0.05, gen_per_second=0.0, gen_jitter=0.0,
                             render_cache_dir=render_cache_dir,
                             faults=Faults(rate_drop_after=0.4, rate_5xx=0.1))

    async def runs():
        sim = await start(config)
        try:
            for _attempt in range(4):  # each run resumes the last, as a user would
                provider = ReplicateProvider(API_KEY, sim.base_url)
                verifier = Verifier()
                try:
                    with StateLog(out / "state.jsonl") as log:
                        log.open()
                        options = RunOptions(out_dir=out, poll=PollPolicy(min_interval=0.05), unknown_grace=0.0)
                        runner = Runner(manifest.jobs, provider, log, manifest.models, options, verifier=verifier)
                        result = await runner.run()
                finally:
                    verifier.shutdown()
                    await provider.close()
                if result.exit_code == 0:
                    break
            return sim.ledger()
        finally:
            await sim.close()

    ledger = asyncio.run(runs())
    assert ledger["faults"].get("drop-after"), "the seed must lose at least one answer for this test to mean much"
    state = load(out / "state.jsonl")
    done = [r for r in state.jobs.values() if r.status.value == "downloaded"]
    assert len(done) == 4, {r.id: r.status.value for r in state.jobs.values()}
    for rec in done:
        assert sha256(out / rec.path) == rec.sha256 == ledger["outputs"][rec.pid]
    charged = Counter(s["body_hash"] for s in ledger["submissions"] if s["charged"])
    assert max(charged.values()) == 1, "a job was paid twice"
    assert ledger["charged_total"] == round(4 * 0.12 * 4, 2)
