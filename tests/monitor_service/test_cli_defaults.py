"""``autopyfactory-monitor`` as an operator types it: ``--db`` before or after the
command, no Alembic chatter, ``add-factory`` naming ``monitorToken``, and no SQLite file created
by a user other than the service user."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def monitor(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    environment.pop("AUTOPYFACTORY_MONITOR_DB", None)
    return subprocess.run(
        [sys.executable, "-m", "autopyfactory.monitor_service", *map(str, args)],
        capture_output=True, text=True, env=environment, timeout=60, check=False,
    )  # fmt: skip


def me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def test_db_after_the_command(tmp_path: Path) -> None:
    db = tmp_path / "monitor.sqlite"
    added = monitor("add-factory", "f1", "--db", db, "--service-user", me())
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("apfm_")
    assert db.exists()
    expired = monitor("expire", "--db", db, "--created-hours", "2")
    assert expired.returncode == 0, expired.stderr
    assert expired.stdout.startswith("expiry: done=0")
    again = monitor("--db", tmp_path / "other.sqlite", "add-factory", "f1", "--db", db)
    assert again.returncode == 1
    assert "exists; use --new-token" in again.stderr  # the later --db wins
    assert not (tmp_path / "other.sqlite").exists()


def test_no_alembic_lines_unless_verbose(tmp_path: Path) -> None:
    quiet = monitor("--db", tmp_path / "a.sqlite", "migrate")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.startswith("schema at revision")
    assert quiet.stderr == ""
    verbose = monitor("migrate", "-v", "--db", tmp_path / "b.sqlite")
    assert "alembic" in verbose.stderr


def test_add_factory_names_the_setting(tmp_path: Path) -> None:
    added = monitor("--db", tmp_path / "m.sqlite", "add-factory", "cern-factory-1")
    assert added.returncode == 0, added.stderr
    assert "[Factory] monitorToken = <token>" in added.stderr
    assert "factoryId = cern-factory-1" in added.stderr


def test_refuses_to_create_a_database_the_service_user_cannot_write(tmp_path: Path) -> None:
    other = "nobody" if os.geteuid() == 0 else "root"
    db = tmp_path / "m.sqlite"
    refused = monitor("add-factory", "f1", "--db", db, env={"AUTOPYFACTORY_USER": other})
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert (
        f"{db} does not exist, and creating it as {me()} would leave a database the service user"
        in refused.stderr
    )
    assert f"runuser -u {other} -- autopyfactory-monitor --db {db} migrate" in refused.stderr
    assert not db.exists()
    assert monitor("--db", db, "--service-user", me(), "migrate").returncode == 0
    assert (
        monitor("add-factory", "f1", "--db", db, env={"AUTOPYFACTORY_USER": other}).returncode == 0
    )  # it exists
