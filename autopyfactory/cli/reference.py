"""``autopyfactory config-reference``: the configuration reference (markdown), printed or written
into docs/configuration-reference.md between its markers (a test keeps that page current)."""

from __future__ import annotations

import argparse
from pathlib import Path

from autopyfactory.cli.command import EXIT_OK, Commands, UsageError
from autopyfactory.config.schema import reference_markdown

#: The generated block in docs/configuration-reference.md (``config-reference --write``).
REFERENCE_START, REFERENCE_END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def register(commands: Commands) -> None:
    parser = commands.add_parser("config-reference", help="print the configuration reference (markdown)")
    parser.add_argument(
        "--write",
        metavar="FILE",
        help="replace the reference block of this Markdown file (docs/configuration-reference.md) "
        "instead of printing",
    )


def run(args: argparse.Namespace) -> int:
    reference = reference_markdown()
    if not args.write:
        print(reference, end="")
        return EXIT_OK
    path = Path(args.write)
    text = path.read_text()
    if REFERENCE_START not in text or REFERENCE_END not in text:
        raise UsageError(f"{path} has no {REFERENCE_START} ... {REFERENCE_END} block")
    head, rest = text.split(REFERENCE_START, 1)
    tail = rest.split(REFERENCE_END, 1)[1]
    path.write_text(f"{head}{REFERENCE_START}\n\n{reference.rstrip()}\n\n{REFERENCE_END}{tail}")
    return EXIT_OK
