"""The schema is made by the service's own migrations, matches the models, and the CLI works as
an installed command would run it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from autopyfactory.monitor_service.cli import main
from autopyfactory.monitor_service.db import Database
from autopyfactory.monitor_service.migrations import current_revision, head_revision, upgrade
from autopyfactory.monitor_service.models import Base
from autopyfactory.monitor_service.settings import database_url
from tests.support.monitor import Monitor
from tests.support.waiting import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_migrations_match_the_models(monitor: Monitor) -> None:
    db = Database.open(monitor.settings.db_url)
    try:
        assert current_revision(db.engines.read) == head_revision()
        with db.engines.write.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        assert upgrade(db.engines.write) == head_revision()  # again: nothing to do
    finally:
        db.close()


def test_cli_migrate_and_add_factory(monitor: Monitor, capsys: object) -> None:
    db = ["--db", monitor.settings.db_url]
    assert main([*db, "migrate"]) == 0
    assert main([*db, "add-factory", "cli-factory"]) == 0
    assert main([*db, "add-factory", "cli-factory"]) == 1  # exists
    assert main([*db, "add-factory", "cli-factory", "--new-token"]) == 0
    assert main([*db, "add-factory", "bad name"]) == 2


def test_installed_command(tmp_path: Path) -> None:
    """``python -m autopyfactory.monitor_service`` (= the console script) on a new SQLite file."""
    path = tmp_path / "sub" / "monitor.sqlite"
    path.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AUTOPYFACTORY_MONITOR_DB": str(path)}
    command = [sys.executable, "-m", "autopyfactory.monitor_service"]
    done = subprocess.run(
        [*command, "add-factory", "f1"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("apfm_")
    assert "shown once" in done.stderr
    done = subprocess.run([*command, "expire"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("expiry: done=0")
    done = subprocess.run(
        [*command, "--db", "mysql://x/y", "migrate"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 2
    assert "unsupported database" in done.stderr


def test_database_urls() -> None:
    assert database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("/var/lib/x.sqlite") == "sqlite:////var/lib/x.sqlite"


def test_cli_reports_a_database_it_cannot_open(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", str(tmp_path / "missing" / "x.sqlite"), "migrate"]) == 1
    assert "cannot use the database" in capsys.readouterr().err


def test_serve(tmp_path: Path) -> None:
    """``serve`` as an operator starts it: the schema is created and the API answers."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "autopyfactory.monitor_service", "--db", str(tmp_path / "m.sqlite")]
    server = subprocess.Popen(
        [*command, "serve", "--port", str(port), "--expire-every", "60", "--messages-kept", "5"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except requests.ConnectionError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "serve did not answer"
                time.sleep(0.1)
        assert answer.json()["schema_revision"] == head_revision()
    finally:
        server.terminate()
        server.wait(20)
