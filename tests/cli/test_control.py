"""A control file with a wrongly typed field, met by the real ``autopyfactory run``, ``queue list``,
``status`` and ``queue disable`` (against the HTCondor emulator)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.e2e import Stand, per_label, run, write_config

BAD = [
    ({"name": "NDGF-T1", "reason": "CE upgrade", "since": 1.0e9, "until": "tomorrow"}, "disabled[0].until"),
    ({"name": ["NDGF-T1"], "reason": "", "since": 1.0e9}, "disabled[0].name"),
]


def apf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autopyfactory", *args], capture_output=True, text=True, timeout=60
    )


def write_control(state_dir: Path, disabled: dict[str, object]) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "control.json"
    path.write_text(json.dumps({"format": 1, "disabled": [disabled], "removals": []}))
    return path


@pytest.mark.parametrize(("entry", "field"), BAD)
def test_a_wrongly_typed_field_holds_every_queue_back_and_is_shown(
    tmp_path: Path, stand: Stand, condor, entry: dict[str, object], field: str
) -> None:
    stand.stats = {"NDGF-T1": {"activated": 50}, "TEST-SITE": {"activated": 5}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]\n[TEST-SITE]\n")
    path = write_control(tmp_path / "state", entry)

    cycle = run(conf, condor, "--once")
    assert condor.jobs() == [], cycle.stderr
    assert "Traceback" not in cycle.stderr
    assert f"control file unreadable, every queue held back: {path}: {field}" in cycle.stderr

    listed = apf("queue", "list", "-c", str(conf))
    assert listed.returncode == 1
    assert "Traceback" not in listed.stderr
    assert listed.stderr.startswith(f"autopyfactory queue list: {path}: {field}: ")
    assert "holds every queue back until the file is fixed or removed" in listed.stderr
    status = apf("status", "-c", str(conf))
    assert "Traceback" not in status.stderr + status.stdout
    assert f"{path}: {field}" in status.stdout
    changed = apf("queue", "disable", "TEST-SITE", "-c", str(conf))
    assert (changed.returncode, "Traceback" in changed.stderr) == (1, False)
    assert f"{path}: {field}" in changed.stderr

    path.unlink()  # the operator removes it: the factory submits again
    run(conf, condor, "--once")
    assert per_label(condor.jobs()).total() > 0
