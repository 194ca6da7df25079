"""``autopyfactory run``: the factory itself, in the foreground, under systemd or as a daemon.

The service (``runtime/service.py``) does the work; this module turns the options into its
``RunOptions``, sets up logging, the pidfile, detaching and the drop of root privileges.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from autopyfactory.cli.command import (
    EXIT_ERROR,
    EXIT_OK,
    Commands,
    UsageError,
    add_config_option,
    whole_number,
)
from autopyfactory.config import loader as config
from autopyfactory.runtime import daemon, logs
from autopyfactory.runtime.service import RunOptions, Service, install_signal_handlers
from autopyfactory.runtime.systemd import Notifier


def register(commands: Commands) -> None:
    run_ = commands.add_parser("run", help="run the factory: poll PanDA and HTCondor, submit pilots")
    add_config_option(run_)
    how_long = run_.add_mutually_exclusive_group()
    how_long.add_argument("--once", action="store_true", help="run one cycle and exit")
    how_long.add_argument("--cycles", type=_positive, help="run this many cycles and exit")
    run_.add_argument(
        "--dry-run",
        action="store_true",
        help="read everything, submit nothing, send nothing to the monitor; write only to a directory"
        " of its own (printed)",
    )
    run_.add_argument("--dry-run-dir", default="", help="that directory (default: a new one in $TMPDIR)")
    run_.add_argument("--schedconfig", help="use this dump (URL or path) instead of the configured one")
    run_.add_argument("--log-file", default="", help="log here (reopened after logrotate) instead of stderr")
    run_.add_argument(
        "--pidfile", default="", help="locked pidfile: a second factory with it refuses to start"
    )
    run_.add_argument("--daemon", action="store_true", help="detach from the terminal (not under systemd)")
    run_.add_argument("--runas", default="", help="drop root privileges to this user")


def _positive(text: str) -> int:
    return whole_number(text, 1)


def run(args: argparse.Namespace) -> int:
    handler = logs.setup_logging(args.log_file, args.verbose)
    path = Path(args.config)
    loaded = config.load(path)
    for error in loaded.errors:
        logging.getLogger("autopyfactory").error("%s", error)
    options = RunOptions(
        1 if args.once else args.cycles, args.dry_run, args.schedconfig or "", _dry_run_dir(args)
    )
    pidfile = daemon.PidFile(Path(args.pidfile)) if args.pidfile else None
    try:
        if args.runas:
            daemon.user_ids(args.runas)  # fail early, before detaching, on an unknown user
        if args.daemon:
            with daemon.detach(pidfile, logs.stream_fileno(handler)):
                return _serve(path, loaded, options, args.runas, Notifier(None))
        if pidfile:
            pidfile.acquire()
        return _serve(path, loaded, options, args.runas, Notifier(os.environ.get("NOTIFY_SOCKET")))
    except daemon.DaemonError as exc:
        print(f"autopyfactory run: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if pidfile and not args.daemon:
            pidfile.release()


def _dry_run_dir(args: argparse.Namespace) -> str:
    """The dry run's own directory, created and announced; "" for a real run."""
    if args.dry_run_dir and not args.dry_run:
        raise UsageError("--dry-run-dir needs --dry-run")
    if not args.dry_run:
        return ""
    try:
        if args.dry_run_dir:
            Path(args.dry_run_dir).mkdir(parents=True, exist_ok=True)
            directory = str(Path(args.dry_run_dir).resolve())
        else:
            directory = tempfile.mkdtemp(prefix="autopyfactory-dry-run-")
    except OSError as exc:
        raise UsageError(f"cannot create the dry run's directory: {exc}") from None
    print(
        f"dry run: nothing is submitted or sent to the monitor; submit files and the state go to {directory}",
        flush=True,
    )
    return directory


def _serve(
    path: Path, loaded: config.FactoryConfig, options: RunOptions, runas: str, notifier: Notifier
) -> int:
    if runas:
        daemon.drop_privileges(runas)
    service = Service(path, loaded, options, notifier)
    install_signal_handlers(service)
    service.run()
    return EXIT_OK
