"""Typed settings of the monitoring webservice, built once (by the CLI or a test) and passed in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime. Injected so that tests control time."""


def utc_now() -> datetime:
    """The real clock; the only place the service reads the system time."""
    return datetime.now(UTC)


DEFAULT_DB = "/var/lib/autopyfactory/monitor.sqlite"


def database_url(value: str) -> str:
    """``--db`` accepts a SQLAlchemy URL or a plain file path (the embedded SQLite default)."""
    for bare in ("postgresql://", "postgres://"):
        if value.startswith(bare):  # SQLAlchemy would pick psycopg2, which the extra does not install
            return "postgresql+psycopg://" + value[len(bare) :]
    if "://" in value:
        return value
    return "sqlite:///" + str(Path(value).expanduser().resolve())


@dataclass(frozen=True)
class ExpiryRules:
    """apfmon's server-side timeouts (CONTRACTS §5)."""

    created: timedelta = timedelta(hours=6)  # CREATED longer than this: flagged
    running: timedelta = timedelta(hours=72)  # RUNNING longer than this: flagged
    exiting: timedelta = timedelta(minutes=30)  # EXITING longer than this: DONE
    flagged: timedelta = timedelta(hours=24)  # flagged longer than this and not final: FAULT
    batch: int = 1000  # jobs changed per transaction


@dataclass(frozen=True)
class Limits:
    """Body size limits per kind of endpoint: a larger body gets 413 before it is read whole or
    parsed (item counts are fixed in :mod:`schemas`, as they are part of the API schema)."""

    max_body_bytes: int = 4 * 1024 * 1024  # bulk writes of a factory (labels, jobs, messages, reports)
    # A pilot report is a few hundred bytes; 100 PanDA ids of 20 digits, percent-encoded, about 2.3 KiB.
    max_report_bytes: int = 8 * 1024
    # Everything else: a label's message (2,048 characters, percent-encoded UTF-8), a heartbeat, reads.
    max_other_bytes: int = 64 * 1024


@dataclass(frozen=True)
class MonitorSettings:
    db_url: str
    clock: Clock = utc_now
    expiry: ExpiryRules = field(default_factory=ExpiryRules)
    limits: Limits = field(default_factory=Limits)
    expire_every: float | None = None  # seconds between in-process expiry runs; None: off (the expire timer)
    messages_kept: int = 50  # cycle messages kept per label
    heartbeat_ok: timedelta = timedelta(minutes=20)  # factory status ok below this age
    heartbeat_warning: timedelta = timedelta(hours=1)  # warning below this age, else error
    migrate: bool = True  # upgrade the schema when the app starts
    group_commit: bool = True  # pilot reports and bulk creates share transactions (group_commit.py)
    max_batch: int = 500  # writes in one group-commit transaction
    # PostgreSQL: bulk creates run beside the group-commit writer, each in its own transaction,
    # this many at once per worker process (the database inserts them in parallel)
    bulk_writers: int = 3
