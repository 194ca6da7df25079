"""PostgreSQL, several worker processes, several factories: batches of pilot reports lock their jobs
in one global order, so two batches that hold the same jobs never deadlock.

The first test makes the dangerous interleaving certain instead of likely: two batches (as two
worker processes' group commits make them) report the same two jobs of two factories in opposite
arrival orders, and each waits for the other before any further locking statement of its
transaction. Locking per factory (the order of arrival of the factories) made each hold one job
while waiting for the other's: PostgreSQL broke the deadlock after a second by failing one batch.
The second test is the load of the benchmark in small: ``serve --workers 2``, eight factories,
every report sent twice at once (a wrapper's retry racing its original); PostgreSQL's own deadlock
counter must not move.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy import event

from autopyfactory.monitor_service.db import Database
from autopyfactory.monitor_service.group_commit import Batch
from autopyfactory.monitor_service.migrations import upgrade
from autopyfactory.monitor_service.schemas import JobRow
from autopyfactory.monitor_service.states import PILOT_REPORTS
from autopyfactory.monitor_service.store import PilotReport, Store
from tests.support.monitor import FakeClock, monitor_cli, up
from tests.support.paths import REPO
from tests.support.waiting import free_port, wait_for

LABEL = "DL-LABEL"


@pytest.fixture
def pg_url(db_url: str) -> str:
    if not db_url.startswith("postgresql"):
        pytest.skip("row locks and deadlocks are PostgreSQL's (SQLite has one writer)")
    return db_url


@pytest.fixture
def db(pg_url: str) -> Iterator[Database]:
    database = Database.open(pg_url)
    upgrade(database.engines.write)
    yield database
    database.close()


class StepInStep:
    """Before each locking statement after the first in a transaction, the two test threads wait
    for each other: each then holds what its first statement locked."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=10)
        self.local = threading.local()
        self.waits = 0

    def start(self) -> None:
        self.local.locking = 0

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FOR UPDATE" not in statement or not hasattr(self.local, "locking"):
            return
        self.local.locking += 1
        if self.local.locking > 1:
            self.waits += 1
            # BrokenBarrierError: the other batch needs no second statement, nothing to line up with
            with contextlib.suppress(threading.BrokenBarrierError):
                self.barrier.wait()


def test_batches_with_the_same_jobs_in_opposite_orders_do_not_deadlock(db: Database) -> None:
    store = Store(db, FakeClock())
    for name in ("dl-a", "dl-b"):
        store.add_factory(name)
        store.create_jobs(name, [JobRow(cid="1.0", label=LABEL, factory=name)], "127.0.0.1")

    def running(factory: str) -> PilotReport:
        return PilotReport(factory, "1.0", lambda _current: PILOT_REPORTS["running"], "127.0.0.1", None, None)

    orders = [[running("dl-a"), running("dl-b")], [running("dl-b"), running("dl-a")]]
    hook = StepInStep()
    event.listen(db.engines.write, "before_cursor_execute", hook)

    def batch(reports: list[PilotReport]) -> list[bool]:
        hook.start()
        with db.write.begin() as session:
            current = Batch(session, FakeClock()())
            outcomes = store.reports_in(current, reports)
            current.finish()
        return [ok for ok, _ in outcomes]

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(batch, reports) for reports in orders]
            results = [future.result(timeout=60) for future in futures]
    finally:
        event.remove(db.engines.write, "before_cursor_execute", hook)
    assert results == [[True, True], [True, True]]  # before: one raised "deadlock detected"
    with db.read() as session:
        states = (
            session.execute(
                sa.text(
                    "SELECT state FROM jobs j JOIN factories f ON f.id = j.factory_id"
                    " WHERE f.name IN ('dl-a', 'dl-b')"
                )
            )
            .scalars()
            .all()
        )
    assert states == ["RUNNING", "RUNNING"]


def _deadlocks(url: str) -> int:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        query = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        found = int(connection.exec_driver_sql(query).scalar() or 0)
    engine.dispose()
    return found


def test_two_workers_many_factories_raced_replays_no_deadlock(pg_url: str, http: requests.Session) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    tokens = {}
    for n in range(8):
        name = f"dl{n}-{os.getpid()}"
        done = subprocess.run(
            monitor_cli(pg_url, "add-factory", name), capture_output=True, text=True, env=env, timeout=120
        )
        assert done.returncode == 0, done.stderr
        tokens[name] = done.stdout.strip()
    before = _deadlocks(pg_url)
    port = free_port()
    process = subprocess.Popen(
        monitor_cli(pg_url, "serve", "--port", str(port), "--workers", "2"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    cids = [f"3.{n}" for n in range(150)]
    try:
        wait_for(lambda: up(url) or process.poll() is not None, 60, "the service to answer")
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        for name, token in tokens.items():
            jobs = [{"cid": cid, "label": LABEL, "factory": name} for cid in cids]
            answer = http.put(
                f"{url}/api/jobs", json=jobs, headers={"Authorization": f"Bearer {token}"}, timeout=60
            )
            assert answer.status_code == 200, answer.text
        work = [(name, cid) for cid in cids for name in tokens]  # the factories interleaved

        def report(item: tuple[str, str]) -> list[int]:
            name, cid = item
            statuses = []
            with requests.Session() as session:
                session.trust_env = False
                for form in ({"state": "running"}, {"state": "exiting", "rc": "0"}):
                    statuses.append(
                        session.post(f"{url}/api/jobs/{name}:{cid}", data=form, timeout=60).status_code
                    )
            return statuses

        with ThreadPoolExecutor(max_workers=32) as pool:  # every report twice, at the same time
            answers = list(pool.map(report, [item for item in work for _copy in (1, 2)]))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    # a copy of running that comes after the other copy's exiting is refused: 409, not an error
    assert {status for statuses in answers for status in statuses} <= {200, 409}
    assert _deadlocks(pg_url) == before  # the backends flushed their counters when they exited
