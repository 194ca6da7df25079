"""Held pilots on a real pool: released and removed by the housekeeping rules, with the reason.

Two real holds: an operator's ``condor_hold`` (code 1, not recoverable) and a failing input
transfer (the wrapper is gone when the pilot starts: code 13, listed as recoverable). The first
is removed; the second is released, held again by the same failure, then removed. Every
removal carries the housekeeping reason into ``RemoveReason``, so the monitor can tell why.
"""

from __future__ import annotations

import pytest

from tests.support.htcondor_pool import Ad, HTCondorPool
from tests.support.real_stand import HELD, IDLE, RUNNING, RealStand, census_agrees, job_id, ours

pytestmark = [pytest.mark.htcondor, pytest.mark.timeout(400)]  # a loaded machine: generous

QUEUE = """[HOLDS]
autoconfigure = false
ceFlavour = LOCAL
holdRerun = false
holdRecoverableCodes = 13
holdReleaseBackoff = 0
holdMaxReleases = 2
holdTimeout = 0
"""


def _job(pool: HTCondorPool, jid: str) -> Ad:
    return next((j for j in pool.jobs() if job_id(j) == jid), {})


def _removed(pool: HTCondorPool, jid: str) -> Ad:
    return next((j for j in pool.jobs(history=True) if job_id(j) == jid), {})


def test_held_pilots_are_released_and_removed_with_the_reason(real_condor: HTCondorPool, httpserver) -> None:
    stand = RealStand(real_condor, httpserver, "holds")
    sleeper = stand.work / "sleeper.sh"
    sleeper.write_text("#!/bin/sh\nsleep 300\n")
    sleeper.chmod(0o755)
    stand.stats = {"HOLDS": {"activated": 5, "assigned": 0, "running": 0}}
    conf = stand.write_config(QUEUE, defaults={"executable": sleeper, "nqueue": 2})
    stand.cycle(conf)
    operator, transfer = sorted(job_id(j) for j in ours(real_condor.jobs()))

    # the operator's hold; the other pilot is held and loses its executable, so that its
    # release ends in a real transfer failure
    real_condor.run(["condor_hold", operator, transfer])
    sleeper.unlink()
    real_condor.run(["condor_release", transfer])
    failed = real_condor.wait_for(
        lambda: (
            (ad := _job(real_condor, transfer)).get("JobStatus") == HELD
            and ad.get("HoldReasonCode") == 13
            and ad
        ),
        what="the pilot held by a failing input transfer",
    )
    assert "Transfer input files failure" in failed["HoldReason"]
    assert census_agrees(stand, conf, ["HOLDS-local"]) == {
        "HOLDS-local": {"idle": 0, "running": 0, "held": 2}
    }

    conf = stand.write_config(QUEUE, defaults={"executable": sleeper, "nqueue": 2}, factory="maxPerCycle = 0")
    result = stand.cycle(conf)
    # NumHolds counts the test's own condor_hold too: this is hold #2, released (holdMaxReleases 2)
    assert f"release {transfer}: recoverable hold #2" in result.stderr, result.stderr
    assert f"remove {operator}: held" in result.stderr
    removed = real_condor.wait_for(
        lambda: _removed(real_condor, operator), what="the operator-held pilot removed"
    )
    assert removed["RemoveReason"].startswith(
        "autopyfactory housekeeping: held longer than holdTimeout (0 s), not recoverable"
    )

    again = real_condor.wait_for(
        lambda: (
            (ad := _job(real_condor, transfer)).get("JobStatus") == HELD and ad.get("NumHolds", 0) >= 3 and ad
        ),
        what="the released pilot held again by the same failure",
    )
    assert again["HoldReasonCode"] == 13
    result = stand.cycle(conf)
    assert f"remove {transfer}: held" in result.stderr
    removed = real_condor.wait_for(
        lambda: _removed(real_condor, transfer), what="the twice-held pilot removed"
    )
    assert removed["RemoveReason"].startswith(
        "autopyfactory housekeeping: held longer than holdTimeout (0 s), released too often"
    )
    assert not {IDLE, RUNNING} & {int(j["JobStatus"]) for j in ours(real_condor.jobs())}
