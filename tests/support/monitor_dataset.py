"""A realistic monitor data set for the page tests: three factories over 24 simulated hours,
filled through the real API of a running service (tests/support/monitor.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import requests

from tests.support.monitor import FactoryClient, Monitor

MESSAGE = (
    "NDGF-T1-arc01.ndgf.org-atlas pq=NDGF-T1 activated=812 share=406 idle=3 running=10 held=0 "
    "decision=12 submitted=12 ids=5.0..5.11 | Ready: in=0 activated=406 offset=0 pending=3 -> 403; "
    "MaxPending: in=403 pending=3 max=15 -> 12"
)
UCORE, MCORE = "CERN-PROD_UCORE-ce503.cern.ch-condor", "CERN-PROD_MCORE-ce504.cern.ch-condor"
BNL, BNL_UCORE = "BNL_PROD-gridgk01.racf.bnl.gov-condor", "CERN-PROD_UCORE-ce505.cern.ch-condor"
STALE = "INFN-T1-ce01.cr.cnaf.infn.it-condor"
EVIL = "<script>alert('x')</script> & done"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Dataset:
    monitor: Monitor
    cern: FactoryClient
    bnl: FactoryClient
    stale: FactoryClient


def _labels(client: FactoryClient, pq_of: dict[str, str]) -> None:
    """Each label with its PQ and the CE its name says (``<PQ>-<CE host>-<queue>``)."""
    for name, pq in pq_of.items():
        host = name.removeprefix(f"{pq}-").rsplit("-", 1)[0]
        assert client.labels(name, pq=pq, resource=f"{host}:9619").status_code == 200


def _hour(client: FactoryClient, label: str, cluster: int, hour: int, faulty: bool) -> None:
    """Four pilots created now; those of an hour ago run; those of two hours ago exit or fault."""
    assert client.create(label, *(f"{cluster + hour}.{i}" for i in range(4))).status_code == 200
    if hour >= 1:
        for i in range(4):
            client.pilot(f"{cluster + hour - 1}.{i}", state="running")
    if hour >= 2:
        old = cluster + hour - 2
        for i, rc in enumerate(("0", "0", "20", "0")):
            if faulty and i >= 2:
                client.pilot(f"{old}.{i}", state="fault")
            else:
                client.pilot(f"{old}.{i}", state="exiting", rc=rc)


def cycle_message(label: str, pq: str, submitted: int) -> str:
    """MESSAGE as the factory writes it for ``label`` of ``pq`` (the pages show it as it is)."""
    head = MESSAGE.replace("NDGF-T1-arc01.ndgf.org-atlas pq=NDGF-T1", f"{label} pq={pq}")
    return head.replace("submitted=12", f"submitted={submitted}")


def fill(monitor: Monitor, http: requests.Session) -> Dataset:
    """Three factories over 24 simulated hours: CERN fresh (ok), BNL 42 min old (warning), one
    silent for hours (error); one label with many faults; one PQ served by two factories."""
    store = monitor.services.store
    clients = {}
    for name in ("CERN-apf01", "BNL-apf02", "stale-apf03"):
        clients[name] = FactoryClient(name, store.add_factory(name), monitor, http)
    cern, bnl, stale = clients["CERN-apf01"], clients["BNL-apf02"], clients["stale-apf03"]
    monitor.clock.advance(T0 - monitor.clock())
    _labels(cern, {UCORE: "CERN-PROD_UCORE", MCORE: "CERN-PROD_MCORE"})
    _labels(bnl, {BNL: "BNL_PROD", BNL_UCORE: "CERN-PROD_UCORE"})
    _labels(stale, {STALE: "INFN-T1"})
    plan = [(cern, UCORE, 1000, False), (cern, MCORE, 2000, True), (bnl, BNL, 3000, False)]
    plan += [(bnl, BNL_UCORE, 4000, False), (stale, STALE, 5000, False)]
    for hour in range(24):
        for client, label, cluster, faulty in plan:
            if client is not stale or hour < 20:
                _hour(client, label, cluster, hour, faulty)
        if hour == 20:
            stale.heartbeat()
            stale.message(STALE, EVIL)
        monitor.services.expiry.run()
        monitor.clock.advance(timedelta(hours=1))
    bnl.heartbeat()
    bnl.message(BNL, cycle_message(BNL, "BNL_PROD", 11))
    bnl.message(BNL_UCORE, "just a note from an older factory")
    monitor.clock.advance(timedelta(minutes=25))
    cern.message(MCORE, cycle_message(MCORE, "CERN-PROD_MCORE", 12))
    monitor.clock.advance(timedelta(minutes=15))
    cern.heartbeat()
    for n in (3, 7, 12):
        cern.message(UCORE, cycle_message(UCORE, "CERN-PROD_UCORE", n))
    monitor.clock.advance(timedelta(minutes=2))
    return Dataset(monitor, cern, bnl, stale)
