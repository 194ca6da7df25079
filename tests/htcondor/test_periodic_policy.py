"""The factory's periodic_hold on a real pool: what the gridmanager and a schedd restart do to it.

1. A grid pilot whose whole run on the CE falls between two gridmanager polls must complete,
   not be held: the gridmanager copies ``NumJobStarts = 1`` from the CE while the local
   ``JobStatus`` is still idle.
2. A vanilla pilot survives a schedd restart (reconnect: a new shadow, ``JobRunCount`` 2,
   ``NumJobStarts`` 1), while a real second start (``condor_vacate_job``) is still held.
"""

from __future__ import annotations

import time

import pytest

from tests.support.htcondor_pool import HTCondorPool
from tests.support.real_stand import COMPLETED, HELD, RUNNING, RealStand, job_id, ours

pytestmark = [pytest.mark.htcondor, pytest.mark.timeout(400)]  # a loaded machine: generous


def test_quick_htcondor_c_pilots_complete_and_are_not_held(real_condor: HTCondorPool, httpserver) -> None:
    stand = RealStand(real_condor, httpserver, "quick-grid")
    stand.stats = {"QUICK": {"activated": 50, "assigned": 0, "running": 0}}
    stand.dump = {"QUICK": stand.ce_record("QUICK")}
    conf = stand.write_config("[QUICK]", defaults={"nqueue": 6, "sched.maxpercycle.maximum": 6})
    stand.cycle(conf)
    submitted = {job_id(j) for j in ours(real_condor.jobs())}
    assert len(submitted) == 6

    def settled() -> bool:
        jobs = ours(real_condor.jobs())
        return all(int(j["JobStatus"]) == HELD for j in jobs)  # gone, or held (the defect)

    real_condor.wait_for(settled, timeout=180, what="the quick grid pilots to leave the queue")
    held = [f"{job_id(j)}: {j.get('HoldReason')}" for j in ours(real_condor.jobs())]
    assert held == []
    done = {job_id(j): j for j in ours(real_condor.jobs(history=True)) if job_id(j) in submitted}
    assert set(done) == submitted
    assert {int(j["JobStatus"]) for j in done.values()} == {COMPLETED}
    assert {j.get("ExitCode") for j in done.values()} == {0}


def _status(pool: HTCondorPool, jid: str) -> dict:
    """The job's ad; empty while the schedd does not answer (restarting)."""
    try:
        return next((j for j in pool.jobs() if job_id(j) == jid), {})
    except AssertionError:
        return {}


def test_vanilla_pilot_survives_a_schedd_restart_and_a_second_start_is_held(
    real_condor: HTCondorPool, httpserver
) -> None:
    stand = RealStand(real_condor, httpserver, "restart-vanilla")
    sleeper = stand.work / "sleeper.sh"
    sleeper.write_text("#!/bin/sh\nsleep 300\n")
    sleeper.chmod(0o755)
    stand.stats = {"LOCALPQ": {"activated": 5, "assigned": 0, "running": 0}}
    conf = stand.write_config(
        "[LOCALPQ]\nautoconfigure = false\nceFlavour = LOCAL\nnqueue = 1\nsched.maxpercycle.maximum = 1",
        defaults={"executable": sleeper},
    )
    result = stand.cycle(conf)
    (jid,) = [job_id(j) for j in ours(real_condor.jobs())] or [result.stderr]
    # The shadow sends NumJobStarts to the schedd lazily (SHADOW_QUEUE_UPDATE_INTERVAL, 10 s here):
    # wait for it, so that the restart below happens to a pilot the schedd knows has started.
    real_condor.wait_for(
        lambda: (ad := _status(real_condor, jid)).get("JobStatus") == RUNNING and ad.get("NumJobStarts") == 1,
        what="the pilot running, its start recorded",
    )

    real_condor.run(["condor_restart", "-daemon", "SCHEDD"])
    reconnected = real_condor.wait_for(
        lambda: (
            (ad := _status(real_condor, jid)).get("JobRunCount", 0) >= 2
            and ad.get("JobStatus") == RUNNING
            and ad
        ),
        what="the pilot reconnected after the schedd restart",
    )
    assert reconnected.get("NumJobStarts") == 1
    deadline = time.monotonic() + 12  # more than two policy evaluations (PERIODIC_EXPR_INTERVAL = 5)
    while time.monotonic() < deadline:
        ad = _status(real_condor, jid)
        assert ad.get("JobStatus") == RUNNING, ad.get("HoldReason")
        time.sleep(1)

    real_condor.run(["condor_vacate_job", jid])
    held = real_condor.wait_for(
        lambda: (ad := _status(real_condor, jid)).get("JobStatus") == HELD and ad,
        what="the vacated pilot held before its second start",
    )
    assert "PeriodicHold" in held["HoldReason"] or "periodic_hold" in held["HoldReason"].lower()
    assert held.get("NumJobStarts") == 1
