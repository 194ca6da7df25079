"""How fast the monitor's pages are with a million jobs in the database.

Run by hand: ``python benchmarks/monitor_pages.py [--db URL] [--jobs N] [--factories F] [--labels L]``
(default: a temporary SQLite file, 1,000,000 jobs, 10 factories × 50 labels). It fills the
database through SQLAlchemy Core (jobs spread over 10 days: most DONE, some FAULT, the last
hours still CREATED/RUNNING/EXITING, every job with its CREATED event), then renders every page
through its view function and template, as the route does, and prints the median and worst of
five runs. For PostgreSQL pass an empty database: ``--db postgresql://user@127.0.0.1/bench``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, literal, select

from autopyfactory.monitor_service import pages
from autopyfactory.monitor_service.app import build_services
from autopyfactory.monitor_service.deps import Services
from autopyfactory.monitor_service.models import Factory, Job, JobEvent, Label, LabelMessage
from autopyfactory.monitor_service.settings import MonitorSettings, database_url

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
SPAN = timedelta(days=10)
CHUNK = 20_000
MESSAGE = (
    "{label} pq={pq} activated=812 share=406 idle=3 running=10 held=0 decision=12 submitted=12 "
    "ids=5.0..5.11 | Ready: in=0 activated=406 offset=0 pending=3 -> 403; MaxPending: in=403 pending=3 "
    "max=15 -> 12"
)


def fill(svc: Services, jobs: int, factories: int, labels: int) -> None:
    with svc.db.write.begin() as session:
        session.execute(insert(Factory), [_factory(f) for f in range(factories)])
        ids = {name: id_ for name, id_ in session.execute(select(Factory.name, Factory.id))}
        records = [_label(ids[f"apf{f:02d}"], n) for f in range(factories) for n in range(labels)]
        session.execute(insert(Label), records)
        rows = session.execute(select(Label.id, Label.factory_id, Label.name, Label.batchqueue)).all()
        messages = [_message(label_id, name, pq) for label_id, _, name, pq in rows]
        session.execute(insert(LabelMessage), messages)
    label_keys = [(label_id, factory_id) for label_id, factory_id, _, _ in rows]
    rng = random.Random(42)
    done = 0
    for chunk in _chunks(jobs):
        batch = [_job(rng, label_keys, done + i) for i in range(chunk)]
        with svc.db.write.begin() as session:
            session.execute(insert(Job), batch)
        done += chunk
        print(f"\r  {done} jobs", end="", flush=True)
    print()
    _events(svc)


def _events(svc: Services) -> None:
    """Every job's CREATED event, copied in the database."""
    values = select(
        Job.id, Job.created_at, literal("CREATED"), literal(True), literal("bench"), literal("created")
    )
    columns = ["job_id", "at", "new_state", "accepted", "source", "text"]
    with svc.db.write.begin() as session:
        session.execute(insert(JobEvent).from_select(columns, values))


def _message(label_id: int, name: str, pq: str) -> dict[str, Any]:
    return {"label_id": label_id, "at": NOW, "text": MESSAGE.format(label=name, pq=pq), "source": "bench"}


def _chunks(total: int) -> Iterator[int]:
    while total > 0:
        yield min(CHUNK, total)
        total -= CHUNK


def _factory(f: int) -> dict[str, Any]:
    return {
        "name": f"apf{f:02d}", "token_hash": f"{f:064d}", "url": f"https://apf{f:02d}.example.org/logs",
        "email": "ops@example.org", "version": "3.0.0", "created_at": NOW - SPAN, "last_seen": NOW,
        "last_ip": "127.0.0.1",
    }  # fmt: skip


def _label(factory_id: int, n: int) -> dict[str, Any]:
    pq = f"PQ{n % 400:03d}"
    return {
        "factory_id": factory_id, "name": f"{pq}-ce{factory_id}.example.org-condor", "batchqueue": pq,
        "wmsqueue": pq, "resource": f"ce{factory_id}.example.org:9619", "localqueue": "condor",
        "created_at": NOW - SPAN, "updated_at": NOW, "last_message": MESSAGE.format(label=n, pq=pq),
        "last_message_at": NOW - timedelta(minutes=n % 40),
    }  # fmt: skip


def _job(rng: random.Random, labels: list[tuple[int, int]], n: int) -> dict[str, Any]:
    label_id, factory_id = labels[rng.randrange(len(labels))]
    created = NOW - SPAN * rng.random()
    age = NOW - created
    state, changed, rc = _fate(rng, age)
    return {
        "factory_id": factory_id, "label_id": label_id, "cid": f"{n // 10}.{n % 10}", "state": state,
        "created_at": created, "state_changed_at": created + min(changed, age), "flagged": False, "rc": rc,
        "ids": "",
    }  # fmt: skip


def _fate(rng: random.Random, age: timedelta) -> tuple[str, timedelta, int | None]:
    """A job's state by its age: recent ones active, old ones DONE (rc 0 or 20) or FAULT."""
    if age < timedelta(minutes=20):
        return "CREATED", timedelta(0), None
    run = timedelta(minutes=rng.randrange(1, 15))
    if age < timedelta(hours=6) and rng.random() < 0.5:
        return "RUNNING", run, None
    end = run + timedelta(minutes=rng.randrange(5, 600))
    if rng.random() < 0.08:
        return "FAULT", end, None
    if age < end + timedelta(minutes=30):
        return "EXITING", end, 0
    return "DONE", end + timedelta(minutes=30), rng.choice((0, 0, 0, 20))


def timed(what: Callable[[], object], runs: int = 5) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        what()
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(times)


def bench(svc: Services) -> None:
    with svc.db.read() as session:
        label = session.execute(select(Label.name, Factory.name).join(Factory)).first()
        job = session.execute(select(Job.cid, Factory.name).join(Factory).order_by(Job.id.desc())).first()
    assert label is not None
    assert job is not None
    cases: list[tuple[str, Callable[[], object]]] = [
        ("/", lambda: pages.show(svc, pages.index_view)),
        (f"/factory/{label[1]}", lambda: pages.show(svc, pages.factory_view, label[1], 24)),
        (
            f"/factory/{label[1]}/{label[0]}",
            lambda: pages.show(svc, pages.label_view, label[1], label[0], 24),
        ),
        (f"/job/{job[1]}:{job[0]}", lambda: pages.show(svc, pages.job_view, job[1], job[0])),
        ("/pq/PQ007", lambda: pages.show(svc, pages.pq_view, "PQ007", 24)),
        ("/report", lambda: pages.show(svc, pages.report_view, 24, 20, 20.0)),
        ("/search?q=pq00", lambda: pages.render(pages.search_view(svc, "pq00"), svc, "pq00")),
    ]
    print(f"{'page':50} {'median ms':>10} {'worst ms':>10}")
    for name, case in cases:
        median, worst = timed(case)
        print(f"{name:50} {median * 1000:10.1f} {worst * 1000:10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", help="SQLAlchemy URL of an empty database (default: a temporary SQLite file)")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--factories", type=int, default=10)
    parser.add_argument("--labels", type=int, default=50, help="labels per factory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url(args.db or str(Path(tmp) / "monitor.sqlite"))
        svc = build_services(MonitorSettings(db_url=url, clock=lambda: NOW))
        start = time.perf_counter()
        fill(svc, args.jobs, args.factories, args.labels)
        print(f"filled {args.jobs} jobs in {time.perf_counter() - start:.0f} s ({url.split('://')[0]})")
        if svc.db.dialect == "postgresql":
            with svc.db.engines.write.connect() as connection:
                connection.exec_driver_sql("ANALYZE")
                connection.commit()
        else:
            with svc.db.engines.write.connect() as connection:
                connection.exec_driver_sql("ANALYZE")
        bench(svc)
        svc.db.close()


if __name__ == "__main__":
    main()
