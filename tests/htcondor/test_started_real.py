"""Pilots that just started, on a real pool: HTCondor-C pilots run by the CE schedd count against
PanDA's lagging ``activated`` while they are within ``pandaLag`` (the census reads the later of
``JobCurrentStartDate`` and ``EnteredCurrentStatus``, what the real gridmanager sets)."""

from __future__ import annotations

import re

import pytest

from tests.support.htcondor_pool import HTCondorPool
from tests.support.real_stand import RUNNING, RealStand, ours

pytestmark = [pytest.mark.htcondor, pytest.mark.timeout(400)]  # a loaded machine: generous


def test_htcondor_c_pilots_that_just_started_stand_for_their_jobs(
    real_condor: HTCondorPool, httpserver
) -> None:
    stand = RealStand(real_condor, httpserver, "started")
    sleeper = stand.work / "sleeper.sh"
    sleeper.write_text("#!/bin/sh\nsleep 300\n")
    sleeper.chmod(0o755)
    stand.dump = {"GRIDPQ": stand.ce_record("GRIDPQ")}
    stand.stats = {"GRIDPQ": {"activated": 3, "assigned": 0, "running": 0}}
    conf = stand.write_config("[GRIDPQ]", defaults={"executable": sleeper, "schedplugin": "Ready"})
    stand.cycle(conf)
    running = real_condor.wait_for(
        lambda: (
            (pilots := ours(real_condor.jobs())) and all(p["JobStatus"] == RUNNING for p in pilots) and pilots
        ),
        timeout=240,
        what="the three HTCondor-C pilots running at the CE",
    )
    assert len(running) == 3
    for ad in real_condor.jobs():  # what the census reads, as the gridmanager set it
        if ad.get("MATCH_APF_QUEUE"):
            assert isinstance(ad["JobCurrentStartDate"], int)
            assert isinstance(ad["EnteredCurrentStatus"], int)
            assert ad["JobCurrentStartDate"] <= ad["EnteredCurrentStatus"]

    # PanDA's snapshot still says 3 activated: the pilots that just took them stand for them
    lagging = stand.cycle(conf, "--dry-run")
    line = re.search(r" GRIDPQ-\S+ pq=GRIDPQ .*$", lagging.stderr, re.M)
    assert line, lagging.stderr
    assert "running=3 held=0 started=3 decision=0" in line[0], lagging.stderr
    assert "Ready: in=0 activated=3 offset=0 pending=0 started=3 -> 0" in line[0]

    # without the correction the same cycle would send three more pilots for jobs already taken
    unlagged = stand.write_config(
        "[GRIDPQ]", defaults={"executable": sleeper, "schedplugin": "Ready"}, factory="pandaLag = 0"
    )
    blind = stand.cycle(unlagged, "--dry-run")
    assert "running=3 held=0 started=0 decision=3" in blind.stderr, blind.stderr
