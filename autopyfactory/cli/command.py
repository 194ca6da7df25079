"""What every command module of ``autopyfactory`` shares: how it registers, exits and reads options.

A command module (``run.py``, ``check.py``, ...) exposes ``register(commands)``, which adds its
parser(s) with ``commands.add_parser``, and ``run(args) -> int``, which carries the command out and
returns the exit code; ``main.py`` lists the modules and dispatches to their ``run``. Exit codes:
0 success, 1 configuration or runtime error, 2 usage error (argparse's own, or :class:`UsageError`).
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Protocol

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
DEFAULT_CONFIG = "/etc/autopyfactory/factory.conf"
CONFIG_ENV = "AUTOPYFACTORY_CONFIG"


class UsageError(Exception):
    """Bad command-line input that argparse could not catch itself (exit 2)."""


class Commands(Protocol):
    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        """A subcommand's parser, with the options every command takes (``-v``)."""
        ...


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``-c``: defaults to $AUTOPYFACTORY_CONFIG, else the installed /etc/autopyfactory/factory.conf."""
    parser.add_argument(
        "-c",
        "--config",
        default=os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG,
        help=f"factory.conf (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG})",
    )


def whole_number(text: str, minimum: int) -> int:
    """An argparse type: a whole number of at least ``minimum``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        rule = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
        raise argparse.ArgumentTypeError(f"{rule}, got {value}")
    return value
