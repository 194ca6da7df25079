"""Pilot efficiency: how many pilots the factory's decisions send, how many find no job, and how
long the jobs wait, against PanDA's real semantics (docs/policy.md quotes the table).

Run by hand::

    python benchmarks/pilot_efficiency.py [--base COMMIT] [--chain Classic,Ready] [--refresh 120]
        [--scenario NAME ...] [--seed 1] [--json]

A discrete-event simulation in virtual time. Each engine decides cycle by cycle (every
``SLEEP`` s, the factory's default ``sleep``) from what a real factory would see then:

* **PanDA** (the real server's semantics, panda_standin.py): a live job table; the statistics
  the factory reads are a snapshot refreshed every ``--refresh`` s (120 at ATLAS, 60 on
  PostgreSQL; ``assigned``, which the factory does not use, is live); with no job left at all the
  answer is ``success: false`` (a drained PanDA): no data, no pilots. getJob gives a pilot the
  oldest activated job of its site that its job label (panda_standin.getjob_labels, written from
  the server's ``acquire_jobs`` and ``construct_where_clause``) and resource type match.
* **the batch system**: a pilot waits in the queue (``wait``, uniform between the scenario's
  bounds), starts, needs ``STARTUP`` s to ask for a job (pilot 3 reads its queue data first),
  takes one matching job and runs it (``job_seconds``) or ends empty ``EMPTY_SECONDS`` later. The
  census sees pilots idle (queued) and running, and those started within ``pandaLag``.

Engines, side by side in one run on the same arrivals:

* ``new``: this tree's :func:`~autopyfactory.domain.planning.plan` (labels, shares, policies,
  caps) on labels the real configuration code builds from the scenario's factory.conf and CRIC
  records;
* ``old``: the same on the tree of ``--base`` (default: the merge base with main), exported with
  ``git archive`` and run in a subprocess with that tree first on PYTHONPATH, same factory.conf;
* ``apf1``: an APF-1-style Classic loop: one label per CE, the PQ's activated jobs (every job
  label and resource type) shared by its CEs, ``nqueue`` pilots while pending < nqueue (or
  activated > pending and pending < nqueue x depthboost), one idle pilot every cycle without
  jobs, pilots asking ``-j managed`` without a resource type; no correction for the lag;
* ``best``: one pilot per job the moment it is activated: its wait is the pilot's queue wait and
  start-up, the least any factory can do (reported as the best p95).

Reported per scenario and chain: pilots, empty pilots (% of the pilots, and in brackets the
share of the pilots that were Classic's idle pilots, sent for no job and empty by design), jobs
never taken, job wait (activated -> taken) p50/p95 in minutes, for each engine.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import importlib.util
import io
import json
import math
import os
import random
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SLEEP = 120  # seconds between two factory cycles (the default ``sleep``)
STARTUP = 60  # seconds from a pilot's start to its getJob
EMPTY_SECONDS = 120  # a pilot without a job ends this long after its getJob
HOUR = 3600


def _standin() -> Any:
    """panda_standin.py of this tree, loaded by path (the ``old`` engine's tree has an older one)."""
    spec = importlib.util.spec_from_file_location(
        "apf_bench_standin", REPO / "autopyfactory/demo/panda_standin.py"
    )
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PANDA = _standin()

# --- scenarios -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    at: float
    site: str
    n: int
    resource_type: str = "SCORE"
    label: str = "managed"


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    queues: str  # factory.conf queue sections
    records: Mapping[str, Mapping[str, Any]]  # CRIC panda-queue records by PQ
    arrivals: tuple[Arrival, ...]
    duration: float
    wait: tuple[float, float] = (120, 600)  # queue wait bounds, seconds
    job_seconds: float = 1800


def record(
    pq: str, queue_type: str = "production", ces: int = 1, cores: int = 1, rss: int = 2000
) -> dict[str, Any]:
    return {
        "nickname": pq, "siteid": pq, "panda_resource": pq, "cloud": "XX", "status": "online",
        "type": queue_type, "corecount": cores, "maxrss": rss, "maxtime": 172800,
        "queues": [
            {"ce_endpoint": f"ce{i:02}.{pq.lower()}.example:9619", "ce_flavour": "HTCONDOR-CE",
             "ce_queue_name": "q", "ce_state": "ACTIVE", "ce_status": "production"}
            for i in range(ces)
        ],
    }  # fmt: skip


def poisson(rng: random.Random, rate_per_hour: float, start: float, end: float, **kind: Any) -> list[Arrival]:
    """Single jobs arriving at random at ``rate_per_hour``."""
    out, t = [], start
    while True:
        t += rng.expovariate(rate_per_hour / HOUR)
        if t >= end:
            return out
        out.append(Arrival(t, n=1, **kind))


def scenarios(seed: int) -> list[Scenario]:
    rng = random.Random(seed)
    steady = poisson(rng, 60, 0, 4 * HOUR, site="PROD")
    mixed = [
        *poisson(rng, 40, 0, 4 * HOUR, site="UNI"),
        *(Arrival(h * HOUR + 600, "UNI", 25, "MCORE") for h in range(4)),
        Arrival(1800, "UNI", 3, "SCORE_HIMEM"),
    ]
    site = [
        *poisson(rng, 40, 0, 4 * HOUR, site="SITE"),
        *poisson(rng, 30, 0, 4 * HOUR, site="SITE_ANALY", label="user"),
        Arrival(3600, "SITE", 5, label="rc_test2"),
        Arrival(2 * HOUR, "SITE", 25, label="managed"),
    ]
    return [
        Scenario(
            "steady", "60 jobs/h for 4 h, 2 CEs", "[PROD]\n", {"PROD": record("PROD", ces=2)}, tuple(steady),
            5 * HOUR,
        ),
        Scenario(
            "bursts", "85, 60 and 40 jobs an hour apart, 3 CEs", "[PROD]\n", {"PROD": record("PROD", ces=3)},
            (Arrival(600, "PROD", 85), Arrival(HOUR + 600, "PROD", 60), Arrival(2 * HOUR + 600, "PROD", 40)),
            4 * HOUR, job_seconds=1200,
        ),
        Scenario(
            "drain-refill", "200 jobs, drained for 2 h (PanDA: success false), 100 more, 2 CEs", "[PROD]\n",
            {"PROD": record("PROD", ces=2)}, (Arrival(300, "PROD", 200), Arrival(4 * HOUR, "PROD", 100)),
            6 * HOUR, job_seconds=1200,
        ),
        Scenario(
            "score-mcore", "unified queue, resourceTypes = auto: SCORE stream, MCORE bursts, 3 HIMEM",
            "[UNI]\nresourceTypes = auto\n", {"UNI": record("UNI", "unified", ces=2, cores=8, rss=32000)},
            tuple(mixed), 5 * HOUR,
        ),
        Scenario(
            "prod-analy-rc", "one site: production and analysis queues, RC pilots on the production one",
            "[SITE]\n[SITE_ANALY]\n[SITE_RC]\nwmsqueue = SITE\npilotType = RC\n",
            {"SITE": record("SITE"), "SITE_ANALY": record("SITE_ANALY", "analysis")}, tuple(site), 5 * HOUR,
        ),
        Scenario(
            "many-ces", "13 CEs: 21 jobs every 20 min, 60 jobs/h between", "[CERN]\n",
            {"CERN": record("CERN", ces=13)},
            (*(Arrival(t * 1200 + 60, "CERN", 21) for t in range(12)), *poisson(rng, 60, 0, 4 * HOUR,
                                                                                  site="CERN")),
            5 * HOUR,
        ),
    ]  # fmt: skip


# --- the PanDA and batch models ----------------------------------------------------------------------

Kind = tuple[str, str, str]  # (site, resource type, job label)


@dataclass
class Job:
    kind: Kind
    activated: float
    taken: float | None = None


@dataclass
class Pilot:
    label: str
    site: str
    asked: str  # the job label it asks for (-j)
    resource_type: str | None
    submitted: float
    idle: bool = False  # sent as an idle pilot, for no job
    started: float | None = None
    ended: float | None = None
    job: Job | None = None


@dataclass
class Panda:
    """The live job table and the lagging snapshot the statistics come from."""

    refresh: float
    status: Mapping[str, str]
    activated: dict[Kind, list[Job]] = field(default_factory=dict)
    running: Counter[Kind] = field(default_factory=Counter)
    snapshot: dict[Kind, tuple[int, int]] = field(default_factory=dict)  # (activated, running)

    def add(self, job: Job) -> None:
        self.activated.setdefault(job.kind, []).append(job)

    def take_snapshot(self) -> None:
        kinds = set(self.activated) | set(self.running)
        self.snapshot = {k: (len(self.activated.get(k, ())), self.running[k]) for k in kinds}

    def get_job(self, pilot: Pilot, now: float) -> Job | None:
        labels = PANDA.getjob_labels(pilot.asked, self.status.get(pilot.site, "online"))
        matching = [
            jobs[0]
            for (site, rt, label), jobs in self.activated.items()
            if jobs and site == pilot.site and label in labels and pilot.resource_type in (None, rt)
        ]
        if not matching:
            return None
        job = min(matching, key=lambda j: j.activated)
        self.activated[job.kind].pop(0)
        self.running[job.kind] += 1
        job.taken = now
        return job

    def statistics(self) -> dict[str, dict[str, dict[str, dict[str, int]]]] | None:
        """The detailed answer as of the last refresh; None when PanDA has no job at all (its
        ``success: false``)."""
        detail: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
        for (site, rt, label), (activated, running) in self.snapshot.items():
            if activated or running:
                detail.setdefault(site, {}).setdefault(rt, {})[label] = {
                    "activated": activated, "assigned": 0, "running": running,
                }  # fmt: skip
        return detail or None


# --- engines -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelInfo:
    name: str
    pq: str
    asked: str
    resource_type: str | None


@dataclass(frozen=True)
class Counts:
    idle: int
    running: int
    started: int  # running, started within pandaLag


#: per label: the pilots decided, and whether they are an idle pilot (sent for no job)
Decisions = dict[str, tuple[int, bool]]


class FactoryEngine:
    """The factory's own decision code (whichever tree is first on sys.path)."""

    def __init__(self, scenario: Scenario, chain: str, work: Path) -> None:
        from autopyfactory.config import loader
        from autopyfactory.config.autoconfigure import build_labels

        conf = work / "factory.conf"
        conf.write_text(factory_conf(scenario, chain))
        loaded = loader.load(conf)
        if loaded.errors:
            raise SystemExit(f"{scenario.name}: {loaded.errors[0]}")
        result = build_labels(loaded, dict(scenario.records))
        if result.problems:
            raise SystemExit(f"{scenario.name}: {result.problems[0]}")
        self.labels = result.labels
        self.lag = float(getattr(loaded.factory.panda, "lag", 0))
        self.info = [LabelInfo(lb.name, lb.pq, lb.pilot.job_label, lb.resource_type) for lb in self.labels]

    def decide(self, cycle: int, detail: Any, counts: Mapping[str, Counts]) -> Decisions:
        from autopyfactory.domain.demand import SiteJobs
        from autopyfactory.domain.model import Census, Supply
        from autopyfactory.domain.planning import plan
        from autopyfactory.domain.sharing import FactoryCaps

        lagging = "started" in {f.name for f in dataclasses.fields(Supply)}
        supply = {
            name: Supply(c.idle, c.running, 0, None, c.started) if lagging else Supply(c.idle, c.running)
            for name, c in counts.items()
        }
        stats = None if detail is None else {site: SiteJobs(_totals(d), d) for site, d in detail.items()}
        census = Census(supply, sum(c.idle + c.running for c in counts.values()))
        plans = plan(self.labels, stats, census, 1, FactoryCaps(), cycle)
        return {p.label.name: (p.decision.n, _idle_pilot(p.decision.steps)) for p in plans}


def _idle_pilot(steps: Sequence[Any]) -> bool:
    return any(step.plugin == "Classic" and step.reason.endswith("idle pilot") for step in steps)


def _totals(detail: Mapping[str, Mapping[str, Mapping[str, int]]]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for by_label in detail.values():
        for by_status in by_label.values():
            totals.update(by_status)
    return dict(totals)


def factory_conf(scenario: Scenario, chain: str) -> str:
    """The scenario's factory.conf: defaults everywhere but the chain."""
    return f"""[Factory]
factoryId = bench
factoryOwner = bench@example.org
pandaserver = https://panda.example.org:25443
schedconfig = /dev/null
[QueueDefaults]
schedplugin = {chain}
{scenario.queues}"""


class Apf1Engine:
    """APF 1.x's Classic: nqueue/depthboost on the PQ's activated count shared by its CEs."""

    NQUEUE, DEPTHBOOST = 20, 2

    def __init__(self, scenario: Scenario) -> None:
        self.lag = 0.0
        self.info = []
        for section in scenario.queues.split("[")[1:]:
            name, _, rest = section.partition("]")
            pq = next((line.split("=")[1].strip() for line in rest.splitlines() if "wmsqueue" in line), name)
            ces = len(scenario.records[pq]["queues"])
            asked = "rc_test2" if "pilotType = RC" in rest else "managed"
            self.info += [LabelInfo(f"{name}-ce{i:02}", pq, asked, None) for i in range(ces)]

    def decide(self, cycle: int, detail: Any, counts: Mapping[str, Counts]) -> Decisions:
        if detail is None:
            return {}
        by_pq: dict[str, list[LabelInfo]] = {}
        for info in self.info:
            by_pq.setdefault(info.pq, []).append(info)
        wanted = {}
        for pq, members in by_pq.items():
            activated = _totals(detail.get(pq, {})).get("activated", 0)
            for i, info in enumerate(members):
                share = activated // len(members) + (1 if i < activated % len(members) else 0)
                wanted[info.name] = (self._classic(share, counts[info.name].idle), share == 0)
        return wanted

    def _classic(self, activated: int, pending: int) -> int:
        if activated > 0:
            deep = activated > pending and pending < self.NQUEUE * self.DEPTHBOOST
            return self.NQUEUE if pending < self.NQUEUE or deep else 0
        return 1 if pending < self.NQUEUE else 0


# --- the simulation -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    pilots: int
    empty: int
    idle_empty: int  # empty pilots that were idle pilots
    left: int
    waits: list[float]

    def row(self) -> dict[str, Any]:
        return {
            "pilots": self.pilots,
            "empty": self.empty,
            "empty_pct": 100 * self.empty / self.pilots if self.pilots else 0.0,
            "idle_empty_pct": 100 * self.idle_empty / self.pilots if self.pilots else 0.0,
            "left": self.left,
            "p50": percentile(self.waits, 50),
            "p95": percentile(self.waits, 95),
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile in minutes (nearest rank); nan without values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))] / 60


class Simulation:
    def __init__(
        self, scenario: Scenario, engine: FactoryEngine | Apf1Engine, refresh: float, seed: int
    ) -> None:
        self.scenario, self.engine = scenario, engine
        status = {pq: str(r.get("status", "online")) for pq, r in scenario.records.items()}
        self.panda = Panda(refresh, status)
        self.rng = random.Random(seed)
        self.info = {info.name: info for info in engine.info}
        self.pilots: list[Pilot] = []
        self.jobs: list[Job] = []
        self.events: list[tuple[float, int, str, Any]] = []
        self._order = 0

    def _at(self, t: float, what: str, item: Any = None) -> None:
        self._order += 1
        heapq.heappush(self.events, (t, self._order, what, item))

    def run(self) -> Outcome:
        s = self.scenario
        for arrival in s.arrivals:
            self._at(arrival.at, "arrive", arrival)
        phase = self.rng.uniform(0, self.panda.refresh)
        for t in _times(phase, self.panda.refresh, s.duration):
            self._at(t, "refresh")
        for cycle, t in enumerate(_times(30.0, SLEEP, s.duration)):
            self._at(t, "cycle", cycle)
        while self.events:
            t, _, what, item = heapq.heappop(self.events)
            if t > s.duration and what in ("arrive", "cycle", "refresh"):
                continue
            getattr(self, f"_{what}")(t, item)
        return self._outcome()

    def _arrive(self, t: float, arrival: Arrival) -> None:
        for _ in range(arrival.n):
            job = Job((arrival.site, arrival.resource_type, arrival.label), t)
            self.jobs.append(job)
            self.panda.add(job)

    def _refresh(self, _t: float, _item: None) -> None:
        self.panda.take_snapshot()

    def _cycle(self, t: float, cycle: int) -> None:
        counts = self._census(t)
        for name, (n, idle) in self.engine.decide(cycle, self.panda.statistics(), counts).items():
            info = self.info[name]
            for _ in range(n):
                pilot = Pilot(name, info.pq, info.asked, info.resource_type, t, idle)
                self.pilots.append(pilot)
                self._at(t + self.rng.uniform(*self.scenario.wait), "start", pilot)

    def _census(self, t: float) -> dict[str, Counts]:
        idle: Counter[str] = Counter()
        running: Counter[str] = Counter()
        started: Counter[str] = Counter()
        for pilot in self.pilots:
            if pilot.ended is not None:
                continue
            if pilot.started is None:
                idle[pilot.label] += 1
            else:
                running[pilot.label] += 1
                started[pilot.label] += pilot.started >= t - self.engine.lag
        return {name: Counts(idle[name], running[name], started[name]) for name in self.info}

    def _start(self, t: float, pilot: Pilot) -> None:
        pilot.started = t
        self._at(t + STARTUP, "getjob", pilot)

    def _getjob(self, t: float, pilot: Pilot) -> None:
        pilot.job = self.panda.get_job(pilot, t)
        self._at(t + (self.scenario.job_seconds if pilot.job else EMPTY_SECONDS), "end", pilot)

    def _end(self, t: float, pilot: Pilot) -> None:
        pilot.ended = t
        if pilot.job is not None:
            self.panda.running[pilot.job.kind] -= 1

    def _outcome(self) -> Outcome:
        taken = [j.taken - j.activated for j in self.jobs if j.taken is not None]
        empty = [p for p in self.pilots if p.started is not None and p.job is None]
        idle = sum(1 for p in empty if p.idle)
        return Outcome(len(self.pilots), len(empty), idle, len(self.jobs) - len(taken), taken)


def _times(first: float, every: float, until: float) -> Iterator[float]:
    t = first
    while t <= until:
        yield t
        t += every


def best_waits(scenario: Scenario, seed: int) -> list[float]:
    """One pilot per job the moment it is activated: its queue wait and start-up."""
    rng = random.Random(seed)
    return [rng.uniform(*scenario.wait) + STARTUP for a in scenario.arrivals for _ in range(a.n)]


# --- running it ----------------------------------------------------------------------------------------


def run_engine(
    kind: str, chains: Sequence[str], refresh: float, seed: int, names: Sequence[str]
) -> dict[str, Any]:
    """Every scenario and chain with one engine: {scenario: {chain: row}}."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as work:
        for scenario in scenarios(seed):
            if names and scenario.name not in names:
                continue
            for chain in chains:
                engine = (
                    Apf1Engine(scenario) if kind == "apf1" else FactoryEngine(scenario, chain, Path(work))
                )
                outcome = Simulation(scenario, engine, refresh, seed).run()
                results.setdefault(scenario.name, {})[chain] = outcome.row()
    return results


def old_engine(
    base: str, chains: Sequence[str], refresh: float, seed: int, names: Sequence[str]
) -> dict[str, Any]:
    """The ``new`` engine's run on the tree of ``base``, in a subprocess with that tree first."""
    with tempfile.TemporaryDirectory() as tree:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", base], check=True, capture_output=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        env = {**os.environ, "PYTHONPATH": tree}
        args = [sys.executable, __file__, "--engine", "new", "--chain", ",".join(chains),
                "--refresh", str(refresh), "--seed", str(seed),
                *(a for name in names for a in ("--scenario", name))]  # fmt: skip
        out = subprocess.run(args, env=env, check=True, capture_output=True, text=True, cwd=tree).stdout
        results: dict[str, Any] = json.loads(out)
        return results


def merge_base() -> str:
    found = subprocess.run(
        ["git", "-C", str(REPO), "merge-base", "HEAD", "main"], capture_output=True, text=True, check=True
    )
    return found.stdout.strip()


def table(engines: Mapping[str, Mapping[str, Any]], chains: Sequence[str], seed: int) -> str:
    names = [s for s in scenarios(seed) if s.name in engines["new"]]
    header = (
        "| scenario | chain | "
        + " | ".join(f"{e}: pilots, empty % (idle pilots), left, wait p50/p95 min" for e in engines)
        + " | best p95 |"
    )
    lines = [header, "|" + " --- |" * (len(engines) + 3)]
    for scenario in names:
        best = percentile(best_waits(scenario, seed), 95)
        for chain in chains:
            cells = [_cell(engines[e][scenario.name][chain]) for e in engines]
            lines.append(f"| {scenario.name} | {chain} | " + " | ".join(cells) + f" | {best:.0f} |")
    return "\n".join(lines)


def _cell(row: Mapping[str, Any]) -> str:
    empty = f"{row['empty_pct']:.0f} % ({row['idle_empty_pct']:.0f} idle)"
    return f"{row['pilots']}, {empty}, {row['left']}, {row['p50']:.0f}/{row['p95']:.0f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", help="the previous code's commit (default: merge-base HEAD main)")
    parser.add_argument("--chain", default="Classic,Ready", help="policy chains, comma-separated")
    parser.add_argument("--refresh", type=float, default=120.0, help="PanDA's statistics refresh, s [120]")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenario", action="append", default=[], help="only these scenarios")
    parser.add_argument("--engine", choices=("new", "apf1"), help=argparse.SUPPRESS)  # one engine, JSON
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    chains = [c.strip() for c in args.chain.split(",") if c.strip()]
    if args.engine:
        print(json.dumps(run_engine(args.engine, chains, args.refresh, args.seed, args.scenario)))
        return 0
    engines = {
        "new": run_engine("new", chains, args.refresh, args.seed, args.scenario),
        "old": old_engine(args.base or merge_base(), chains, args.refresh, args.seed, args.scenario),
        "apf1": run_engine("apf1", chains, args.refresh, args.seed, args.scenario),
    }
    if args.json:
        print(json.dumps(engines, indent=1))
    else:
        print(
            f"PanDA refresh {args.refresh:g} s, factory cycle {SLEEP} s, pilot start-up {STARTUP} s,"
            f" seed {args.seed}"
        )
        print(table(engines, chains, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
