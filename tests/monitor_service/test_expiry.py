"""Server-side expiry (apfmon's rules) and retention, with the service's clock under control."""

from __future__ import annotations

from datetime import timedelta

import pytest

from autopyfactory.monitor_service.cli import main
from autopyfactory.monitor_service.expiry import Expiry, span
from autopyfactory.monitor_service.settings import ExpiryRules
from tests.support.monitor import FactoryClient, Monitor, local_session, new_factory, running_monitor
from tests.support.waiting import wait_for

MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)


def expire(monitor: Monitor) -> None:
    monitor.services.expiry.run()


def test_exiting_becomes_done_after_30_minutes(factory: FactoryClient, monitor: Monitor) -> None:
    factory.create("L", "1.0")
    factory.pilot("1.0", state="running")
    factory.pilot("1.0", state="exiting", rc="0")
    monitor.clock.advance(29 * MINUTE)
    expire(monitor)
    assert factory.job("1.0")["state"] == "EXITING"
    monitor.clock.advance(2 * MINUTE)
    expire(monitor)
    job = factory.job("1.0")
    assert job["state"] == "DONE"
    last = job["events"][-1]  # type: ignore[index]
    assert (last["old_state"], last["new_state"], last["source"]) == ("EXITING", "DONE", "expiry")
    assert last["text"] == "expiry: EXITING for more than 30 min"


def test_created_is_flagged_after_6_hours_then_fault_after_24(
    factory: FactoryClient, monitor: Monitor
) -> None:
    factory.create("L", "2.0")
    monitor.clock.advance(6 * HOUR - MINUTE)
    expire(monitor)
    assert factory.job("2.0")["flagged"] is False
    monitor.clock.advance(2 * MINUTE)
    expire(monitor)
    job = factory.job("2.0")
    assert (job["state"], job["flagged"]) == ("CREATED", True)
    assert job["events"][-1]["text"] == "expiry: flagged, CREATED for more than 6 h"  # type: ignore[index]
    monitor.clock.advance(24 * HOUR - MINUTE)
    expire(monitor)
    assert factory.job("2.0")["state"] == "CREATED"
    monitor.clock.advance(2 * MINUTE)
    expire(monitor)
    job = factory.job("2.0")
    assert job["state"] == "FAULT"
    assert [e["new_state"] for e in job["events"]] == ["CREATED", "CREATED", "FAULT"]  # type: ignore[attr-defined]


def test_running_is_flagged_after_72_hours(factory: FactoryClient, monitor: Monitor) -> None:
    factory.create("L", "3.0")
    monitor.clock.advance(HOUR)
    factory.pilot("3.0", state="running")
    monitor.clock.advance(72 * HOUR - MINUTE)
    expire(monitor)
    assert factory.job("3.0")["flagged"] is False
    monitor.clock.advance(2 * MINUTE)
    expire(monitor)
    assert factory.job("3.0")["flagged"] is True
    monitor.clock.advance(25 * HOUR)
    expire(monitor)
    assert factory.job("3.0")["state"] == "FAULT"


def test_a_legal_report_clears_the_flag(factory: FactoryClient, monitor: Monitor) -> None:
    factory.create("L", "4.0")
    monitor.clock.advance(7 * HOUR)
    expire(monitor)
    assert factory.job("4.0")["flagged"] is True
    answer = factory.pilot("4.0", state="running")  # a slow batch system: the pilot starts late
    assert answer.status_code == 200
    assert factory.job("4.0")["flagged"] is False
    monitor.clock.advance(25 * HOUR)
    expire(monitor)
    assert factory.job("4.0")["state"] == "RUNNING"


def test_counts_show_flagged_jobs(factory: FactoryClient, monitor: Monitor) -> None:
    factory.create("L", "5.0", "5.1")
    monitor.clock.advance(7 * HOUR)
    expire(monitor)
    labels = factory.session.get(f"{monitor.api}/factories/{factory.name}/labels", timeout=10).json()
    assert labels[0]["counts"]["flagged"] == 2


def test_batches_and_configurable_rules(factory: FactoryClient, monitor: Monitor) -> None:
    cids = [f"6.{n}" for n in range(23)]
    factory.create("L", *cids)
    for cid in cids:
        factory.pilot(cid, state="running")
        factory.pilot(cid, state="exiting", rc="0")
    monitor.clock.advance(6 * MINUTE)
    rules = ExpiryRules(exiting=5 * MINUTE, batch=5)
    report = Expiry(monitor.services.db, monitor.clock, rules).run()
    assert report.done >= 23
    assert {factory.job(cid)["state"] for cid in cids} == {"DONE"}


def test_cli_expire_and_clean(
    factory: FactoryClient, monitor: Monitor, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", monitor.settings.db_url]
    factory.create("L", "7.0", "7.1", "7.2")
    factory.pilot("7.0", state="running")
    factory.pilot("7.0", state="exiting", rc="0")
    factory.pilot("7.1", state="fault")
    monitor.clock.advance(10 * MINUTE)
    assert main([*db, "expire", "--exiting-minutes", "5"], clock=monitor.clock) == 0
    assert "expiry: done=" in capsys.readouterr().out
    assert factory.job("7.0")["state"] == "DONE"

    monitor.clock.advance(timedelta(days=3))
    factory.create("L", "7.3")
    factory.pilot("7.3", state="fault")  # final but recent: kept
    assert main([*db, "clean", "--days", "2", "--batch", "1"], clock=monitor.clock) == 0
    assert "deleted" in capsys.readouterr().out
    for cid in ("7.0", "7.1"):
        assert factory.session.get(f"{monitor.api}/jobs/{factory.name}:{cid}", timeout=10).status_code == 404
    assert factory.job("7.2")["state"] == "CREATED"  # active jobs are never cleaned
    assert factory.job("7.3")["state"] == "FAULT"


def test_in_process_expiry(monitor: Monitor) -> None:
    """A second service on the same database, with expiry running inside it every 50 ms."""
    with running_monitor(monitor.settings.db_url, expire_every=0.05) as inside, local_session() as session:
        factory = new_factory(inside, session)
        factory.create("L", "8.0")
        factory.pilot("8.0", state="running")
        factory.pilot("8.0", state="exiting", rc="0")
        inside.clock.advance(31 * MINUTE)
        wait_for(lambda: factory.job("8.0")["state"] == "DONE", 10, "the in-process expiry")


@pytest.mark.parametrize(
    ("delta", "text"), [(30 * MINUTE, "30 min"), (6 * HOUR, "6 h"), (timedelta(seconds=90), "90 s")]
)
def test_span(delta: timedelta, text: str) -> None:
    assert span(delta) == text
