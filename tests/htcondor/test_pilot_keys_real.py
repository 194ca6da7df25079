"""Pilot keys end to end on a real HTCondor pool: factory -> monitor (keys required) -> wrapper.

The factory (real CLI, pool user) submits two vanilla pilots of one label with keys on; each job's
ad holds its own ``APFMON_KEY`` (the per-job item data of autopyfactory-condor-submit), the
monitor got each key's digest with the pilot's announcement, and each pilot's real wrapper
(bash + curl) gets its reports in with its key. One pilot's key does not move the other's record.
No raw key is written under the factory's directories, into its output or the monitor's database.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from autopyfactory.domain.pilot_keys import is_pilot_key, key_digest
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

_KEY = re.compile(r"APFMON_KEY=(\S*)")


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Monitor]:
    with running_monitor(sqlite_url(tmp_path)) as service:
        service.clock.advance(datetime.now(UTC) - service.clock())
        yield service


@pytest.fixture
def keyed_factory(monitor: Monitor) -> Iterator[FactoryClient]:
    """A factory the monitor requires pilot keys of."""
    with local_session() as session:
        factory = new_factory(monitor, session)
        monitor.services.store.set_pilot_keys(factory.name, required=True)
        yield factory


def announced_digests(db: Path, factory: str) -> dict[str, str]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT jobs.cid, jobs.key_sha256 FROM jobs JOIN factories ON jobs.factory_id = factories.id "
            "WHERE factories.name = ?",
            (factory,),
        ).fetchall()
    return dict(rows)


def files_holding(root: Path, secrets: list[str]) -> list[Path]:
    """The files under ``root`` that hold any of ``secrets``."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(secret.encode() in data for secret in secrets):
                found.append(path)
    return found


def test_two_pilots_own_keys_reports_accepted_and_another_pilots_key_refused(
    real_condor: HTCondorPool, httpserver, keyed_factory: FactoryClient, tmp_path: Path
) -> None:
    stand = RealStand(real_condor, httpserver, "pilot-keys")
    queues = (
        f"[KEYED]\nautoconfigure = false\nceFlavour = LOCAL\nnqueue = 2\nenviron = {stand.pilot_environ()}\n"
    )
    stand.stats = {"KEYED": {"activated": 2, "assigned": 0, "running": 0}}
    factory = f"monitorURL = {keyed_factory.monitor.api}\nmonitorToken = {keyed_factory.token}\n"
    conf = stand.write_config(queues, factory=factory, factory_id=keyed_factory.name)

    cycle = stand.cycle(conf)

    pilots = sorted(job_id(ad) for ad in ours(real_condor.jobs()))
    assert len(pilots) == 2, cycle.stderr
    real_condor.wait_for(
        lambda: {job_id(ad) for ad in real_condor.jobs(history=True)} >= set(pilots),
        timeout=240,
        what="both pilots in condor_history",
    )
    ads = {job_id(ad): ad for ad in real_condor.jobs(history=True) if job_id(ad) in pilots}
    keys = {cid: _KEY.search(ads[cid]["Environment"])[1] for cid in pilots}  # type: ignore[index]
    assert all(is_pilot_key(key) for key in keys.values()), keys
    assert keys[pilots[0]] != keys[pilots[1]]
    assert announced_digests(tmp_path / "monitor.sqlite", keyed_factory.name) == {
        cid: key_digest(key) for cid, key in keys.items()
    }
    for cid in pilots:  # each wrapper's reports carried its own key and were accepted
        job = keyed_factory.job(cid)
        events = [event["new_state"] for event in job["events"]]  # type: ignore[attr-defined]
        assert "RUNNING" in events, job
        assert job["state"] in ("EXITING", "DONE"), job
    detail = keyed_factory.call("GET", f"/factories/{keyed_factory.name}").json()
    assert detail["key_refusals"]["unsigned"] == detail["key_refusals"]["wrong_key"] == 0

    first, second = pilots
    refused = keyed_factory.session.post(
        f"{keyed_factory.monitor.api}/jobs/{keyed_factory.name}:{second}",
        data={"state": "fault", "rc": "1"},
        headers={"Authorization": f"Bearer {keys[first]}"},
        timeout=10,
    )
    assert refused.status_code == 403, refused.text
    detail = keyed_factory.call("GET", f"/factories/{keyed_factory.name}").json()
    assert detail["key_refusals"]["wrong_key"] == 1

    raw = list(keys.values())
    assert files_holding(stand.work, raw) == []  # baseLogDir, stateDir, factory.conf, request files
    assert files_holding(tmp_path, raw) == []  # the monitor's database keeps digests only
    assert not any(key in cycle.stdout + cycle.stderr for key in raw)
