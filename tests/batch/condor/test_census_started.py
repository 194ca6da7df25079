"""The census's count of pilots that started within pandaLag (``Supply.started``): from
``condor_q -json`` shapes seen on a real HTCondor 25.0 pool, and through the backend against the
emulator."""

from __future__ import annotations

import json
import time

import pytest

from autopyfactory.batch.condor.backend import CondorBackend
from autopyfactory.batch.condor.census import CENSUS_ATTRIBUTES, read_census
from autopyfactory.batch.condor.command import Schedd
from autopyfactory.domain.model import Supply
from tests.support.cycle_data import planning_labels

NOW = 1_796_566_200
LAG = 120

# What condor_q -json printed on a real 25.0 pool (times relative to NOW): an HTCondor-C pilot
# whose CE started it 10 s before the gridmanager saw it running, a vanilla pilot, an idle one.
GRID_RUNNING = {"JobStatus": 2, "JobCurrentStartDate": NOW - 130, "EnteredCurrentStatus": NOW - 120}
VANILLA_RUNNING = {"JobStatus": 2, "JobCurrentStartDate": NOW - 60, "EnteredCurrentStatus": NOW - 60}
IDLE = {"JobStatus": 1, "EnteredCurrentStatus": NOW - 10}


def answer(*ads: dict[str, object]) -> str:
    base = {"ClusterId": 7, "MATCH_APF_QUEUE": "L", "QDate": NOW - 600}
    return json.dumps([{**base, "ProcId": i, **ad} for i, ad in enumerate(ads)])


@pytest.mark.parametrize(
    ("ads", "started"),
    [
        ((VANILLA_RUNNING,), 1),
        ((GRID_RUNNING,), 1),  # the later of the two times: the gridmanager saw it 120 s ago
        ((dict(GRID_RUNNING, EnteredCurrentStatus=NOW - 121),), 0),
        ((dict(VANILLA_RUNNING, JobCurrentStartDate=NOW - 500, EnteredCurrentStatus=NOW - 400),), 0),
        (({"JobStatus": 2},), 1),  # no start time at all: it may just have taken a job
        (({"JobStatus": 2, "JobCurrentStartDate": None, "EnteredCurrentStatus": NOW - 5},), 1),
        ((IDLE, {"JobStatus": 5, "EnteredCurrentStatus": NOW}), 0),  # only running pilots started
        ((VANILLA_RUNNING, GRID_RUNNING, IDLE), 2),
    ],
)
def test_running_pilots_started_within_the_lag(ads, started):
    census = read_census(answer(*ads), "condor_q", started_since=NOW - LAG)
    assert census.supply["L"].started == started
    assert census.supply["L"].started <= census.supply["L"].running


def test_without_a_threshold_nothing_counts_as_started():
    assert read_census(answer(VANILLA_RUNNING), "condor_q").supply["L"] == Supply(running=1)


def test_the_census_asks_for_the_start_date():
    assert {"JobCurrentStartDate", "EnteredCurrentStatus"} <= set(CENSUS_ATTRIBUTES)


def test_the_backend_counts_started_pilots_in_the_emulator(tmp_path, condor):
    """HTCondor-C pilots started by the CE at different times, as a gridmanager reports them."""
    label = next(lb for lb in planning_labels(tmp_path) if lb.pq == "NDGF-T1")
    sub = (
        "universe = grid\ngrid_resource = condor ce ce:9619\nexecutable = /bin/true\n"
        f'+FactoryId = "test-factory"\n+MATCH_APF_QUEUE = "{label.name}"\nqueue 4\n'
    )
    ids = condor.submit(sub)
    now = time.time()
    condor.set_status(ids[0], 2, at=now - 30, started=now - 40)  # just started
    condor.set_status(ids[1], 2, at=now - 100, started=now - 400)  # seen running 100 s ago: still counts
    condor.set_status(ids[2], 2, at=now - 300)  # started long ago: its job left activated
    backend = CondorBackend("test-factory", Schedd("", ""), timeout=10)
    census = backend.census([label], started_since=now - LAG)
    assert census.supply[label.name] == Supply(idle=1, running=3, started=2)
    condor.age(ids[0], 200)
    assert backend.census([label], started_since=time.time() - LAG).supply[label.name].started == 1
