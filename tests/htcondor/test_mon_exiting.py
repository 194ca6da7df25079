"""``mon-exiting`` on the real ``condor_history``, reporting to the real monitor service.

The factory (real CLI, pool user) submits five vanilla pilots and announces them to the monitor;
two run the real wrapper (which reports running and exiting itself) and exit 0 and 3, one is
removed with a plain condor_rm and a reason before it says anything, one is removed as
``autopyfactory pilots remove`` removes (its request as the reason), and one exits 20 without
a word to the monitor (its wrapper's reports lost). mon-exiting, as the pool user, reads the real
condor_history and reports done (rc 0), done (rc 3), fault (with the reason), removed (an
operator's removal, not a fault) and done with ``ran`` (rc 20 says the pilot ran).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.htcondor_pool import HTCondorPool
from tests.support.monitor import (
    FactoryClient,
    Monitor,
    local_session,
    new_factory,
    running_monitor,
    sqlite_url,
)
from tests.support.real_stand import RealStand, job_id, ours

pytestmark = [pytest.mark.htcondor, pytest.mark.timeout(400)]  # a loaded machine: generous


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Monitor]:
    with running_monitor(sqlite_url(tmp_path)) as service:
        service.clock.advance(datetime.now(UTC) - service.clock())
        yield service


@pytest.fixture
def monitor_factory(monitor: Monitor) -> Iterator[FactoryClient]:
    with local_session() as session:
        yield new_factory(monitor, session)


def _script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_mon_exiting_reports_the_real_history(
    real_condor: HTCondorPool, httpserver, monitor_factory: FactoryClient
) -> None:
    stand = RealStand(real_condor, httpserver, "mon-exiting")
    work = stand.work
    queues = (
        f"[OK]\nautoconfigure = false\nceFlavour = LOCAL\nnqueue = 1\nenviron = {stand.pilot_environ()}\n"
        f"[BAD]\nautoconfigure = false\nceFlavour = LOCAL\nnqueue = 1\n"
        f"environ = {stand.pilot_environ(TEST_PILOT_RC='3')}\n"
        f"[SLOW]\nautoconfigure = false\nceFlavour = LOCAL\nnqueue = 1\n"
        f"executable = {_script(work, 'slow.sh', 'sleep 300')}\n"
        f"[DRAIN]\nautoconfigure = false\nceFlavour = LOCAL\nnqueue = 1\n"
        f"executable = {work / 'slow.sh'}\n"
        f"[QUIET]\nautoconfigure = false\nceFlavour = LOCAL\nnqueue = 1\n"
        f"executable = {_script(work, 'quiet.sh', 'exit 20')}\n"
    )
    names = ("OK", "BAD", "SLOW", "DRAIN", "QUIET")
    stand.stats = {pq: {"activated": 1, "assigned": 0, "running": 0} for pq in names}
    factory = f"monitorURL = {monitor_factory.monitor.api}\nmonitorToken = {monitor_factory.token}\n"
    conf = stand.write_config(queues, factory=factory, factory_id=monitor_factory.name)
    stand.cycle(conf)
    pilots = {j["MATCH_APF_QUEUE"]: job_id(j) for j in ours(real_condor.jobs())}
    assert set(pilots) == {f"{name}-local" for name in names}
    for cid in pilots.values():
        assert monitor_factory.job(cid)["state"] == "CREATED"

    slow = pilots["SLOW-local"]
    real_condor.run(["condor_rm", "-reason", "operator: CE drained", slow])
    request = "autopyfactory pilots remove ab12cd34 by alice: CE retired"  # as the factory removes
    real_condor.run(["condor_rm", "-reason", request, pilots["DRAIN-local"]])
    real_condor.wait_for(
        lambda: {job_id(j) for j in real_condor.jobs(history=True)} >= set(pilots.values()),
        what="every pilot in condor_history",
    )
    result = stand.factory("mon-exiting", "-c", str(conf))
    assert "5 reports (0 AWOL)" in result.stdout + result.stderr, result.stderr

    ok, bad, removed = (monitor_factory.job(pilots[name]) for name in ("OK-local", "BAD-local", "SLOW-local"))
    assert (ok["state"], ok["rc"]) == ("DONE", 0)
    assert (bad["state"], bad["rc"]) == ("DONE", 3)  # it ran: the monitor keeps the pilot's exit code
    assert removed["state"] == "FAULT"
    assert any("operator: CE drained" in str(event["text"]) for event in removed["events"])  # type: ignore[attr-defined]
    drained = monitor_factory.job(pilots["DRAIN-local"])
    assert drained["state"] == "REMOVED"  # an operator's removal: not a fault
    assert request in str(drained["events"][-1]["text"])  # type: ignore[index]
    quiet = monitor_factory.job(pilots["QUIET-local"])
    assert (quiet["state"], quiet["rc"]) == ("DONE", 20)  # no report at all, but rc 20: it ran
    # a second run reads from its checkpoint and changes nothing
    again = stand.factory("mon-exiting", "-c", str(conf))
    assert monitor_factory.job(pilots["OK-local"])["state"] == "DONE", again.stderr
