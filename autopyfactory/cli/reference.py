"""``autopyfactory config-reference``: the configuration reference (markdown), printed or written
into the README between its markers (a test keeps the README current)."""

from __future__ import annotations

import argparse
from pathlib import Path

from autopyfactory.cli.command import EXIT_OK, Commands, UsageError
from autopyfactory.config.schema import reference_markdown

README_START, README_END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def register(commands: Commands) -> None:
    parser = commands.add_parser("config-reference", help="print the configuration reference (markdown)")
    parser.add_argument("--readme", help="rewrite the reference block in this README instead of printing")


def run(args: argparse.Namespace) -> int:
    reference = reference_markdown()
    if not args.readme:
        print(reference, end="")
        return EXIT_OK
    path = Path(args.readme)
    text = path.read_text()
    if README_START not in text or README_END not in text:
        raise UsageError(f"{path} has no {README_START} ... {README_END} block")
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    path.write_text(f"{head}{README_START}\n\n{reference.rstrip()}\n\n{README_END}{tail}")
    return EXIT_OK
