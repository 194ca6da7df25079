"""End to end against PanDA's lag: the real ``autopyfactory run --once``, cycle by cycle, against
the HTCondor emulator and a PanDA stand-in with the real server's semantics.

PanDA (:mod:`autopyfactory.demo.panda_standin`): a live job table; getJob gives a pilot a job of
its site that its job label and resource type match, and the job leaves ``activated`` at once in
the table, but the statistics come from a snapshot refreshed only every ``REFRESH`` seconds
(ATLAS: 120), so the factory sees it still activated until then.

Time is virtual and driven by the test, never raced: one step is one factory cycle, then
``SLEEP`` seconds in which the batch system starts every queued pilot half-way (a queue wait of
30 s) and each started pilot asks PanDA for a job with the ``-j`` and ``--resource-type`` it was
submitted with; a pilot without a job ends at once, one with a job runs ``JOB_SECONDS``.
The emulator's job ads are aged by the step's seconds, so the factory's own clock (``pandaLag``
counted back from its cycle's start) sees the pilots' ages as virtual time.
"""

from __future__ import annotations

import copy
import re
import shlex
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from autopyfactory.demo import panda_standin as ps
from tests.support.condor_emulator.ads import JobStatus
from tests.support.e2e import DUMP, Stand, run, write_config

pytestmark = pytest.mark.timeout(300)  # 32 real cycles on a loaded machine

REFRESH = 120  # PanDA's statistics refresh (ATLAS's Oracle)
SLEEP = 60  # seconds between two cycles
JOB_SECONDS = 600
OURS = 'FactoryId == "e2e-factory"'


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    """PanDA's job table and what became of every pilot the factory sent."""

    stand: Stand
    condor: object
    table: ps.JobTable = field(default_factory=ps.JobTable)
    clock: VirtualClock = field(default_factory=VirtualClock)
    pilots: Counter[str] = field(default_factory=Counter)  # by PQ
    empty: Counter[str] = field(default_factory=Counter)
    idle: Counter[str] = field(default_factory=Counter)  # Classic's idle pilots, sent for no job
    ending: dict[str, float] = field(default_factory=dict)  # running job id -> virtual end

    def __post_init__(self) -> None:
        self.lag = ps.Lag(REFRESH, self.clock)
        self.status = {pq: record["status"] for pq, record in self.stand.dump.items()}

    def cycle(self, conf: Path) -> None:
        """PanDA's answer as of now (its lagging snapshot), then one real factory cycle."""
        self.stand.jobs = self.lag.view(self.table.jobs())
        log = run(conf, self.condor, "--once").stderr
        for pq, n in re.findall(r" pq=(\S+) .* submitted=(\d+).*\| Classic: .* idle pilot -> 1$", log, re.M):
            self.idle[pq] += int(n)

    def batch(self) -> None:
        """The SLEEP seconds after a cycle: the queued pilots start half-way and ask for a job."""
        self._advance(SLEEP / 2)
        for ad in self.condor.jobs():  # type: ignore[attr-defined]
            if ad["JobStatus"] == JobStatus.IDLE:
                job_id = f"{ad['ClusterId']}.{ad['ProcId']}"
                self.condor.set_status(job_id, JobStatus.RUNNING)  # type: ignore[attr-defined]
                self._get_job(job_id, ad)
        self._advance(SLEEP / 2)

    def _get_job(self, job_id: str, ad: dict[str, object]) -> None:
        pq = str(ad["APF_PANDA_QUEUE"])
        words = shlex.split(str(ad["Arguments"]))
        asked = words[words.index("-j") + 1]
        rt = words[words.index("--resource-type") + 1] if "--resource-type" in words else None
        self.pilots[pq] += 1
        if self.table.get_job(pq, asked, rt, self.status[pq]) is None:
            self.empty[pq] += 1
            self.condor.complete(job_id)  # type: ignore[attr-defined]
        else:
            self.ending[job_id] = self.clock.now + JOB_SECONDS

    def _advance(self, seconds: float) -> None:
        self.clock.now += seconds
        if self.condor.jobs():  # type: ignore[attr-defined]
            self.condor.age(OURS, seconds)  # type: ignore[attr-defined]
        for job_id, end in list(self.ending.items()):
            if end <= self.clock.now:
                self.condor.complete(job_id)  # type: ignore[attr-defined]
                del self.ending[job_id]


@pytest.fixture
def world(stand, condor) -> World:
    dump = copy.deepcopy(DUMP)
    dump["TEST-SITE"].update(type="analysis", status="online")  # one CE, pilots ask -j user
    dump["LEGACY-SITE"]["status"] = "online"
    stand.dump = dump
    return World(stand, condor)


QUEUES = """
[NDGF-T1]
[TEST-SITE]
[LEGACY-SITE]
pilotType = RC
"""


@pytest.mark.parametrize("chain", ["Ready", "Classic"])
def test_bursts_against_the_panda_lag(tmp_path, world, chain):
    """Two bursts (30 + 20 production jobs) at a unified queue with two CEs, 10 user jobs at an
    analysis queue, 25 managed jobs at a queue served by RC pilots; the idle pilot aside (Classic
    keeps one queued per CE when there are no jobs, which finds none when it starts)."""
    conf = write_config(tmp_path, world.stand, QUEUES, defaults=f"schedplugin = {chain}\n")
    conf.write_text(conf.read_text().replace("nqueue = 5\n", "nqueue = 50\n"))
    world.table.add("NDGF-T1", 30)
    world.table.add("TEST-SITE", 10, label="user")
    world.table.add("LEGACY-SITE", 25)  # managed jobs: not for rc_test2 pilots
    for step in range(16):
        if step == 7:
            world.table.add("NDGF-T1", 20, "MCORE")
        world.cycle(conf)
        world.batch()
    left = {kind: n for kind, n in world.table.activated.items() if n}
    assert left == {("LEGACY-SITE", "SCORE", "managed"): 25}  # every job taken but the RC queue's
    pilots = {pq: world.pilots[pq] - world.idle[pq] for pq in ("NDGF-T1", "TEST-SITE", "LEGACY-SITE")}
    empty = {pq: max(0, world.empty[pq] - world.idle[pq]) for pq in pilots}
    assert pilots["NDGF-T1"] <= 1.1 * 50, (world.pilots, world.idle)
    assert empty["NDGF-T1"] <= 0.1 * pilots["NDGF-T1"], (world.empty, world.pilots, world.idle)
    assert (pilots["TEST-SITE"], empty["TEST-SITE"]) == (10, 0)  # the analysis pilots took the user jobs
    assert pilots["LEGACY-SITE"] == 0  # no RC pilot sent for managed jobs
    if chain == "Ready":
        assert not world.idle
