"""Clear errors instead of tracebacks: ``status`` on a malformed state file and
``autopyfactory-monitor clean --days 1e9``, run as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.factory_conf import write_factory_conf
from tests.support.paths import REPO

GOOD_LABEL = {
    "pq": "CERN", "ce": "ce503.cern.ch:9619", "status": "online", "activated": 1, "share": 1,
    "idle": 0, "running": 0, "held": 0, "decision": 1, "reason": "r", "submitted": 1, "error": "",
    "last_submit": 1.0e9,
}  # fmt: skip
GOOD = {"format": 1, "factory": "f", "version": "1", "cycle": 3, "time": 1.0e9, "duration": 1, "labels": {}}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def status_conf(tmp_path: Path) -> Path:
    """A factory.conf for ``status``: factory ``f`` with its state in ``tmp_path/state``."""
    own = {"factoryId": "f", "pandaserver": "http://127.0.0.1:9", "schedconfig": f"{tmp_path}/cric.json"}
    return write_factory_conf(tmp_path, factory={**own, "stateDir": f"{tmp_path}/state"})


@pytest.mark.parametrize(
    "record",
    [
        {k: v for k, v in GOOD.items() if k != "time"},
        {**GOOD, "time": "yesterday"},
        {**GOOD, "time": 1e300},
        {**GOOD, "labels": {"L": 5}},
        {**GOOD, "labels": {"L": {k: v for k, v in GOOD_LABEL.items() if k != "pq"}}},
        {**GOOD, "labels": {"L": {**GOOD_LABEL, "last_submit": "never"}}},
        {**GOOD, "problems": 7},
    ],
)
def test_status_on_a_malformed_state_file_is_a_clear_error(tmp_path: Path, record: object) -> None:
    conf = status_conf(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "status.json").write_text(json.dumps(record))
    result = run("autopyfactory", "status", "-c", str(conf))
    assert "Traceback" not in result.stderr
    assert result.returncode == 1
    assert "status.json: malformed state file" in result.stderr


def test_status_on_a_good_state_file_still_works(tmp_path: Path) -> None:
    conf = status_conf(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "status.json").write_text(json.dumps({**GOOD, "labels": {"L": GOOD_LABEL}}))
    result = run("autopyfactory", "status", "-c", str(conf))
    assert result.returncode == 0, result.stderr
    assert "factory f" in result.stdout
    assert "\nL " in result.stdout


def test_status_reads_a_state_file_of_the_previous_format(tmp_path: Path) -> None:
    """A daemon upgraded under a running ``status --check``: its last file has problems without
    their edge; the edge that answered badly is still reported, its problem only once rewritten."""
    conf = status_conf(tmp_path)
    (tmp_path / "state").mkdir()
    edges = {"panda": False, "batch": True, "control": True}
    old = {**GOOD, "time": time.time(), "labels": {"L": {**GOOD_LABEL, "activated": None}},
           "problems": ["PanDA: HTTP 500"], "edges": edges}  # fmt: skip
    (tmp_path / "state" / "status.json").write_text(json.dumps(old))
    result = run("autopyfactory", "status", "-c", str(conf), "--check")
    assert (result.returncode, result.stdout) == (1, "WARNING: PanDA answered badly in the last cycle\n")
    table = run("autopyfactory", "status", "-c", str(conf))
    assert table.returncode == 0
    assert "problem: PanDA: HTTP 500" in table.stdout


@pytest.mark.parametrize("days", ["1e9", "1e300", "3000000"])
def test_monitor_clean_with_an_absurd_age_is_a_clear_error(tmp_path: Path, days: str) -> None:
    db = f"sqlite:///{tmp_path}/monitor.sqlite"
    result = run("autopyfactory.monitor_service", "--db", db, "clean", "--days", days)
    assert "Traceback" not in result.stderr
    assert result.returncode == 2
    assert "--days" in result.stderr
    assert "at most 36500" in result.stderr
