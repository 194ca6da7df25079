"""Labels and cycle reports for the tests of the cycle's pure part and of what observes a cycle
(state file, monitor client, metrics, ``status``), built the factory's way: the config loader, the
CRIC records of tests/data/cric_dump.json and the real planning."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from autopyfactory.batch.interface import SubmitOutcome
from autopyfactory.cycle.report import CycleReport, LabelResult
from autopyfactory.domain.demand import SiteJobs
from autopyfactory.domain.label import Label
from autopyfactory.domain.model import Census, Supply
from autopyfactory.domain.planning import plan
from autopyfactory.domain.sharing import FactoryCaps
from autopyfactory.observers.monitor import MonitorObserver
from tests.support.factory_conf import factory_conf, labels_from, write_factory_conf

#: CERN (13 CEs, Classic) and NDGF-T1 (2 CEs, Ready then MaxPending 8), 5 pilots per label; PR
#: pilots, which count the jobs of the detailed statistics their job label can take.
PLANNING_CONF = factory_conf(
    defaults={"nqueue": 5},
    queues={"CERN": {}, "NDGF-T1": {"schedplugin": "Ready, MaxPending", "sched.maxpending.maximum": 8}},
)

#: NDGF-T1 (2 CEs) of the factory ``mon-test``, whose pilot logs are served from logs.example.org.
OBSERVED_CONF = factory_conf(
    factory={"factoryId": "mon-test", "baseLogDirUrl": "http://logs.example.org/pilots"},
    queues={"NDGF-T1": {}},
)


def planning_labels(directory: Path) -> list[Label]:
    """The 15 labels of :data:`PLANNING_CONF`."""
    return labels_from(write_factory_conf(directory, PLANNING_CONF))


def observed_labels(directory: Path) -> list[Label]:
    """The 2 labels of :data:`OBSERVED_CONF`."""
    return labels_from(write_factory_conf(directory, OBSERVED_CONF))


def observed_report(labels: Sequence[Label], job_ids: tuple[str, ...] = ("1.0", "1.1")) -> CycleReport:
    """Cycle 0 of :func:`observed_labels` with 4 jobs activated at NDGF-T1 and no pilot yet: the
    first label submitted ``job_ids``, the others nothing."""
    census = Census({label.name: Supply() for label in labels}, 0)
    plans = plan(labels, {"NDGF-T1": SiteJobs({"activated": 4})}, census, 1, FactoryCaps(), 0)
    results = [LabelResult(p, SubmitOutcome(job_ids=job_ids if i == 0 else ())) for i, p in enumerate(plans)]
    return CycleReport(0, 0.0, 0.1, tuple(results), ())


def tell_cycle(observer: MonitorObserver, report: CycleReport, labels: Sequence[Label]) -> None:
    """What the cycle tells a monitor observer: each label's pilots as its submission returned
    (``pilots_created``), then the cycle (``cycle_done``)."""
    for result in report.results:
        outcome = result.outcome
        observer.pilots_created(result.plan.label.name, outcome.job_ids, outcome.key_digests)
    observer.cycle_done(report, labels)
