"""Command-line options shared by the ``autopyfactory`` subcommands (cli.py, control_cli.py)."""

from __future__ import annotations

import argparse
import os

DEFAULT_CONFIG = "/etc/autopyfactory/factory.conf"
CONFIG_ENV = "AUTOPYFACTORY_CONFIG"


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``-c``: defaults to $AUTOPYFACTORY_CONFIG, else the installed /etc/autopyfactory/factory.conf."""
    parser.add_argument(
        "-c",
        "--config",
        default=os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG,
        help=f"factory.conf (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG})",
    )
