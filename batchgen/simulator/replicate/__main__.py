"""``python -m batchgen.simulator.replicate``: serve the Replicate simulator until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import sys

from .config import add_arguments, config_from_args
from .running import serve_forever


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batchgen.simulator.replicate",
                                     description="serve the local Replicate API simulator")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(serve_forever(config, args.host, args.port))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
