"""A local stand-in for Replicate's HTTP API (docs/replicate.md), sharing the WaveSpeed simulator's
renderer, task timings and ledger.

    async:  running = await start(ReplicateConfig(gen_base=0.05)); ...; await running.close()
    CLI:    python -m batchgen.simulator.replicate --port 8001
"""

from .config import ReplicateConfig, add_arguments, apply_changes, config_from_args
from .running import serve_forever, start
from .server import ReplicateSimulator

__all__ = ["ReplicateConfig", "ReplicateSimulator", "add_arguments", "apply_changes", "config_from_args",
           "serve_forever", "start"]
