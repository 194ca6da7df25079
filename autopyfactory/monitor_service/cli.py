"""``autopyfactory-monitor``: serve the API, register factories, run expiry and retention, migrate.

Every command takes ``--db`` (a SQLite file path, or a URL such as
``postgresql+psycopg://user@host/apfmon``), before or after the command name, and upgrades the
schema before it does anything else (quietly; ``-v`` shows the migration log).

A SQLite file is created only by the service user (``--service-user``, default ``autopyfactory``,
when that user exists on this host): a file created by root would be one the service cannot
write, so another user is refused with the command to run instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pwd
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import OperationalError

from autopyfactory.monitor_service.db import Database, DatabaseUrlError
from autopyfactory.monitor_service.errors import AlreadyExists, NotFound
from autopyfactory.monitor_service.expiry import Expiry
from autopyfactory.monitor_service.migrations import upgrade
from autopyfactory.monitor_service.queries import Queries
from autopyfactory.monitor_service.schemas import FID_PATTERN
from autopyfactory.monitor_service.settings import (
    DEFAULT_DB,
    Clock,
    ExpiryRules,
    Limits,
    MonitorSettings,
    database_url,
    utc_now,
)
from autopyfactory.monitor_service.store import Store

if TYPE_CHECKING:
    from fastapi import FastAPI

DB_ENV = "AUTOPYFACTORY_MONITOR_DB"
SERVE_ENV = "AUTOPYFACTORY_MONITOR_SERVE"  # serve's arguments, handed to its worker processes
GRACEFUL_SECONDS = 30  # on SIGTERM, requests in flight get this long to be answered
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


#: The largest ``clean --days`` (a hundred years): beyond it the cut-off date does not exist.
MAX_DAYS = 36500.0


def _days(text: str) -> float:
    """A positive number of days, at most MAX_DAYS."""
    value = _positive_float(text)
    if value > MAX_DAYS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_DAYS:g} days, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


SERVICE_USER = "autopyfactory"
USER_ENV = "AUTOPYFACTORY_USER"


def _global_options(parser: argparse.ArgumentParser, default: object) -> None:
    """--db, --service-user and -v; on the subcommands with ``default=SUPPRESS``, so that they
    may come after the command name without hiding a value given before it."""
    db_default = os.environ.get(DB_ENV, DEFAULT_DB) if default is None else default
    parser.add_argument(
        "--db", default=db_default, help=f"SQLite file or database URL (env {DB_ENV}; default {DEFAULT_DB})"
    )
    user_default = os.environ.get(USER_ENV, SERVICE_USER) if default is None else default
    parser.add_argument(
        "--service-user",
        default=user_default,
        help=f"the user the service runs as: only it may create a SQLite file (env {USER_ENV};"
        f" default {SERVICE_USER})",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if default is None else default,
        help="log at DEBUG level",
    )


class _Commands:
    """``add_subparsers`` whose every command also takes the global options."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._actions = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
        self._common = argparse.ArgumentParser(add_help=False)
        _global_options(self._common, argparse.SUPPRESS)

    def add_parser(self, name: str, help: str) -> argparse.ArgumentParser:
        return self._actions.add_parser(name, help=help, parents=[self._common])


def _plain(text: str) -> str:
    """RST from a docstring as ``--help`` shows it: without the double backticks."""
    return text.replace("``", "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autopyfactory-monitor", description=_plain(__doc__.split("\n")[0]))
    _global_options(parser, None)
    commands = _Commands(parser)

    serve = commands.add_parser("serve", help="run the webservice (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    serve.add_argument("--port", type=int, default=8080, help="port [8080]")
    serve.add_argument(
        "--expire-every",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="run expiry inside the service every SECONDS (default: off: `expire` runs from a systemd timer)",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        help="proxies whose X-Forwarded-For is trusted for the client address [127.0.0.1]",
    )
    serve.add_argument("--root-path", default="", help="URL prefix when served below a path by a proxy")
    serve.add_argument(
        "--messages-kept", type=_positive_int, default=50, help="cycle messages kept per label [50]"
    )
    serve.add_argument(
        "--max-body-bytes",
        type=_positive_int,
        default=Limits().max_body_bytes,
        help="bulk writes (labels, pilots, messages, batch reports) larger than this get 413 [4 MiB]",
    )
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="worker processes [1]; more than one needs PostgreSQL (and expiry from its systemd timer)",
    )
    serve.add_argument(
        "--bulk-writers",
        type=_positive_int,
        default=MonitorSettings.bulk_writers,
        help="PostgreSQL: bulk creates written at once per worker, each in its own transaction [3]",
    )
    serve.add_argument(
        "--no-group-commit",
        dest="group_commit",
        action="store_false",
        help="one transaction per pilot report and bulk create (the slower path before group commit)",
    )
    _expiry_options(serve)

    add = commands.add_parser("add-factory", help="register a factory and print its token (shown once)")
    add.add_argument("name", help="factory id, as in the factory's config (1-64 of A-Z a-z 0-9 _ . -)")
    add.add_argument("--new-token", action="store_true", help="replace the token of an existing factory")
    add.add_argument(
        "--require-pilot-keys",
        action="store_true",
        help="refuse this factory's pilot reports without their pilot's key (see the pilot-keys command)",
    )

    keys = commands.add_parser(
        "pilot-keys",
        help="show, or set, whether a factory's pilot reports must carry their pilot's key (APFMON_KEY)",
    )
    keys.add_argument("name", help="factory id")
    choice = keys.add_mutually_exclusive_group()
    choice.add_argument(
        "--require",
        dest="required",
        action="store_const",
        const=True,
        help="refuse reports without the pilot's key, or with a wrong one, and API v1 GET reports",
    )
    choice.add_argument(
        "--optional",
        dest="required",
        action="store_const",
        const=False,
        help="accept reports without a key (the default: the production ATLAS wrapper sends none)",
    )

    expire = commands.add_parser("expire", help="apply the expiry rules once (run by its systemd timer)")
    _expiry_options(expire)

    clean = commands.add_parser(
        "clean", help="delete final (DONE/FAULT/REMOVED) jobs older than N days, in batches"
    )
    clean.add_argument("--days", type=_days, required=True, help="age of the last change, in days")
    clean.add_argument("--batch", type=_positive_int, default=1000, help="jobs per transaction [1000]")

    commands.add_parser("migrate", help="create or upgrade the database schema")
    return parser


def _expiry_options(parser: argparse.ArgumentParser) -> None:
    default = ExpiryRules()
    hours = default.created / timedelta(hours=1)
    parser.add_argument(
        "--created-hours", type=_positive_float, default=hours, help=f"flag CREATED after [{hours:g}]"
    )
    hours = default.running / timedelta(hours=1)
    parser.add_argument(
        "--running-hours", type=_positive_float, default=hours, help=f"flag RUNNING after [{hours:g}]"
    )
    minutes = default.exiting / timedelta(minutes=1)
    parser.add_argument(
        "--exiting-minutes",
        type=_positive_float,
        default=minutes,
        help=f"EXITING becomes DONE after [{minutes:g}]",
    )
    hours = default.flagged / timedelta(hours=1)
    parser.add_argument(
        "--flagged-hours",
        type=_positive_float,
        default=hours,
        help=f"flagged becomes FAULT after [{hours:g}]",
    )


def expiry_rules(args: argparse.Namespace) -> ExpiryRules:
    return ExpiryRules(
        created=timedelta(hours=args.created_hours),
        running=timedelta(hours=args.running_hours),
        exiting=timedelta(minutes=args.exiting_minutes),
        flagged=timedelta(hours=args.flagged_hours),
    )


def main(argv: Sequence[str] | None = None, *, clock: Clock = utc_now) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=LOG_FORMAT,
    )
    if not args.verbose:  # its "Context impl SQLiteImpl." on every command is noise
        logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = MonitorSettings(db_url=database_url(args.db), clock=clock)
    try:
        refusal = creation_refused(settings.db_url, args.service_user, os.geteuid())
        if refusal:
            print(f"autopyfactory-monitor: {refusal}", file=sys.stderr)
            return 1
        return _run(args, settings)
    except DatabaseUrlError as exc:
        print(f"autopyfactory-monitor: {exc}", file=sys.stderr)
        return 2
    except AlreadyExists as exc:
        print(f"autopyfactory-monitor: {exc}", file=sys.stderr)
        return 1
    except (OperationalError, ImportError) as exc:
        print(f"autopyfactory-monitor: cannot use the database {args.db!r}: {exc}", file=sys.stderr)
        return 1


def creation_refused(db_url: str, service_user: str, euid: int) -> str:
    """Why this user must not create the SQLite file of ``db_url``; "" when it may (or it exists)."""
    if not db_url.startswith("sqlite:///") or not service_user:
        return ""
    path = Path(db_url.removeprefix("sqlite:///").split("?", 1)[0])
    if path.exists():
        return ""
    try:
        owner = pwd.getpwnam(service_user)
    except KeyError:  # no service user on this host (a development install): nothing to protect
        return ""
    if owner.pw_uid == euid:
        return ""
    return (
        f"{path} does not exist, and creating it as {_user_name(euid)} would leave a database the"
        f" service user {service_user!r} cannot write; create it as that user:"
        f" runuser -u {service_user} -- autopyfactory-monitor --db {path} migrate"
    )


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _run(args: argparse.Namespace, settings: MonitorSettings) -> int:
    if args.command == "serve":
        return _serve(args, serve_settings(args, settings))
    if args.command == "add-factory":
        return _add_factory(args, settings)
    db = Database.open(settings.db_url)
    try:
        revision = upgrade(db.engines.write)
        if args.command == "migrate":
            print(f"schema at revision {revision}")
        elif args.command == "pilot-keys":
            return _pilot_keys(args, db, settings)
        elif args.command == "expire":
            print(Expiry(db, settings.clock, expiry_rules(args)).run().line())
        elif args.command == "clean":
            deleted = Expiry(db, settings.clock, settings.expiry).clean(args.days, args.batch)
            print(f"clean: deleted {deleted} DONE/FAULT/REMOVED jobs older than {args.days:g} days")
    finally:
        db.close()
    return 0


def _add_factory(args: argparse.Namespace, settings: MonitorSettings) -> int:
    if not re.fullmatch(FID_PATTERN.strip("^$"), args.name):
        print(
            f"autopyfactory-monitor: invalid factory id {args.name!r} (1-64 of A-Z a-z 0-9 _ . -)",
            file=sys.stderr,
        )
        return 2
    db = Database.open(settings.db_url)
    try:
        upgrade(db.engines.write)
        store = Store(db, settings.clock)
        token = store.add_factory(args.name, new_token_if_exists=args.new_token)
        if args.require_pilot_keys:
            store.set_pilot_keys(args.name, required=True)
    finally:
        db.close()
    print(token)
    print(
        f"token for factory {args.name!r} (shown once; only its digest is stored): put it in that"
        f" factory's factory.conf as [Factory] monitorToken = <token> (with factoryId = {args.name})",
        file=sys.stderr,
    )
    return 0


def _pilot_keys(args: argparse.Namespace, db: Database, settings: MonitorSettings) -> int:
    """``pilot-keys NAME [--require|--optional]``: set the factory's setting if asked, then say
    where it stands (the setting, the reports refused so far, the active pilots without a key)."""
    try:
        if args.required is not None:
            Store(db, settings.clock).set_pilot_keys(args.name, args.required)
        detail = Queries(db, settings).factory(args.name, hours=24)
    except NotFound as exc:
        print(f"autopyfactory-monitor: {exc}", file=sys.stderr)
        return 1
    refusals = detail.key_refusals
    last = f" (last {refusals.last_at:%Y-%m-%d %H:%M:%S} UTC)" if refusals.last_at else ""
    print(
        f"factory {detail.name}: pilot keys {detail.pilot_keys}; refused reports: {refusals.unsigned}"
        f" without a key, {refusals.wrong_key} with a wrong key{last}; active pilots announced"
        f" without a key: {refusals.active_without_key}"
    )
    if detail.pilot_keys == "required" and refusals.active_without_key:
        print(
            f"warning: the reports of those {refusals.active_without_key} pilots are now refused",
            file=sys.stderr,
        )
    return 0


def serve_settings(args: argparse.Namespace, settings: MonitorSettings) -> MonitorSettings:
    return replace(
        settings,
        expiry=expiry_rules(args),
        expire_every=args.expire_every,
        messages_kept=args.messages_kept,
        limits=Limits(max_body_bytes=args.max_body_bytes),
        group_commit=args.group_commit,
        bulk_writers=args.bulk_writers,
    )


def _serve(args: argparse.Namespace, settings: MonitorSettings) -> int:
    import uvicorn

    from autopyfactory.monitor_service.app import create_app

    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "proxy_headers": True,
        "forwarded_allow_ips": args.forwarded_allow_ips,
        "root_path": args.root_path,
        "log_level": "debug" if args.verbose else "info",
        "timeout_graceful_shutdown": GRACEFUL_SECONDS,
    }
    if args.workers == 1:
        uvicorn.run(create_app(settings), **options)
        return 0
    problem = _workers_problem(args, settings)
    if problem:
        print(f"autopyfactory-monitor: --workers {args.workers}: {problem}", file=sys.stderr)
        return 2
    db = Database.open(settings.db_url)
    try:
        upgrade(db.engines.write)  # once, here, not in every worker at the same time
    finally:
        db.close()
    os.environ[SERVE_ENV] = json.dumps(args.argv)
    uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=args.workers, **options)
    return 0


def _workers_problem(args: argparse.Namespace, settings: MonitorSettings) -> str:
    if not settings.db_url.startswith("postgresql"):
        return "several workers need PostgreSQL (SQLite has one writer: serve it with one worker)"
    if args.expire_every:
        return (
            "--expire-every would run in every worker: run `autopyfactory-monitor expire` from its systemd"
            " timer (autopyfactory-monitor-expire.timer) instead"
        )
    return ""


def app_from_environment() -> FastAPI:
    """The app of one worker process of ``serve --workers N``: the parent's arguments come in
    :data:`SERVE_ENV`; the parent has upgraded the schema already."""
    from autopyfactory.monitor_service.app import create_app

    args = build_parser().parse_args(json.loads(os.environ[SERVE_ENV]))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format=LOG_FORMAT)
    settings = serve_settings(args, MonitorSettings(db_url=database_url(args.db)))
    return create_app(replace(settings, migrate=False))
