"""The ``demo`` command's options, apart from demo.py so that the CLI need not import the monitor."""

from __future__ import annotations

import argparse


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
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
        "does every 60 [0]",
    )
    parser.add_argument(
        "--pilot3",
        action="store_true",
        help="run the real PanDA pilot 3 (panda-pilot sdist, downloaded with pip on first use) instead of "
        "the stand-in pilot; each pilot then takes about 40 s",
    )
    parser.add_argument("--keep", action="store_true", help="keep the demo's directory at the end")
