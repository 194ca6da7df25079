"""Fixtures for the monitor webservice: a real uvicorn on 127.0.0.1, per test module and per
database backend (a SQLite file, and a fresh database on the PostgreSQL at 127.0.0.1:5432), a
controllable clock, and registered factories with their tokens (tests/support/monitor.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests

from tests.support.monitor import (
    FactoryClient,
    Monitor,
    PostgresAdmin,
    connect_postgres_admin,
    local_session,
    new_factory,
    running_monitor,
    sqlite_url,
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
        return sqlite_url(tmp_path_factory.mktemp("monitor"))
    if isinstance(postgres, str):
        pytest.skip(f"PostgreSQL backend not tested: {postgres}")
    import psycopg  # installed: there is an admin connection

    try:
        return postgres.create_database()
    except psycopg.Error as exc:  # e.g. no CREATEDB privilege
        pytest.skip(f"PostgreSQL backend not tested: cannot create a database: {exc}")


@pytest.fixture(scope="module")
def monitor(db_url: str) -> Iterator[Monitor]:
    with running_monitor(db_url) as service:
        yield service


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with local_session() as session:
        yield session


@pytest.fixture
def factory(monitor: Monitor, http: requests.Session) -> FactoryClient:
    """A fresh factory (unique name, own token) on the module's monitor."""
    return new_factory(monitor, http)


@pytest.fixture
def make_factory(monitor: Monitor, http: requests.Session) -> Callable[[], FactoryClient]:
    return lambda: new_factory(monitor, http)
