"""``autopyfactory schedd list|forget``: the schedds the factory remembers submitting to.

The census asks every schedd this factory submitted to (``<stateDir>/schedds.json``, see
batch/condor/schedds.py), also after a queue moved to another one, so that pilots still waiting in
the old schedd count. While such a schedd does not answer, the labels it remembers get nothing.
If it is gone for good, ``forget`` drops it: after a confirmation that says what that means, since
its pilots (if it still has any) are then no longer counted against the labels' and the
factory's limits. The running daemon reads the file again at its next census.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from autopyfactory.batch.condor.backend import LOCAL_NAME
from autopyfactory.batch.condor.command import Schedd
from autopyfactory.batch.condor.schedds import MEMORY_FILE, ScheddRecord, forget_schedd, remembered
from autopyfactory.cli.command import EXIT_ERROR, EXIT_OK, EXIT_USAGE, Commands, add_config_option
from autopyfactory.config import loader as config


def register(commands: Commands) -> None:
    """``schedd``."""
    parser = commands.add_parser("schedd", help="the schedds this factory remembers submitting to")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="each remembered schedd, its labels and last submission")
    add_config_option(listing)
    forget = actions.add_parser("forget", help="stop asking a schedd (its pilots are no longer counted)")
    forget.add_argument(
        "name", metavar="SCHEDD", help=f"the schedd's name ({LOCAL_NAME!r}: the local schedd)"
    )
    forget.add_argument("--pool", default="", help="its pool (collector), as in condorPool")
    forget.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_config_option(forget)


def run(args: argparse.Namespace) -> int:
    loaded = config.load(args.config)
    state_dir = Path(loaded.factory.identity.state_dir)
    records = remembered(state_dir)
    if args.action == "list":
        print(
            "\n".join(describe(schedd, record) for schedd, record in records.items())
            or "no schedd remembered"
        )
        return EXIT_OK
    schedd = Schedd("" if args.name == LOCAL_NAME else args.name, args.pool)
    record = records.get(schedd)
    if record is None:
        known = ", ".join(_name(s) for s in records) or "none"
        print(
            f"autopyfactory schedd forget: {_name(schedd)} is not remembered (remembered: {known})",
            file=sys.stderr,
        )
        return EXIT_ERROR
    print(consequences(schedd, record))
    if not args.yes and not _confirmed():
        print("nothing changed (answer 'yes', or give --yes)", file=sys.stderr)
        return EXIT_USAGE
    try:
        forget_schedd(state_dir, schedd)
    except OSError as exc:
        print(f"autopyfactory schedd forget: {state_dir / MEMORY_FILE}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{_name(schedd)} forgotten; the factory stops asking it from its next cycle")
    return EXIT_OK


def _name(schedd: Schedd) -> str:
    return (schedd.name or LOCAL_NAME) + (f" (pool {schedd.pool})" if schedd.pool else "")


def describe(schedd: Schedd, record: ScheddRecord) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(record.last_submission()))
    return f"{_name(schedd)}: labels {', '.join(sorted(record.labels)) or '-'}; last submission {when}"


def consequences(schedd: Schedd, record: ScheddRecord) -> str:
    """What forgetting ``schedd`` means, for the confirmation."""
    labels = ", ".join(sorted(record.labels)) or "no label"
    return (
        f"{describe(schedd, record)}\n"
        f"Forgetting it means the factory no longer asks it: pilots of this factory still in it are no"
        f" longer counted, neither for their labels ({labels}) nor for maxPilots, so the factory may"
        f" submit more pilots than its limits allow while they live. Its labels get pilots again"
        f" from the next cycle. Do this only if the schedd is gone for good."
    )


def _confirmed() -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        return input("Forget it? [yes/no] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False
