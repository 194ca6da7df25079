"""Store.reports_in (the pilot reports of a group-commit batch, done together) gives the answers,
events and final job states that the same reports give one at a time, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from autopyfactory.monitor_service.db import Database
from autopyfactory.monitor_service.errors import MonitorError
from autopyfactory.monitor_service.group_commit import Batch
from autopyfactory.monitor_service.migrations import upgrade
from autopyfactory.monitor_service.models import Factory, Job, JobEvent
from autopyfactory.monitor_service.schemas import JobRow
from autopyfactory.monitor_service.states import PILOT_REPORTS, JobState, legacy_exit_target
from autopyfactory.monitor_service.store import PilotReport, Store, TargetRule
from tests.support.monitor import FakeClock

JOBS = ["1.0", "2.0", "3.0", "4.0"]


def wants(state: str) -> TargetRule:
    return lambda _current: PILOT_REPORTS[state]


def legacy_exit(rc: int) -> TargetRule:
    return lambda current: legacy_exit_target(current, rc)


# (cid, target, rc, ids): several reports per job, in one batch, in this order
REPORTS: list[tuple[str, TargetRule, int | None, str | None]] = [
    ("1.0", wants("running"), None, None),
    ("1.0", wants("running"), None, None),  # replay
    ("2.0", legacy_exit(7), 7, None),  # CREATED, rc != 0: fault
    ("1.0", wants("exiting"), 3, "11,12"),
    ("1.0", wants("running"), None, None),  # illegal: recorded
    ("3.0", wants("exiting"), 0, None),
    ("9.0", wants("running"), None, None),  # unknown job
    ("4.0", wants("running"), None, "5"),
    ("4.0", wants("fault"), None, None),  # keeps the ids of the report before
    ("2.0", wants("running"), None, None),  # illegal after fault
    ("1.0", wants("fault"), None, None),
]


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database.open(db_url)
    upgrade(database.engines.write)
    yield database
    database.close()


def answer(outcome: Any) -> tuple[Any, ...]:
    if isinstance(outcome, MonitorError):
        return (type(outcome).__name__, outcome.status, str(outcome).split(":", 2)[-1])
    return (outcome.state, outcome.changed, outcome.accepted, outcome.detail)


def jobs_and_events(db: Database, factory: str) -> dict[str, Any]:
    """The factory's jobs (state, rc, ids, flagged) and their events, its name left out."""
    jobs = sa.select(Job.cid, Job.state, Job.rc, Job.ids, Job.flagged)
    events = sa.select(Job.cid, JobEvent.old_state, JobEvent.new_state, JobEvent.accepted, JobEvent.text)
    events = events.join(Job, Job.id == JobEvent.job_id)
    with db.read() as session:
        found = {
            row.cid: tuple(row)[1:]
            for row in session.execute(jobs.join(Factory).where(Factory.name == factory))
        }
        by_job: dict[str, list[tuple[Any, ...]]] = {}
        for row in session.execute(events.join(Factory).where(Factory.name == factory).order_by(JobEvent.id)):
            by_job.setdefault(row.cid, []).append(
                tuple(str(v).replace(factory, "<f>") for v in tuple(row)[1:])
            )
    return {"jobs": found, "events": by_job}


def test_reports_together_as_one_at_a_time(db: Database) -> None:
    store = Store(db, FakeClock())
    results = {}
    for factory in ("alone", "together"):
        store.add_factory(factory)
        store.create_jobs(factory, [JobRow(cid=cid, label="L", factory=factory) for cid in JOBS], "127.0.0.1")
    one_by_one = []
    for cid, target, rc, ids in REPORTS:
        try:
            one_by_one.append(answer(store.report(PilotReport("alone", cid, target, "127.0.0.1", rc, ids))))
        except MonitorError as exc:
            one_by_one.append(answer(exc))
    reports = [PilotReport("together", cid, target, "127.0.0.1", rc, ids) for cid, target, rc, ids in REPORTS]
    reports.append(PilotReport("nobody", "1.0", wants("running"), "127.0.0.1", None, None))
    with db.write.begin() as session:  # a batch, as the group commit makes it
        batch = Batch(session, FakeClock()())
        outcomes = store.reports_in(batch, reports)
        batch.finish()
    assert [answer(value) for _ok, value in outcomes[:-1]] == one_by_one
    assert [ok for ok, _value in outcomes] == [not isinstance(value, MonitorError) for _ok, value in outcomes]
    assert answer(outcomes[-1][1]) == ("NotFound", 404, " the factory has not announced it")
    for factory in ("alone", "together"):
        results[factory] = jobs_and_events(db, factory)
    assert results["together"] == results["alone"]
    assert results["alone"]["jobs"]["1.0"] == (JobState.FAULT, 3, "11,12", False)
    assert results["alone"]["jobs"]["4.0"] == (JobState.FAULT, None, "5", False)
    assert len(results["alone"]["events"]["1.0"]) == 5  # created, running, exiting, refused, fault
