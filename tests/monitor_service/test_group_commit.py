"""Group commit: reports that arrive together share a transaction, each is answered
only after its commit, the state machine is unchanged, and nothing acknowledged is lost when the
service is stopped with SIGTERM under load."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy import text

from autopyfactory.monitor_service.db import Database
from autopyfactory.monitor_service.errors import NotFound
from autopyfactory.monitor_service.group_commit import Batch, GroupCommit, Unavailable
from autopyfactory.monitor_service.migrations import upgrade
from autopyfactory.monitor_service.models import Factory
from autopyfactory.monitor_service.store import REFUSALS_KEPT
from tests.support.monitor import (
    FakeClock,
    Monitor,
    local_session,
    monitor_cli,
    new_factory,
    running_monitor,
    up,
)
from tests.support.paths import REPO
from tests.support.waiting import free_port, wait_for

LABEL = "GC-LABEL"
RUNNING = {"state": "running"}


@pytest.fixture(params=[True, False], ids=["group-commit", "per-request"])
def either_path(request: pytest.FixtureRequest, db_url: str) -> Iterator[Monitor]:
    with running_monitor(db_url, group_commit=request.param) as monitor:
        yield monitor


def test_one_winner_per_step_and_refusals_recorded(either_path: Monitor, http: requests.Session) -> None:
    """64 concurrent reports on one job: one transition per step, every illegal one a 409 that is
    counted on the job (the last few of them kept as its events), on both paths."""
    factory = new_factory(either_path, http)
    factory.create(LABEL, "1.0")
    assert factory.pilot("1.0", state="running").status_code == 200
    forms = [{"state": "exiting", "rc": "0"}, {"state": "running"}] * 32  # running after exiting: 409

    def report(form: dict[str, str]) -> int:
        with local_session() as session:
            url = f"{either_path.api}/jobs/{factory.name}:1.0"
            return session.post(url, data=form, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(report, forms))
    assert set(statuses) <= {200, 409}
    events = factory.job("1.0")["events"]
    assert isinstance(events, list)
    accepted = [(e["old_state"], e["new_state"]) for e in events if e["accepted"]]
    assert accepted == [(None, "CREATED"), ("CREATED", "RUNNING"), ("RUNNING", "EXITING")]  # one winner
    refused = [(e["old_state"], e["new_state"]) for e in events if not e["accepted"]]
    assert refused == [("EXITING", "RUNNING")] * min(REFUSALS_KEPT, statuses.count(409))
    assert factory.job("1.0")["refusals"] == statuses.count(409)


def test_a_failing_write_does_not_fail_the_others(tmp_path: Path) -> None:
    """A write that breaks its transaction is retried alone; the rest of its batch commits; a
    write cancelled while queued is left out and does not stop the writer."""
    db = Database.open(f"sqlite:///{tmp_path / 'gc.sqlite'}", sqlite_sync="FULL")
    upgrade(db.engines.write)
    writer = GroupCommit(db, FakeClock())
    gate = threading.Event()

    def wait(_batch: Batch) -> str:
        gate.wait(10)
        return "first"

    def add(name: str):  # type: ignore[no-untyped-def]
        def work(batch: Batch) -> str:
            batch.session.execute(
                sa.insert(Factory).values(name=name, token_hash=name, created_at=FakeClock()())
            )
            return name

        return work

    def broken(batch: Batch) -> None:
        batch.session.execute(text("INSERT INTO nowhere VALUES (1)"))

    def missing(_batch: Batch) -> None:
        raise NotFound("no such thing")

    writer.start()
    try:
        first = writer.submit(wait)  # holds the writer so that the next ones form one batch
        gone = writer.submit(add("gone"))  # its client went away while it was queued
        futures = [writer.submit(w) for w in (add("a"), broken, missing, add("b"))]
        assert gone.cancel()
        gate.set()
        assert first.result(10) == "first"
        assert futures[0].result(10) == "a"
        assert isinstance(futures[1].exception(10), sa.exc.OperationalError)
        assert isinstance(futures[2].exception(10), NotFound)
        assert futures[3].result(10) == "b"
    finally:
        writer.stop()
    with db.read() as session:
        assert sorted(session.scalars(sa.select(Factory.name))) == ["a", "b"]
    with pytest.raises(Unavailable):
        writer.submit(wait)
    db.close()


def test_items_together_in_one_call_and_alone_after_a_failure(tmp_path: Path) -> None:
    """Consecutive run_together items are done by one call, in arrival order, plain items in
    between keep their place; a call that fails is redone one item per transaction."""
    db = Database.open(f"sqlite:///{tmp_path / 'gc.sqlite'}", sqlite_sync="FULL")
    upgrade(db.engines.write)
    writer = GroupCommit(db, FakeClock())
    gate = threading.Event()
    calls: list[list[str]] = []
    started = threading.Event()

    def hold(_batch: Batch) -> bool:
        started.set()
        return gate.wait(10)

    def together(_batch: Batch, items: list[str]) -> list[tuple[bool, object]]:
        calls.append(items)
        if "bad" in items and len(items) > 1:
            raise RuntimeError("one of them breaks the transaction")
        return [(False, NotFound(item)) if item == "bad" else (True, item.upper()) for item in items]

    writer.start()
    try:
        first = writer.submit(hold)
        assert started.wait(10)  # the writer is held in its batch: the next ones form one batch
        futures = [writer.submit(item, together=together) for item in ("a", "b")]
        futures.append(writer.submit(lambda _batch: "plain"))
        futures += [writer.submit(item, together=together) for item in ("c", "bad", "d")]
        gate.set()
        assert first.result(10) is True
        assert [f.result(10) for f in futures[:4]] == ["A", "B", "plain", "C"]
        assert isinstance(futures[4].exception(10), NotFound)
        assert futures[5].result(10) == "D"
    finally:
        writer.stop()
    assert calls == [["a", "b"], ["c", "bad", "d"], ["a"], ["b"], ["c"], ["bad"], ["d"]]
    db.close()


# --- SIGTERM under load: a real `autopyfactory-monitor serve` process --------------------------


def test_no_acknowledged_report_is_lost_on_sigterm(db_url: str, http: requests.Session) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    name = f"sigterm-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    token = subprocess.run(
        monitor_cli(db_url, "add-factory", name),
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
    ).stdout.strip()
    port = free_port()
    workers = ["--workers", "2"] if db_url.startswith("postgresql") else []
    process = subprocess.Popen(
        monitor_cli(db_url, "serve", "--port", str(port), *workers),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: up(url) or process.poll() is not None, 60, "the service to answer")
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        cids = [f"9.{n}" for n in range(3000)]
        jobs = [{"cid": cid, "label": LABEL, "factory": name} for cid in cids]
        answer = http.put(
            f"{url}/api/jobs", json=jobs, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        assert answer.status_code == 200, answer.text
        acked: list[str] = []
        failed = threading.Event()

        def pilot(mine: list[str]) -> None:
            with requests.Session() as session:
                session.trust_env = False
                for cid in mine:
                    try:
                        reply = session.post(
                            f"{url}/api/jobs/{name}:{cid}", data={"state": "running"}, timeout=60
                        )
                    except requests.RequestException:
                        failed.set()
                        return
                    if reply.status_code == 200:
                        acked.append(cid)

        threads = [threading.Thread(target=pilot, args=(cids[n::12],)) for n in range(12)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(acked) >= 150, 60, "150 acknowledged reports")
        process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(120)
        # uvicorn shuts down gracefully, then re-raises the signal: -SIGTERM is a clean stop
        assert process.wait(120) in (0, -signal.SIGTERM)
        assert process.stderr is not None
        assert "Application shutdown complete" in process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert 150 <= len(acked) < len(cids), "SIGTERM came too late to stop the load"
    engine = sa.create_engine(db_url)
    with engine.connect() as connection:
        stored = set(
            connection.scalars(
                text(
                    "SELECT j.cid FROM jobs j JOIN factories f ON f.id = j.factory_id"
                    " JOIN job_events e ON e.job_id = j.id"
                    " WHERE f.name = :f AND e.new_state = 'RUNNING' AND e.accepted"
                ),
                {"f": name},
            )
        )
    engine.dispose()
    assert set(acked) <= stored, f"{len(set(acked) - stored)} acknowledged reports lost"


def test_several_workers_need_postgresql(tmp_path: Path) -> None:
    result = subprocess.run(
        monitor_cli(str(tmp_path / "m.sqlite"), "serve", "--workers", "2"),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "several workers need PostgreSQL" in result.stderr
