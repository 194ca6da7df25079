"""Test support for the monitor webservice: a controllable clock, uvicorn in a thread on
127.0.0.1, and throw-away PostgreSQL databases."""

from __future__ import annotations

import getpass
import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import uvicorn
from fastapi import FastAPI

PG_HOST, PG_PORT, PG_ADMIN_DB = "127.0.0.1", 5432, "test"
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    """The service's clock in tests: starts at a fixed time and moves only when told to."""

    def __init__(self, now: datetime = START) -> None:
        self._now = now
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 (a free port, chosen by the kernel) in a thread.

    uvicorn binds the port itself: a socket handed over with ``sockets=[...]`` is served without
    TCP_NODELAY, which costs every request a 40 ms delayed-ACK wait.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="uvicorn", daemon=True)
        self.port = 0
        self.url = ""

    def start(self, timeout: float = 20.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(20)


class PostgresAdmin:
    """Creates uniquely named databases on the local server and drops them all at the end."""

    def __init__(self, connection: object, user: str) -> None:
        self._connection = connection
        self.user = user
        self._created: list[str] = []

    def create_database(self) -> str:
        name = f"apfm_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        self._connection.execute(f'CREATE DATABASE "{name}"')  # type: ignore[attr-defined]
        self._created.append(name)
        return f"postgresql+psycopg://{self.user}@{PG_HOST}:{PG_PORT}/{name}"

    def drop_all(self) -> None:
        for name in self._created:
            self._connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[attr-defined]
        self._connection.close()  # type: ignore[attr-defined]


def connect_postgres_admin() -> PostgresAdmin | str:
    """Connect to the ``test`` database as postgres or as the current user (trust auth), or say
    why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    problems = []
    for user in dict.fromkeys(["postgres", getpass.getuser()]):
        try:
            connection = psycopg.connect(
                host=PG_HOST, port=PG_PORT, dbname=PG_ADMIN_DB, user=user, connect_timeout=3, autocommit=True
            )
        except psycopg.Error as exc:
            problems.append(f"{user}: {str(exc).strip().splitlines()[0]}")
            continue
        return PostgresAdmin(connection, user)
    return f"no PostgreSQL answers at {PG_HOST}:{PG_PORT}/{PG_ADMIN_DB} ({'; '.join(problems)})"
