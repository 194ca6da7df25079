"""Refused reports cost a counter, not a row each: a job keeps the count and its last few refusals
as events, and its events are paged in the API and on its page."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests
import sqlalchemy as sa

from autopyfactory.monitor_service.store import REFUSALS_KEPT
from tests.support.monitor import FactoryClient

LABEL = "REFUSED-L"


def _event_rows(factory: FactoryClient, cid: str) -> int:
    query = sa.text(
        "SELECT count(*) FROM job_events e JOIN jobs j ON j.id = e.job_id"
        " JOIN factories f ON f.id = j.factory_id WHERE f.name = :f AND j.cid = :c"
    )
    with factory.monitor.services.db.read() as session:
        return int(session.execute(query, {"f": factory.name, "c": cid}).scalar_one())


def test_reports_on_a_finished_pilot_are_counted_not_stored(factory: FactoryClient) -> None:
    """A wrapper (or anyone) sending report after report to a finished pilot: each is refused
    with 409 and counted; the job keeps its last few as events, so it stays small."""
    factory.create(LABEL, "1.0")
    assert factory.pilot("1.0", state="fault", rc="116").status_code == 200
    sequential = [factory.pilot("1.0", state="running").status_code for _ in range(40)]

    def report(n: int) -> int:
        with requests.Session() as session:
            session.trust_env = False
            url = f"{factory.monitor.api}/jobs/{factory.name}:1.0"
            return session.post(url, data={"state": "exiting", "rc": str(n % 256)}, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:  # together: many refusals in one batch
        concurrent = list(pool.map(report, range(160)))
    assert sequential + concurrent == [409] * 200
    job = factory.job("1.0")
    assert job["state"] == "FAULT"
    assert job["rc"] == 116
    assert job["refusals"] == 200
    assert job["refused_at"] is not None
    events = job["events"]
    assert isinstance(events, list)
    assert [(e["old_state"], e["new_state"]) for e in events[:2]] == [(None, "CREATED"), ("CREATED", "FAULT")]
    refused = events[2:]
    assert len(refused) == REFUSALS_KEPT
    assert not any(e["accepted"] for e in refused)
    assert {e["new_state"] for e in refused} == {"EXITING"}  # the last ones: the concurrent exits
    assert _event_rows(factory, "1.0") == 2 + REFUSALS_KEPT  # not 202 rows


def test_events_are_paged(factory: FactoryClient, http: requests.Session) -> None:
    factory.create(LABEL, "2.0")
    factory.pilot("2.0", state="running")
    factory.pilot("2.0", state="exiting", rc="0")
    for _ in range(3):
        assert factory.pilot("2.0", state="running").status_code == 409
    url = f"{factory.monitor.api}/jobs/{factory.name}:2.0"
    whole = http.get(url, timeout=10).json()
    assert whole["events_total"] == 6
    assert len(whole["events"]) == 6
    page = http.get(url, params={"limit": 2, "offset": 3}, timeout=10).json()
    assert (page["events_total"], page["events_offset"], page["events_limit"]) == (6, 3, 2)
    assert page["events"] == whole["events"][3:5]
    assert http.get(url, params={"limit": 1001}, timeout=10).status_code == 422
    html = http.get(f"{factory.monitor.url}/job/{factory.name}:2.0", params={"offset": 4}, timeout=10).text
    assert "events 5–6 of 6" in html
    assert 'href="?offset=0" rel="prev"' in html
    assert html.count('class="refused"') == 2
    assert '<dd id="refusals">3' in html
