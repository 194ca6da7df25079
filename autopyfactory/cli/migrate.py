"""``autopyfactory migrate-apf2``: a factory.conf equivalent to APF 2's autopyfactory.conf and
queues.conf (the translation is ``config/apf2.py``), with what has no equivalent listed."""

from __future__ import annotations

import argparse
import configparser
import sys
from pathlib import Path

from autopyfactory.cli.command import EXIT_ERROR, EXIT_OK, Commands
from autopyfactory.config.apf2 import MigrationError, migrate, read_apf, read_profiles, render


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "migrate-apf2", help="write a factory.conf equivalent to APF 2's autopyfactory.conf + queues.conf"
    )
    parser.add_argument("factory_conf", metavar="AUTOPYFACTORY_CONF", help="APF 2's autopyfactory.conf")
    parser.add_argument("queues_conf", metavar="QUEUES_CONF", help="APF 2's queues.conf")
    parser.add_argument(
        "--auth-conf",
        action="append",
        default=[],
        metavar="FILE",
        help="APF 2's auth.conf or proxy.conf, to write the proxy file of each queue's credential profile"
        " (default: the authConf and proxyConf that autopyfactory.conf names, when readable)",
    )
    parser.add_argument("-o", "--output", default="-", help="write here (default: stdout)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --output")


def run(args: argparse.Namespace) -> int:
    factory_path, queues_path = Path(args.factory_conf), Path(args.queues_conf)
    try:
        factory_conf = read_apf(factory_path)
        profiles = credential_profiles(factory_conf, [Path(p) for p in args.auth_conf])
        migration = migrate(factory_conf, read_apf(queues_path), profiles)
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
        print(f"not migrated: {entry}", file=sys.stderr)
    if migration.unmapped:
        print(
            f"{len(migration.unmapped)} APF 2 settings not migrated: listed in [Factory] unmigrated,"
            " about which `autopyfactory check` warns until you delete them",
            file=sys.stderr,
        )
    return EXIT_OK


def credential_profiles(factory_conf: configparser.ConfigParser, given: list[Path]) -> dict[str, str]:
    """Credential profile -> proxy file, from the files given, else from those autopyfactory.conf names."""
    named = [factory_conf.get("Factory", key, fallback="").strip() for key in ("authConf", "proxyConf")]
    files = given or [Path(path) for path in named if path and path.lower() != "none"]
    profiles: dict[str, str] = {}
    for path in files:
        profiles.update(read_profiles(path))
    return profiles
