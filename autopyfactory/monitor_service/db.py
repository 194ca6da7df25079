"""Engines for the two supported databases.

SQLite (the embedded default) gets WAL mode, foreign keys, a busy timeout, and two engines: write
transactions start with ``BEGIN IMMEDIATE`` so that concurrent writers queue on the busy timeout
instead of failing with "database is locked" when a deferred transaction tries to upgrade its
lock; reads keep plain ``BEGIN`` and run beside the writer. PostgreSQL uses one engine for both.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_SECONDS = 30.0


class DatabaseUrlError(ValueError):
    """The database URL names a backend the monitor does not support, or cannot be parsed."""


@dataclass(frozen=True)
class Engines:
    read: Engine
    write: Engine

    def dispose(self) -> None:
        self.read.dispose()
        if self.write is not self.read:
            self.write.dispose()


@dataclass(frozen=True)
class Database:
    """The engines and their session makers; ``write`` sessions are the only ones that change data."""

    engines: Engines
    read: sessionmaker[Session]
    write: sessionmaker[Session]

    @classmethod
    def open(cls, url: str, *, sqlite_sync: str = "NORMAL") -> Database:
        """``sqlite_sync``: SQLite's ``synchronous`` for writes (FULL: every commit reaches the disk)."""
        engines = make_engines(url, sqlite_sync)
        return cls(
            engines,
            sessionmaker(engines.read, expire_on_commit=False),
            sessionmaker(engines.write, expire_on_commit=False),
        )

    @property
    def dialect(self) -> str:
        return self.engines.write.dialect.name

    def close(self) -> None:
        self.engines.dispose()


def make_engines(url: str, sqlite_sync: str = "NORMAL") -> Engines:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseUrlError(f"cannot parse database URL {url!r}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if sqlite_sync not in ("NORMAL", "FULL"):
            raise ValueError(f"sqlite_sync must be NORMAL or FULL, not {sqlite_sync!r}")
        return Engines(
            read=_sqlite_engine(url, "BEGIN", "NORMAL"),
            write=_sqlite_engine(url, "BEGIN IMMEDIATE", sqlite_sync),
        )
    if backend == "postgresql":
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
        return Engines(read=engine, write=engine)
    raise DatabaseUrlError(f"unsupported database {backend!r}: use a SQLite file or postgresql+psycopg://")


def _sqlite_engine(url: str, begin: str, sync: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself (the documented pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={sync}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)

    return engine
