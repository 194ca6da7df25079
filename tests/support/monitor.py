"""The monitor webservice for tests: a controllable clock, the real app served by uvicorn in a
thread on 127.0.0.1 (:func:`start_monitor`), throw-away PostgreSQL databases, and a registered
factory talking to it with its token (:class:`FactoryClient`, JSON as the factory's client sends).

The fixtures over these (one service per test module and database backend, a fresh factory per
test) are in tests/monitor_service/conftest.py; tests elsewhere start their own service."""

from __future__ import annotations

import getpass
import itertools
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
import uvicorn
from fastapi import FastAPI

from autopyfactory.monitor_service.app import create_app
from autopyfactory.monitor_service.deps import Services
from autopyfactory.monitor_service.settings import MonitorSettings

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


@dataclass
class Monitor:
    """A running service: its API root, its clock and its settings (for direct store access)."""

    url: str  # the server root, e.g. http://127.0.0.1:PORT
    clock: FakeClock
    settings: MonitorSettings
    server: LiveServer

    @property
    def api(self) -> str:
        return self.url + "/api"

    @property
    def services(self) -> Services:
        found = self.server.app.state.services
        assert isinstance(found, Services)
        return found


def start_monitor(db_url: str, **settings: object) -> Monitor:
    """The real service on ``db_url`` with a :class:`FakeClock`; the caller stops ``.server``."""
    clock = FakeClock()
    config = MonitorSettings(db_url=db_url, clock=clock, **settings)  # type: ignore[arg-type]
    server = LiveServer(create_app(config))
    server.start()
    return Monitor(server.url, clock, config, server)


@contextmanager
def running_monitor(db_url: str, **settings: object) -> Iterator[Monitor]:
    """:func:`start_monitor`, stopped when the block ends."""
    monitor = start_monitor(db_url, **settings)
    try:
        yield monitor
    finally:
        monitor.server.stop()


def sqlite_url(directory: Path) -> str:
    """A SQLite database file in ``directory`` (created by the service's first start)."""
    return f"sqlite:///{directory / 'monitor.sqlite'}"


def monitor_cli(db_url: str, *args: str) -> list[str]:
    """The argv of ``autopyfactory-monitor --db db_url *args`` (run in a process of its own)."""
    return [sys.executable, "-m", "autopyfactory.monitor_service", "--db", db_url, *args]


def up(url: str) -> bool:
    """True if the service at ``url`` (its root) answers its health check."""
    try:
        return requests.get(url + "/api/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def local_session() -> requests.Session:
    """A session that never goes through a proxy: the tests talk to 127.0.0.1 only."""
    session = requests.Session()
    session.trust_env = False
    return session


_names = itertools.count()


@dataclass
class FactoryClient:
    """A registered factory talking to the monitor with its token (JSON, like the factory's client)."""

    name: str
    token: str
    monitor: Monitor
    session: requests.Session

    def call(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> requests.Response:
        """A JSON request with this factory's token, unless ``headers`` are given instead."""
        if headers is None:
            headers = {"Authorization": f"Bearer {self.token}"}
        return self.session.request(method, self.monitor.api + path, json=body, headers=headers, timeout=10)

    def heartbeat(self) -> requests.Response:
        body = {"url": f"http://{self.name}.example.org/logs", "email": "ops@example.org", "version": "3.0.0"}
        return self.call("PUT", f"/factories/{self.name}", body)

    def labels(self, *names: str, pq: str = "CERN-PROD_UCORE", resource: str = "") -> requests.Response:
        records = [
            {
                "name": name,
                "factory": self.name,
                "batchqueue": pq,
                "wmsqueue": pq,
                "resource": resource or "ce503.cern.ch:9619",
                "localqueue": "condor",
            }
            for name in names
        ]
        return self.call("PUT", "/labels", records)

    def create(self, label: str, *cids: str) -> requests.Response:
        return self.call("PUT", "/jobs", [{"cid": cid, "label": label, "factory": self.name} for cid in cids])

    def message(self, label: str, text: str) -> requests.Response:
        return self.call("POST", f"/labels/{self.name}:{label}", {"status": text})

    def pilot(self, cid: str, **form: str) -> requests.Response:
        """A wrapper's report: form data, no token."""
        return self.session.post(f"{self.monitor.api}/jobs/{self.name}:{cid}", data=form, timeout=10)

    def job(self, cid: str) -> dict[str, object]:
        answer = self.session.get(f"{self.monitor.api}/jobs/{self.name}:{cid}", timeout=10)
        assert answer.status_code == 200, answer.text
        result: dict[str, object] = answer.json()
        return result


def new_factory(monitor: Monitor, session: requests.Session) -> FactoryClient:
    """A factory with a unique name and its own token, registered in ``monitor``'s store."""
    name = f"f{next(_names)}-{uuid.uuid4().hex[:8]}"
    token = monitor.services.store.add_factory(name)
    return FactoryClient(name, token, monitor, session)
