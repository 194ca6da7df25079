"""Load on the monitoring webservice: today's path (one transaction per request,
``serve --no-group-commit``) and group commit, side by side in one run, on SQLite and PostgreSQL.

For each database and path it starts ``autopyfactory-monitor serve`` on 127.0.0.1, registers a
factory, and measures, per concurrency:

- idle: one reader alone fetches the factory list, a pilot's JSON and its page (p50/p99 of each);
- bulk create: ``PUT /api/jobs`` with 1,000 jobs each (jobs/s, p50/p99 per request);
- pilot reports: ``POST /api/jobs/<factory>:<cid>`` running then exiting (events/s, p50/p99);

the reader runs on during the bulk and report phases, so that their read p50/p99 show whether
reads stay fast under write load;

then checks that every acknowledged report is in the database (a job event with its state):
"lost" must be 0. On PostgreSQL it also reports the deadlocks the database detected while the
service ran (``pg_stat_database.deadlocks`` before the start and after the stop, when every
backend has flushed its counters): 0 is the target. With ``--factories N`` the reports come from
N factories at once, interleaved, so that concurrent batches mix factories; with ``--replays K``
each report is sent K more times at the same moment on other connections (a wrapper retrying
after a lost answer), so that two batches hold the same jobs (the set-up where locking rows in
per-factory order deadlocked); with ``--workers N`` both paths run N worker processes on
PostgreSQL. The rate counts a report and its replays as one event. Bounded: each phase stops
after ``--seconds`` or ``--max-events``, whichever comes first; only 127.0.0.1 is contacted.

    python benchmarks/monitor_load.py                       # both databases, both paths
    python benchmarks/monitor_load.py --backends sqlite --seconds 5 --concurrency 1,16
    python benchmarks/monitor_load.py --paths new --concurrency ""   # bulk creates only
    git archive <commit> | tar -x -C /tmp/before; python benchmarks/monitor_load.py --old-tree /tmp/before
    python benchmarks/monitor_load.py --backends postgresql --workers 2 --factories 8 --replays 1 \
        --concurrency 64 --bulk-concurrency "" --old-tree /tmp/before   # multi-worker, multi-factory
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import sqlalchemy as sa

HOST = "127.0.0.1"
REQUEST_TIMEOUT = 60.0
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
JOBS_PER_PUT = 1000
JSON = "application/json"


# --- a minimal keep-alive HTTP/1.1 client (asyncio), cheap enough to leave the CPU to the server ---


class Connection:
    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", kind: str = "", token: str = ""
    ) -> int:
        """The status of one request (0: no answer); the body is read and dropped."""
        try:
            return await asyncio.wait_for(self._request(method, path, body, kind, token), REQUEST_TIMEOUT)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            self.close()
            return 0

    async def _request(self, method: str, path: str, body: bytes, kind: str, token: str) -> int:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(HOST, self.port)
        assert self._reader is not None
        head = [f"{method} {path} HTTP/1.1", f"Host: {HOST}", f"Content-Length: {len(body)}"]
        head += [f"Content-Type: {kind}"] if kind else []
        head += [f"Authorization: Bearer {token}"] if token else []
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await self._writer.drain()
        status = int((await self._reader.readline()).split()[1])
        length, close = 0, False
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        await self._reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


# --- the service under test ----------------------------------------------------------------------


@dataclass
class Service:
    url: str  # database URL
    port: int
    tokens: dict[str, str]  # factory name -> token
    process: subprocess.Popen[bytes]

    @property
    def factory(self) -> str:
        """The first factory (bulk creates and the reader use it)."""
        return next(iter(self.tokens))

    @property
    def token(self) -> str:
        return self.tokens[self.factory]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def monitor_command(db: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "autopyfactory.monitor_service", "--db", db, *args]


def environment(tree: Path | None) -> dict[str, str]:
    """The environment of the service: ``tree`` (another checkout) first on the path, if given.

    The service also runs in ``tree``: ``python -m`` puts the working directory before
    ``PYTHONPATH``, so run from this checkout it would import this checkout's code."""
    return {**os.environ, "PYTHONPATH": str(tree)} if tree else dict(os.environ)


def factory_names(count: int) -> list[str]:
    return ["bench"] + [f"bench{n}" for n in range(1, count)]


@contextmanager
def service(
    db: str, serve_options: list[str], log: Path, tree: Path | None, factories: int = 1
) -> Iterator[Service]:
    env = environment(tree)  # and cwd=tree: `python -m` puts the current directory before PYTHONPATH
    tokens = {}
    for factory in factory_names(factories):
        command = monitor_command(db, "add-factory", factory)
        tokens[factory] = subprocess.run(
            command, capture_output=True, text=True, check=True, timeout=120, env=env, cwd=tree
        ).stdout.strip()
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            monitor_command(db, "serve", "--host", HOST, "--port", str(port), *serve_options),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tree,
        )
    try:
        wait_until_up(port, process)
        yield Service(db, port, tokens, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def wait_until_up(port: int, process: subprocess.Popen[bytes], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the monitor exited with {process.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the monitor did not start")


@contextmanager
def database(backend: str, tmp: Path, admin_url: str) -> Iterator[str]:
    if backend == "sqlite":
        yield str(tmp / f"monitor-{uuid.uuid4().hex[:8]}.sqlite")
        return
    name = f"apfm_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield str(sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False))
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


# --- load ------------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    concurrency: int
    seconds: float = 0.0
    items: int = 0  # jobs created or events acknowledged
    latencies: list[float] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)
    reads: dict[str, list[float]] = field(default_factory=dict)  # seconds per read, by kind (READS)
    cpu: float = 0.0  # CPU seconds the service (all its processes) used in the phase
    db_cpu: float = 0.0  # and PostgreSQL's backends for it (bulk creates)

    def rate(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0

    def line(self, backend: str, path: str) -> str:
        p50, p99 = percentiles(self.latencies)
        reads = read_columns(self.reads)
        errors = " ".join(f"{code or 'none'}x{n}" for code, n in sorted(self.errors.items())) or "0"
        per_item = self.cpu / self.items * 1000 if self.items else 0.0
        db = f" + db {self.db_cpu / self.items * 1000:.3f}" if self.items and self.db_cpu else ""
        return (
            f"{backend:<10} {path:<4} {self.name:<7} c={self.concurrency:<3} {self.rate():>9.0f}/s"
            f"  p50 {p50:>6.1f} ms  p99 {p99:>7.1f} ms  cpu {per_item:.3f}{db} ms/item"
            f"  errors {errors}  {reads}"
        )


def read_columns(reads: dict[str, list[float]]) -> str:
    """``reads p50/p99 list 3/9 json 2/6 page 4/12 ms`` (the README's idle timings: ≤ 3 ms for
    one job's JSON, ≤ 10 ms for its page)."""
    if not reads:
        return ""
    cuts = {kind: percentiles(reads[kind]) for kind in READS if kind in reads}
    return (
        "reads p50/p99 "
        + " ".join(f"{kind} {p50:.0f}/{p99:.0f}" for kind, (p50, p99) in cuts.items())
        + " ms"
    )


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of ``pid`` and its children (the workers), from /proc (Linux)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # fields[1]: the parent's pid
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def database_cpu(db: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving ``db`` (on this host; none for SQLite,
    whose work is in the service's own CPU time)."""
    if "://" not in db:
        return {}
    engine = sa.create_engine(db, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        query += " AND pid <> pg_backend_pid()"
        pids = list(connection.exec_driver_sql(query).scalars())
    engine.dispose()
    return {pid: cpu_seconds_of(pid) for pid in pids}


def cpu_seconds_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0] * 1000, values[0] * 1000) if values else (0.0, 0.0)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


class Cids:
    """Fresh cluster ids, never repeated in one database."""

    def __init__(self) -> None:
        self._next = itertools.count(1)

    def take(self, n: int) -> list[str]:
        cluster = next(self._next)
        return [f"{cluster}.{proc}" for proc in range(n)]


def jobs_body(svc: Service, cids: list[str], factory: str = "") -> bytes:
    import json

    owner = factory or svc.factory
    return json.dumps([{"cid": cid, "label": "BENCH-L", "factory": owner} for cid in cids]).encode()


READS = ("list", "json", "page")


async def reader(svc: Service, cid: str, done: asyncio.Event, reads: dict[str, list[float]]) -> None:
    """Reads as people make them meanwhile, one every 0.1 s until ``done``: the factory list, a
    pilot's JSON and its page."""
    connection = Connection(svc.port)
    paths = ("/api/factories", f"/api/jobs/{svc.factory}:{cid}", f"/job/{svc.factory}:{cid}")
    for kind, path in itertools.cycle(zip(READS, paths, strict=True)):
        if done.is_set():
            break
        started = time.perf_counter()
        await connection.request("GET", path)
        reads.setdefault(kind, []).append(time.perf_counter() - started)
        await asyncio.sleep(0.1)
    connection.close()


async def idle_phase(svc: Service, cid: str, seconds: float) -> Phase:
    """The reader alone: what the reads cost without write load."""
    phase, done = Phase("idle", 0), asyncio.Event()
    task = asyncio.create_task(reader(svc, cid, done, phase.reads))
    await asyncio.sleep(seconds)
    done.set()
    await task
    return phase


async def bulk_phase(
    svc: Service, cids: Cids, concurrency: int, seconds: float, max_jobs: int, read_cid: str
) -> Phase:
    phase = Phase("create", concurrency)
    budget = itertools.count()
    stop = time.monotonic() + seconds

    async def worker() -> None:
        connection = Connection(svc.port)
        while time.monotonic() < stop and next(budget) * JOBS_PER_PUT < max_jobs:
            body = jobs_body(svc, cids.take(JOBS_PER_PUT))
            started = time.perf_counter()
            status = await connection.request("PUT", "/api/jobs", body, "application/json", svc.token)
            phase.latencies.append(time.perf_counter() - started)
            if status == 200:
                phase.items += JOBS_PER_PUT
            else:
                phase.errors[status] = phase.errors.get(status, 0) + 1
        connection.close()

    done = asyncio.Event()
    read_task = asyncio.create_task(reader(svc, read_cid, done, phase.reads))
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.seconds = time.perf_counter() - started
    done.set()
    await read_task
    return phase


async def _jobs_to_report(svc: Service, cids: Cids, per_factory: int) -> list[tuple[str, str]]:
    """``per_factory`` new jobs of every factory, created, as (factory, cid), one job of each
    factory in turn."""
    setup = Connection(svc.port)
    columns = []
    for factory, token in svc.tokens.items():
        mine = cids.take(per_factory)
        for start in range(0, len(mine), JOBS_PER_PUT):
            body = jobs_body(svc, mine[start : start + JOBS_PER_PUT], factory)
            if await setup.request("PUT", "/api/jobs", body, "application/json", token) != 200:
                raise RuntimeError("could not create the jobs for the report phase")
        columns.append([(factory, cid) for cid in mine])
    return [job for row in zip(*columns, strict=True) for job in row]


async def report_phase(
    svc: Service,
    cids: Cids,
    concurrency: int,
    seconds: float,
    max_events: int,
    acked: list[tuple[str, str, str]],
    cpu: Callable[[int], float],
    replays: int = 0,
) -> Phase:
    """Each job gets ``running`` then ``exiting`` (2 events), each sent ``1 + replays`` times at
    once; the jobs are created first, for every factory, and reported interleaved (one job of each
    factory in turn)."""
    jobs = await _jobs_to_report(svc, cids, (max_events // 2 + 1) // len(svc.tokens) + 1)
    phase = Phase("report", concurrency)
    queue = iter(jobs)
    stop = time.monotonic() + seconds
    done = asyncio.Event()

    async def worker() -> None:
        # one connection per copy: a replay races its original, as a wrapper's retry after a lost
        # answer does (with several workers the copies may be in two processes' batches at once)
        connections = [Connection(svc.port) for _ in range(1 + replays)]
        for factory, cid in queue:
            if time.monotonic() >= stop or phase.items >= max_events:
                break
            for form in ({"state": "running"}, {"state": "exiting", "rc": "0"}):
                body = urlencode(form).encode()
                path = f"/api/jobs/{factory}:{cid}"
                started = time.perf_counter()
                statuses = await asyncio.gather(
                    *(c.request("POST", path, body, "application/x-www-form-urlencoded") for c in connections)
                )
                phase.latencies.append(time.perf_counter() - started)
                if 200 in statuses:
                    phase.items += 1
                    acked.append((factory, cid, "RUNNING" if form["state"] == "running" else "EXITING"))
                for status in statuses:
                    if status != 200:
                        phase.errors[status] = phase.errors.get(status, 0) + 1
        for connection in connections:
            connection.close()

    started, cpu_before = time.perf_counter(), cpu(svc.process.pid)
    read_task = asyncio.create_task(reader(svc, jobs[0][1], done, phase.reads))
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.seconds = time.perf_counter() - started
    phase.cpu = cpu(svc.process.pid) - cpu_before
    done.set()
    await read_task
    return phase


def lost_events(db: str, acked: list[tuple[str, str, str]]) -> int:
    """Acknowledged reports without their accepted job event in the database."""
    url = db if "://" in db else "sqlite:///" + db
    engine = sa.create_engine(url)
    query = sa.text(
        "SELECT f.name, j.cid, e.new_state FROM job_events e JOIN jobs j ON j.id = e.job_id"
        " JOIN factories f ON f.id = j.factory_id WHERE e.accepted"
    )
    with engine.connect() as connection:
        stored = {(row.name, row.cid, row.new_state) for row in connection.execute(query)}
    engine.dispose()
    return sum(1 for item in acked if item not in stored)


def deadlocks(db: str) -> int | None:
    """PostgreSQL's count of deadlocks detected in ``db`` so far (None for SQLite). A backend
    flushes its counters at the latest when it exits: read this after the service stopped."""
    if "://" not in db:
        return None
    engine = sa.create_engine(db, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        query = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        found = int(connection.exec_driver_sql(query).scalar() or 0)
    engine.dispose()
    return found


async def run_one(backend: str, path: str, db: str, args: argparse.Namespace, log: Path) -> list[str]:
    tree = args.old_tree if path == "old" else None
    options = ["--no-group-commit"] if path == "old" and tree is None else []
    if backend == "postgresql" and args.workers > 1:
        options += ["--workers", str(args.workers)]
    lines = []
    acked: list[tuple[str, str, str]] = []
    deadlocks_before = deadlocks(db)
    with service(db, options, log, tree, args.factories) as svc:
        cids = Cids()
        read_cid = cids.take(1)[0]  # the pilot whose JSON and page the reader fetches
        first = jobs_body(svc, [read_cid])
        if await Connection(svc.port).request("PUT", "/api/jobs", first, JSON, svc.token) != 200:
            raise RuntimeError("could not create the job the reader fetches")
        lines.append((await idle_phase(svc, read_cid, min(args.seconds, 5.0))).line(backend, path))
        print(lines[-1], flush=True)
        for concurrency in args.bulk_concurrency:
            cpu, db_cpu = cpu_seconds(svc.process.pid), database_cpu(db)
            phase = await bulk_phase(svc, cids, concurrency, args.seconds, args.max_jobs, read_cid)
            phase.cpu = cpu_seconds(svc.process.pid) - cpu
            phase.db_cpu = sum(now - db_cpu.get(pid, 0.0) for pid, now in database_cpu(db).items())
            lines.append(phase.line(backend, path))
            print(lines[-1], flush=True)
        for concurrency in args.concurrency:
            phase = await report_phase(
                svc, cids, concurrency, args.seconds, args.max_events, acked, cpu_seconds, args.replays
            )
            lines.append(phase.line(backend, path))
            print(lines[-1], flush=True)
    lost = lost_events(db, acked)
    lines.append(f"{backend:<10} {path:<4} lost-event check: {len(acked)} acknowledged reports, {lost} lost")
    print(lines[-1], flush=True)
    found = deadlocks(db)
    if found is not None and deadlocks_before is not None:
        lines.append(f"{backend:<10} {path:<4} deadlocks detected by PostgreSQL: {found - deadlocks_before}")
        print(lines[-1], flush=True)
    return lines


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--paths", default="old,new", help="old: one transaction per request; new: group commit"
    )
    parser.add_argument("--concurrency", type=numbers, default=[1, 16, 64], help="pilot reports [1,16,64]")
    parser.add_argument("--bulk-concurrency", type=numbers, default=[1, 16], help="bulk creates [1,16]")
    parser.add_argument("--seconds", type=float, default=10.0, help="longest phase [10]")
    parser.add_argument("--max-events", type=int, default=30000, help="reports per phase, at most [30000]")
    parser.add_argument("--max-jobs", type=int, default=300000, help="jobs created per phase, at most")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes on PostgreSQL, both paths [1]"
    )
    parser.add_argument("--factories", type=int, default=1, help="factories whose pilots report at once [1]")
    parser.add_argument(
        "--replays",
        type=int,
        default=0,
        help="copies of each report sent at the same time as it, as retrying wrappers do [0]",
    )
    parser.add_argument("--pg-admin", default=PG_ADMIN, help="PostgreSQL where a scratch database is made")
    parser.add_argument(
        "--old-tree",
        type=Path,
        help="run the old path from this checkout (e.g. the commit before group commit) instead of"
        " this one with --no-group-commit",
    )
    args = parser.parse_args()
    args.seconds = min(args.seconds, 120.0)
    args.old_tree = args.old_tree.resolve() if args.old_tree else None
    return args


async def main() -> int:
    args = parse_args()
    lines = [f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start"]
    print(lines[0], flush=True)
    with tempfile.TemporaryDirectory(prefix="monitor-load-") as tmp:
        log = Path(tmp) / "monitor.log"
        for backend in args.backends.split(","):
            for path in args.paths.split(","):
                with database(backend, Path(tmp), args.pg_admin) as db:
                    lines += await run_one(backend, path, db, args, log)
        if any(" 0 lost" not in line for line in lines if "lost-event" in line):
            print(log.read_text()[-4000:])
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
