"""``autopyfactory demo``: the PanDA/CRIC stand-ins, the monitor and the factory on this host.

The demo itself (``autopyfactory.demo``) is imported only when the command runs: it needs the
monitor extra, which the other commands do without.
"""

from __future__ import annotations

import argparse
import logging
import sys

from autopyfactory.cli.command import EXIT_ERROR, Commands, whole_number
from autopyfactory.runtime import logs


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "demo", help="run PanDA/CRIC stand-ins, the monitor and the factory on this host"
    )
    parser.add_argument(
        "--cycles", type=int, default=None, help="stop after this many cycles (default: Ctrl-C)"
    )
    parser.add_argument("--sleep", type=int, default=5, help="seconds between cycles [5]")
    parser.add_argument("--job-seconds", type=float, default=3.0, help="how long each demo job runs [3]")
    parser.add_argument(
        "--panda-lag",
        type=float,
        default=0.0,
        help="refresh the stand-in's job counts (but assigned) only every this many seconds, as PanDA "
        "does every 60 (ATLAS: 120); the factory's pandaLag follows it [0]",
    )
    parser.add_argument(
        "--pilot3",
        action="store_true",
        help="run the real PanDA pilot 3 (panda-pilot sdist, downloaded with pip on first use) instead of "
        "the stand-in pilot; each pilot then takes about 40 s",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=0,
        help="the stand-in listens on this port and the monitor on the next one (default: free ports)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the demo's directory at the end")


def _port(text: str) -> int:
    """A base port: the monitor takes the next one too."""
    port = whole_number(text, 1)
    if port > 65534:
        raise argparse.ArgumentTypeError(
            f"must be at most 65534 (the monitor takes the next port), got {port}"
        )
    return port


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401  (the monitor extra)
    except ImportError:
        print("autopyfactory demo needs the monitor extra: pip install '.[monitor]'", file=sys.stderr)
        return EXIT_ERROR
    from autopyfactory.demo.run import run_demo

    logs.setup_logging("", args.verbose)
    if not args.verbose:
        logging.getLogger().setLevel(logging.WARNING)
    return run_demo(args)
