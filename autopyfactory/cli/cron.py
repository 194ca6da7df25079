"""``autopyfactory mon-exiting`` and ``mon-stale``: the cron helpers (their work is in
``autopyfactory/cron/``; here only their options)."""

from __future__ import annotations

import argparse

from autopyfactory.cli.command import Commands, add_config_option
from autopyfactory.cron.command import run_command

HELPERS = (
    ("mon-exiting", "cron: report finished, removed and vanished pilots to the monitor"),
    ("mon-stale", "cron: flag pilots idle or running too long at the monitor (staleRemove: condor_rm)"),
)


def register(commands: Commands) -> None:
    for name, text in HELPERS:
        add_config_option(commands.add_parser(name, help=text))


def run(args: argparse.Namespace) -> int:
    return run_command(args)
