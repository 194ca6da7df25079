"""A cycle without PanDA data says so everywhere: summary, label lines (the monitor's label
messages), state file, ``status`` and metrics, with the age of the last numbers PanDA confirmed."""

from __future__ import annotations

import math

import pytest

from autopyfactory.batch.interface import SubmitOutcome
from autopyfactory.cli.status import format_status
from autopyfactory.cycle.report import CycleReport, LabelResult
from autopyfactory.domain.demand import PandaReading, SiteJobs
from autopyfactory.domain.model import Census, Supply
from autopyfactory.domain.planning import plan
from autopyfactory.domain.sharing import FactoryCaps
from autopyfactory.observers.metrics import FactoryMetrics
from autopyfactory.observers.state import PandaRecord, state_record
from tests.support.cycle_data import planning_labels

T0 = 1_700_000_000.0


@pytest.fixture
def labels(tmp_path):
    return planning_labels(tmp_path)


def report_for(labels, reading: PandaReading) -> CycleReport:
    census = Census({label.name: Supply() for label in labels}, total=0)
    plans = plan(labels, reading.stats, census, 1, FactoryCaps(), cycle=3)
    results = tuple(LabelResult(p, SubmitOutcome()) for p in plans)
    return CycleReport(3, T0, 2.0, results, (), panda=reading)


def test_a_cycle_without_panda_data_says_so_everywhere(labels):
    problem = "PanDA: success=False: Database failure getting the job statistics"
    report = report_for(labels, PandaReading(None, T0 + 1, problem, last_good=T0 - 120))
    assert (
        "submitted 0, no PanDA data (last good answer 122 s old, not used), nothing submitted, "
        in report.summary()
    )
    line = report.results[0].line()
    assert "activated=unknown(no PanDA data)" in line
    assert "NoData: in=0 no PanDA data this cycle -> 0" in line

    record = state_record(report, "f", None)
    assert record.panda == PandaRecord(ok=False, asked=T0 + 1, last_good=T0 - 120, problem=problem)
    shown = format_status(record, now=T0 + 10)
    assert "PanDA: NO DATA in that cycle, nothing submitted (last good answer 130 s old;" in shown

    metrics = FactoryMetrics()
    metrics.cycle_done(report, labels)
    assert metrics.panda_ok._value.get() == 0
    assert metrics.last_success.labels("panda")._value.get() == T0 - 120
    assert math.isnan(metrics.activated.labels("CERN")._value.get())


def test_a_good_cycle_shows_the_age_of_its_numbers(labels):
    stats = {"CERN": SiteJobs({"activated": 40})}
    report = report_for(labels, PandaReading(stats, T0 + 1, "", last_good=T0 + 1))
    assert "PanDA answer 1 s into the cycle" in report.summary()
    shown = format_status(state_record(report, "f", None), now=T0 + 61)
    assert "PanDA: activated counts from an answer 60 s old (PanDA's counts lag up to 60 s more)" in shown
    metrics = FactoryMetrics()
    metrics.cycle_done(report, labels)
    assert metrics.panda_ok._value.get() == 1
    assert metrics.activated.labels("CERN")._value.get() == 40


def test_no_panda_data_after_good_numbers_clears_the_activated_gauge(labels):
    metrics = FactoryMetrics()
    metrics.cycle_done(
        report_for(labels, PandaReading({"CERN": SiteJobs({"activated": 40})}, T0, "", T0)), labels
    )
    metrics.cycle_done(report_for(labels, PandaReading(None, T0 + 120, "PanDA: down", T0)), labels)
    assert math.isnan(metrics.activated.labels("CERN")._value.get())
