"""Fixtures for the monitor webservice: a real uvicorn on 127.0.0.1, per test module and per
database backend (a SQLite file, and a fresh database on the PostgreSQL at 127.0.0.1:5432), a
controllable clock, and registered factories with their tokens."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import requests

from autopyfactory.monitor_service.app import create_app
from autopyfactory.monitor_service.deps import Services
from autopyfactory.monitor_service.settings import MonitorSettings
from tests.monitor_service.support import (
    FakeClock,
    LiveServer,
    PostgresAdmin,
    connect_postgres_admin,
)

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresAdmin | str]:
    """An admin connection to the local PostgreSQL, or the reason why there is none."""
    admin = connect_postgres_admin()
    if isinstance(admin, str):
        yield admin
        return
    try:
        yield admin
    finally:
        admin.drop_all()


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres: PostgresAdmin | str
) -> str:
    """A fresh, empty database for one test module."""
    if request.param == "sqlite":
        return "sqlite:///" + str(tmp_path_factory.mktemp("monitor") / "monitor.sqlite")
    if isinstance(postgres, str):
        pytest.skip(f"PostgreSQL backend not tested: {postgres}")
    try:
        return postgres.create_database()
    except Exception as exc:  # e.g. no CREATEDB privilege
        pytest.skip(f"PostgreSQL backend not tested: cannot create a database: {exc}")


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
    clock = FakeClock()
    config = MonitorSettings(db_url=db_url, clock=clock, **settings)  # type: ignore[arg-type]
    server = LiveServer(create_app(config))
    server.start()
    return Monitor(server.url, clock, config, server)


@pytest.fixture(scope="module")
def monitor(db_url: str) -> Iterator[Monitor]:
    service = start_monitor(db_url)
    try:
        yield service
    finally:
        service.server.stop()


_names = itertools.count()


@dataclass
class FactoryClient:
    """A registered factory talking to the monitor with its token (JSON, like monitor_client)."""

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
    name = f"f{next(_names)}-{uuid.uuid4().hex[:8]}"
    token = monitor.services.store.add_factory(name)
    return FactoryClient(name, token, monitor, session)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # never a proxy: 127.0.0.1 only
        yield session


@pytest.fixture
def factory(monitor: Monitor, http: requests.Session) -> FactoryClient:
    """A fresh factory (unique name, own token) on the module's monitor."""
    return new_factory(monitor, http)


@pytest.fixture
def make_factory(monitor: Monitor, http: requests.Session) -> Callable[[], FactoryClient]:
    return lambda: new_factory(monitor, http)
