"""The factory against a real pool, through the real CLI, as the pool's user.

* HTCondor-C to the CE schedd from a CRIC record whose HTCONDOR-CE endpoint is
  ``<hostname>:<collector port>``, and vanilla pilots on the submit schedd, in one factory:
  pilots reach the CE schedd, run the real wrapper with the real arguments and finish; at every
  step the factory's census equals what ``condor_q`` says;
* depth over several cycles without over-submission, a schedd stopped mid-run or hung (nothing
  submitted, the reason said) and restarted (recovery).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.support.htcondor_pool import HTCondorPool
from tests.support.real_stand import (
    HELD,
    IDLE,
    RealStand,
    census_agrees,
    condor_census,
    job_id,
    logged_census,
    ours,
)

pytestmark = [pytest.mark.htcondor, pytest.mark.timeout(400)]  # a loaded machine: generous


def test_htcondor_c_and_vanilla_pilots_run_the_wrapper_and_the_census_matches_condor_q(
    real_condor: HTCondorPool, httpserver
) -> None:
    stand = RealStand(real_condor, httpserver, "census")
    stand.dump = {"GRIDPQ": stand.ce_record("GRIDPQ", stand.pilot_environ(TEST_PILOT_RC="0"))}
    stand.stats = {
        "GRIDPQ": {"activated": 10, "assigned": 0, "running": 0},
        "LOCALPQ": {"activated": 10, "assigned": 0, "running": 0},
    }
    queues = (
        f"[GRIDPQ]\n[LOCALPQ]\nautoconfigure = false\nceFlavour = LOCAL\nenviron = {stand.pilot_environ()}\n"
    )
    conf = stand.write_config(queues, defaults={"nqueue": 2})
    grid, local = f"GRIDPQ-{real_condor.hostname}", "LOCALPQ-local"
    stand.cycle(conf)
    submitted = {job_id(j): j for j in ours(real_condor.jobs())}
    assert sorted(j["MATCH_APF_QUEUE"] for j in submitted.values()) == [grid, grid, local, local]
    grid_job = next(j for j in submitted.values() if j["MATCH_APF_QUEUE"] == grid)
    assert grid_job["GridResource"] == f"condor {real_condor.hostname} {real_condor.ce_endpoint}"
    census_agrees(stand, conf, [grid, local])

    # the grid pilots reach the CE schedd (as vanilla jobs there), or have already finished on it
    def on_ce() -> bool:
        ce_jobs = real_condor.jobs(real_condor.ce_schedd) + real_condor.jobs(
            real_condor.ce_schedd, history=True
        )
        return len([j for j in ce_jobs if j.get("MATCH_APF_QUEUE") == grid]) == 2

    real_condor.wait_for(on_ce, timeout=180, what="both grid pilots at the CE schedd")
    real_condor.wait_for(lambda: not ours(real_condor.jobs()), timeout=180, what="every pilot finished")
    census_agrees(stand, conf, [grid, local])

    history = {job_id(j): j for j in ours(real_condor.jobs(history=True))}
    assert set(submitted) <= set(history)
    for jid, job in submitted.items():
        assert history[jid]["JobStatus"] == 4, history[jid]
        assert history[jid]["ExitCode"] == 0, history[jid]
        pq = "GRIDPQ" if job["MATCH_APF_QUEUE"] == grid else "LOCALPQ"
        out = Path(history[jid]["Out"]).read_text()
        line = next(x for x in out.splitlines() if x.startswith("TEST PILOT running with"))
        argv = json.loads(line.removeprefix("TEST PILOT running with ").replace("'", '"'))
        assert argv == ["-q", pq, "-j", "managed", "-i", "PR", "--pilot-user", "ATLAS", "--url", "http://localhost",
                        "-p", str(httpserver.port), "-w", "generic"]  # fmt: skip


def test_depth_over_cycles_and_a_schedd_stopped_mid_run(real_condor: HTCondorPool, httpserver) -> None:
    """Grid pilots to a CE nobody answers for stay idle: the depth is what Classic keeps."""
    stand = RealStand(real_condor, httpserver, "depth")
    stand.dump = {"DEEP": stand.ce_record("DEEP", endpoint="127.0.0.1:9")}  # nothing listens on port 9
    stand.stats = {"DEEP": {"activated": 100, "assigned": 0, "running": 0}}
    conf = stand.write_config("[DEEP]", defaults={"nqueue": 3, "depthboost": 2})
    label = "DEEP-127.0.0.1"
    counts = []
    for _ in range(4):
        result = stand.cycle(conf)
        counts.append(condor_census(real_condor.jobs(), label))
        assert logged_census(result.stderr, label) is not None, result.stderr
    # Classic: nqueue while pending < nqueue, again while pending < nqueue * depthboost, then 0
    assert [c["idle"] + c["held"] for c in counts] == [3, 6, 6, 6]

    real_condor.run(["condor_off", "-fast", "-daemon", "SCHEDD"])
    try:
        real_condor.wait_for(lambda: real_condor.run(["condor_q"], check=False).returncode != 0,
                             what="the schedd down")  # fmt: skip
        stand.stats = {"DEEP": {"activated": 1000, "assigned": 0, "running": 0}}
        result = stand.cycle(conf)
        assert "submitted 0" in result.stderr, result.stderr
        assert "0 submit errors" in result.stderr, result.stderr
        assert "NoData" in result.stderr
        assert "pilot counts unknown" in result.stderr
    finally:
        real_condor.run(["condor_on", "-daemon", "SCHEDD"])
    real_condor.wait_for(
        lambda: real_condor.run(["condor_q"], check=False).returncode == 0, what="the schedd up"
    )
    assert sum(condor_census(real_condor.jobs(), label).values()) == 6

    # a hung schedd (SIGSTOP): condor_q times out (condorTimeout), nothing is submitted
    (schedd,) = [pid for pid, argv in real_condor.processes().items() if argv == ["condor_schedd"]]
    hung = stand.write_config("[DEEP]", defaults={"nqueue": 3, "depthboost": 2}, condor_timeout=3)
    os.kill(schedd, signal.SIGSTOP)
    try:
        result = stand.cycle(hung)
    finally:
        os.kill(schedd, signal.SIGCONT)
    assert "submitted 0" in result.stderr, result.stderr
    assert "pilot counts unknown" in result.stderr, result.stderr
    assert sum(condor_census(real_condor.jobs(), label).values()) == 6
    real_condor.run(["condor_rm", "-all"])
    real_condor.wait_for(lambda: not ours(real_condor.jobs()), what="the pilots removed")
    stand.cycle(conf)  # recovery: the next cycle sees the empty queue and submits again
    assert {int(j["JobStatus"]) for j in ours(real_condor.jobs())} <= {IDLE, HELD}
    assert len(ours(real_condor.jobs())) == 3
