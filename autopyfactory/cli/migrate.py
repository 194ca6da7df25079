"""``autopyfactory migrate-apf2``: a factory.conf equivalent to APF 2's autopyfactory.conf and
queues.conf (the translation is ``config/apf2.py``), with what has no equivalent listed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autopyfactory.cli.command import EXIT_ERROR, EXIT_OK, Commands
from autopyfactory.config.apf2 import MigrationError, migrate, read_apf, render


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "migrate-apf2", help="write a factory.conf equivalent to APF 2's autopyfactory.conf + queues.conf"
    )
    parser.add_argument("factory_conf", metavar="AUTOPYFACTORY_CONF", help="APF 2's autopyfactory.conf")
    parser.add_argument("queues_conf", metavar="QUEUES_CONF", help="APF 2's queues.conf")
    parser.add_argument("-o", "--output", default="-", help="write here (default: stdout)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --output")


def run(args: argparse.Namespace) -> int:
    factory_path, queues_path = Path(args.factory_conf), Path(args.queues_conf)
    try:
        migration = migrate(read_apf(factory_path), read_apf(queues_path))
    except MigrationError as exc:
        print(f"autopyfactory migrate-apf2: {exc}", file=sys.stderr)
        return EXIT_ERROR
    text = render(migration, factory_path, queues_path)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        output = Path(args.output)
        if output.exists() and not args.force:
            print(f"autopyfactory migrate-apf2: {output} exists (--force to overwrite)", file=sys.stderr)
            return EXIT_ERROR
        output.write_text(text)
        print(f"wrote {output}: {len(migration.queues)} queues", file=sys.stderr)
    for entry in migration.unmapped:
        print(f"no equivalent: {entry}", file=sys.stderr)
    return EXIT_OK
