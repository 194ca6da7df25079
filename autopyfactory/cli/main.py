"""The ``autopyfactory`` command: the parser and the dispatch to one module per command.

Every command module registers its parser(s) and runs its command the same way (``command.py``);
:data:`COMMANDS` lists them in the order ``--help`` shows them. Exit codes: 0 success, 1
configuration or runtime error, 2 usage error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from autopyfactory import __version__
from autopyfactory.cli import check, control, cron, demo, migrate, reference, run, schedd, simulate, status
from autopyfactory.cli.command import EXIT_ERROR, EXIT_USAGE, Commands, UsageError
from autopyfactory.config.loader import ConfigError


class CommandModule(Protocol):
    def register(self, commands: Commands) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


COMMANDS: tuple[CommandModule, ...] = (
    check, run, status, demo, simulate, reference, control, schedd, migrate, cron,
)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args))
    except UsageError as exc:
        print(f"autopyfactory {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return EXIT_ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autopyfactory", description="Pilot factory for the PanDA workload system."
    )
    parser.add_argument("--version", action="version", version=f"autopyfactory {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    # -v also after the command; SUPPRESS keeps a subcommand's default from hiding a top-level -v
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )
    actions = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(_Subcommands(actions, common, module.run))
    return parser


class _Subcommands:
    """``add_subparsers`` for one command module: every command it adds takes the common options
    and is run by the module's ``run``."""

    def __init__(
        self,
        actions: argparse._SubParsersAction[argparse.ArgumentParser],
        common: argparse.ArgumentParser,
        handler: Callable[[argparse.Namespace], int],
    ) -> None:
        self._actions, self._common, self._handler = actions, common, handler

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser = self._actions.add_parser(name, parents=[self._common], **kwargs)
        parser.set_defaults(handler=self._handler)
        return parser
