"""CE flavours HTCondor 25 cannot submit to (no cream or gt2 grid type), on the real condor_submit."""

from __future__ import annotations

import pytest

from autopyfactory.domain.credentials import ARC_WITHOUT_CREDENTIAL
from tests.support.htcondor_pool import HTCondorPool
from tests.support.real_stand import RealStand, ours

pytestmark = [pytest.mark.htcondor, pytest.mark.timeout(400)]  # a loaded machine: generous


def test_a_cream_ce_takes_no_share_and_fails_no_submission(real_condor: HTCondorPool, httpserver) -> None:
    stand = RealStand(real_condor, httpserver, "cream")
    record = stand.ce_record("MIXED")
    record["queues"].append(
        {"ce_endpoint": "cream01.legacy.example:8443", "ce_flavour": "CREAM-CE", "ce_queue_name": "long",
         "ce_jobmanager": "pbs", "ce_state": "ACTIVE", "ce_status": "production"}
    )  # fmt: skip
    stand.dump = {"MIXED": record}
    stand.stats = {"MIXED": {"activated": 4, "assigned": 0, "running": 0}}
    conf = stand.write_config("[MIXED]", defaults={"nqueue": 4})

    check = stand.factory("check", "-c", str(conf), check=False)
    reason = "CREAM-CE is not supported: HTCondor (24 and later) has no 'cream' grid type"
    assert reason in check.stdout + check.stderr

    result = stand.cycle(conf)
    assert "Invalid value 'cream'" not in result.stderr
    assert "0 submit errors" in result.stderr
    labels = {job["MATCH_APF_QUEUE"] for job in ours(real_condor.jobs())}
    assert labels == {f"MIXED-{real_condor.hostname}"}
    # the working CE got the whole queue's demand (4 activated), not half of it
    assert len(ours(real_condor.jobs())) == 4


def test_an_arc_ce_without_credentials_gets_nothing_and_check_and_run_say_why(
    real_condor: HTCondorPool, httpserver
) -> None:
    """An ARC-CE label without credentials: HTCondor's gridmanager would hold every pilot (the
    holding itself is shown below with a pilot submitted by hand), so ``check`` reports it and
    ``run`` submits nothing for it, with the same reason."""
    stand = RealStand(real_condor, httpserver, "arc-nocred")
    stand.dump = {"ARCPQ": stand.ce_record("ARCPQ", flavour="ARC-CE", endpoint="127.0.0.1:9")}
    stand.stats = {"ARCPQ": {"activated": 1, "assigned": 0, "running": 0}}
    conf = stand.write_config("[ARCPQ]", defaults={"nqueue": 1})
    check = stand.factory("check", "-c", str(conf), check=False)
    assert check.returncode == 1
    reason = ARC_WITHOUT_CREDENTIAL
    assert reason.startswith("ARC-CE without x509userproxy or scitokensFile: HTCondor would hold every pilot")
    assert reason in check.stdout
    result = stand.cycle(conf)
    assert ours(real_condor.jobs()) == []
    assert f"Credentials: in=1 {reason} -> 0" in result.stderr

    by_hand = stand.work / "arc.sub"
    by_hand.write_text(
        "universe = grid\ngrid_resource = arc https://127.0.0.1:9/arex\nexecutable = /bin/true\n"
        '+MATCH_APF_QUEUE = "by-hand"\nqueue 1\n'
    )
    by_hand.chmod(0o644)
    real_condor.run(["condor_submit", str(by_hand)], cwd=stand.work)
    held = real_condor.wait_for(
        lambda: [j for j in ours(real_condor.jobs()) if j["JobStatus"] == 5], what="the ARC pilot held"
    )
    assert "no credentials" in held[0]["HoldReason"].lower(), held[0]["HoldReason"]
