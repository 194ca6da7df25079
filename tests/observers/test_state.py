"""The state record: what the writer writes is what the reader reads, problems keep their edge,
submit times carry over, and a malformed file is one clear line naming the field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from autopyfactory.batch.interface import SubmitOutcome
from autopyfactory.cycle.report import CycleReport, LabelResult, Problem
from autopyfactory.domain.credentials import CredentialCheck, CredentialKind, CredentialState
from autopyfactory.domain.demand import PandaReading, SiteJobs
from autopyfactory.domain.model import Census, EdgeKind, Supply
from autopyfactory.domain.planning import plan
from autopyfactory.domain.sharing import FactoryCaps
from autopyfactory.observers.state import (
    STATE_FILE,
    MalformedState,
    ProblemRecord,
    StateError,
    StateWriter,
    read_state,
)
from tests.support.cycle_data import planning_labels

T0 = 1_780_000_000.0


@pytest.fixture
def labels(tmp_path):
    return planning_labels(tmp_path)


def report_for(labels, cycle: int, submitted: int, problems=()) -> CycleReport:
    census = Census({label.name: Supply() for label in labels}, total=0)
    reading = PandaReading({"CERN": SiteJobs({"activated": 40})}, T0 + cycle, "", T0 + cycle)
    plans = plan(labels, reading.stats, census, 1, FactoryCaps(), cycle=cycle)
    ids = tuple(f"7.{i}" for i in range(submitted))
    results = tuple(LabelResult(p, SubmitOutcome(job_ids=ids if i == 0 else ())) for i, p in enumerate(plans))
    check = CredentialCheck(
        "/p", CredentialKind.PROXY, CredentialState.WARN, 3600.0, "proxy /p: renew it soon"
    )
    return CycleReport(cycle, T0 + 100 * cycle, 2.0, results, problems, panda=reading, credentials=(check,))


def test_what_is_written_is_read_back(tmp_path: Path, labels) -> None:
    writer = StateWriter(tmp_path, "f")
    report = report_for(labels, 0, 2, (Problem(EdgeKind.BATCH, "condor_q: timed out"),))
    writer.cycle_done(report, labels)
    record = read_state(tmp_path / STATE_FILE)
    assert record.problems == (ProblemRecord(EdgeKind.BATCH, "condor_q: timed out"),)
    assert record.edges == {EdgeKind.SCHEDCONFIG: True, EdgeKind.PANDA: True, EdgeKind.BATCH: False,
                            EdgeKind.CONTROL: True, EdgeKind.STATE: True}  # fmt: skip
    assert record.credentials[0].state is CredentialState.WARN
    first = labels[0].name
    assert record.labels[first].submitted == 2
    assert record.labels[first].last_submit == T0
    assert record.labels[first].activated == 40
    assert json.loads((tmp_path / STATE_FILE).read_text()) == record.to_json()


def test_the_last_submit_time_carries_over_also_after_a_restart(tmp_path: Path, labels) -> None:
    StateWriter(tmp_path, "f").cycle_done(report_for(labels, 0, 2), labels)
    restarted = StateWriter(tmp_path, "f")  # reads the previous file
    restarted.cycle_done(report_for(labels, 1, 0), labels)
    record = read_state(tmp_path / STATE_FILE)
    assert record.cycle == 1
    assert record.labels[labels[0].name].last_submit == T0
    assert record.labels[labels[1].name].last_submit is None


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda r: r.pop("cycle"), "cycle: missing"),
        (lambda r: r.update(time=float("nan")), "time: nan is not a time"),
        (lambda r: r.update(problems=[{"kind": "cric", "message": "x"}]), "problems[0].kind: 'cric' is not"),
        (lambda r: r["labels"]["L"].update(idle="3"), "labels.L.idle: '3' is not a count"),
        (lambda r: r["labels"]["L"].update(decision=True), "labels.L.decision: True is not a count"),
        (lambda r: r.update(edges={"panda": "no"}), "edges.panda: 'no' is not true or false"),
        (lambda r: r.update(credentials=[{"path": "/p"}]), "credentials[0].kind: missing"),
    ],
)
def test_a_malformed_field_is_named(tmp_path: Path, change, named: str) -> None:
    label = {"pq": "P", "ce": "c", "status": "online", "activated": 1, "idle": 0, "running": 0, "held": 0,
             "decision": 1, "reason": "r"}  # fmt: skip
    record = {"format": 2, "factory": "f", "version": "1", "cycle": 3, "time": T0, "labels": {"L": label}}
    change(record)
    (tmp_path / STATE_FILE).write_text(json.dumps(record))
    with pytest.raises(MalformedState, match=r"status\.json: malformed state file \(.*" + re.escape(named)):
        read_state(tmp_path / STATE_FILE)


def test_another_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text(json.dumps({"format": 3, "labels": {}}))
    with pytest.raises(StateError, match="not an autopyfactory state file of format 1 or 2"):
        read_state(tmp_path / STATE_FILE)
