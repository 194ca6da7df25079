"""What the service adds to each cycle's state (the configuration in force, a rejected reload,
the monitor refusing the factory): written with the cycle, read back, checked field by field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autopyfactory.batch.interface import SubmitOutcome
from autopyfactory.cycle.report import CycleReport, LabelResult
from autopyfactory.domain.model import Census, Supply
from autopyfactory.domain.planning import plan
from autopyfactory.domain.sharing import FactoryCaps
from autopyfactory.observers.state import (
    STATE_FILE,
    ConfigRecord,
    MalformedState,
    RuntimeNotes,
    StateWriter,
    read_state,
)
from tests.support.cycle_data import planning_labels

T0 = 1_780_000_000.0


def a_cycle(tmp_path: Path) -> tuple[CycleReport, list]:
    labels = planning_labels(tmp_path)
    census = Census({label.name: Supply() for label in labels}, total=0)
    plans = plan(labels, {}, census, 1, FactoryCaps(), cycle=0)
    results = tuple(LabelResult(p, SubmitOutcome()) for p in plans)
    return CycleReport(0, T0, 1.0, results, ()), labels


def test_the_notes_are_asked_after_every_cycle_and_read_back(tmp_path: Path) -> None:
    rejected = ConfigRecord("/etc/apf/factory.conf", T0 - 60, "start-up", T0 - 5, "a\nb")
    notes = [RuntimeNotes(rejected, "HTTP 401 invalid token"), RuntimeNotes()]
    writer = StateWriter(tmp_path, "f", lambda: notes.pop(0))
    report, labels = a_cycle(tmp_path)
    writer.cycle_done(report, labels)
    record = read_state(tmp_path / STATE_FILE)
    assert record.config == rejected
    assert record.monitor_refused == "HTTP 401 invalid token"
    assert json.loads((tmp_path / STATE_FILE).read_text()) == record.to_json()
    writer.cycle_done(report, labels)
    record = read_state(tmp_path / STATE_FILE)
    assert record.config is None
    assert record.monitor_refused == ""


def test_a_file_without_the_notes_reads_as_none(tmp_path: Path) -> None:
    StateWriter(tmp_path, "f").cycle_done(*a_cycle(tmp_path))
    raw = json.loads((tmp_path / STATE_FILE).read_text())
    del raw["config"], raw["monitor_refused"]  # written by the version before
    (tmp_path / STATE_FILE).write_text(json.dumps(raw))
    record = read_state(tmp_path / STATE_FILE)
    assert record.config is None
    assert record.monitor_refused == ""


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"read_at": 1.0, "read_by": "reload"}, "config.path: missing"),
        ({"path": "p", "read_at": "x", "read_by": "reload"}, "config.read_at: 'x' is not a time"),
        ({"path": "p", "read_at": 1.0, "read_by": "reload", "rejected_at": "x"}, "config.rejected_at: 'x'"),
    ],
)
def test_a_malformed_config_record_is_named(tmp_path: Path, config: dict[str, object], named: str) -> None:
    StateWriter(tmp_path, "f").cycle_done(*a_cycle(tmp_path))
    raw = json.loads((tmp_path / STATE_FILE).read_text())
    raw["config"] = config
    (tmp_path / STATE_FILE).write_text(json.dumps(raw))
    with pytest.raises(MalformedState, match=named):
        read_state(tmp_path / STATE_FILE)
