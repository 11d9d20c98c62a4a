"""A local stand-in for the WaveSpeed v3 API (shared/API.md), with a ledger and fault injection.

Every test, demo and benchmark runs against it; the runner never imports it.

    async:  running = await start(SimConfig(gen_base=0.05)); ...; await running.close()
    sync:   with SimulatorThread(SimConfig(gen_base=0.05)) as sim: ... sim.ledger()
    CLI:    asyncio.run(serve_forever(config_from_args(args), args.host, args.port))
"""

from .config import FAULT_FLAGS, Faults, SimConfig, add_arguments, apply_changes, config_from_args
from .running import RunningSimulator, SimulatorThread, serve_forever, start
from .server import Simulator

__all__ = [
    "FAULT_FLAGS", "Faults", "RunningSimulator", "SimConfig", "Simulator", "SimulatorThread",
    "add_arguments", "apply_changes", "config_from_args", "serve_forever", "start",
]
