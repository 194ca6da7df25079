"""A pilot's whole life through the API, as the factory client and the wrapper speak it, and the
read endpoints that show it."""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta

import pytest
import requests

from tests.support.monitor import FactoryClient, Monitor

LABEL = "CERN-PROD_UCORE-ce503.cern.ch-condor"


def test_full_life_cycle_v2(factory: FactoryClient) -> None:
    assert factory.heartbeat().status_code == 200
    assert factory.labels(LABEL).json() == {"created": 1, "updated": 0, "rejected": []}
    assert factory.create(LABEL, "1001.0", "1001.1").json() == {
        "created": 2,
        "duplicates": 0,
        "labels_created": 0,
        "rejected": [],
    }

    assert factory.pilot("1001.0", state="running").json()["state"] == "RUNNING"
    answer = factory.pilot("1001.0", state="exiting", rc="0", ids="6543210987,6543210988")
    assert answer.status_code == 200
    assert answer.json() == {
        "job": f"{factory.name}:1001.0",
        "state": "EXITING",
        "changed": True,
        "detail": "RUNNING -> EXITING",
    }
    job = factory.job("1001.0")
    assert job["state"] == "EXITING"
    assert job["rc"] == 0
    assert job["ids"] == "6543210987,6543210988"
    assert job["label"] == LABEL
    assert job["batchqueue"] == "CERN-PROD_UCORE"
    events = job["events"]
    assert isinstance(events, list)
    assert [(e["old_state"], e["new_state"], e["accepted"]) for e in events] == [
        (None, "CREATED", True),
        ("CREATED", "RUNNING", True),
        ("RUNNING", "EXITING", True),
    ]
    assert all(e["source"] == "127.0.0.1" for e in events)
    assert "rc=0" in events[-1]["text"]


def test_wrapper_fault_with_rc(factory: FactoryClient) -> None:
    factory.create(LABEL, "7.0")
    answer = factory.pilot("7.0", state="fault", rc="116")
    assert answer.status_code == 200
    job = factory.job("7.0")
    assert (job["state"], job["rc"]) == ("FAULT", 116)


def test_json_report_is_accepted_too(factory: FactoryClient, http: requests.Session) -> None:
    factory.create(LABEL, "8.0")
    url = f"{factory.monitor.api}/jobs/{factory.name}:8.0"
    assert http.post(url, json={"state": "running"}, timeout=10).status_code == 200
    assert http.post(url, json={"state": "exiting", "rc": 20}, timeout=10).json()["state"] == "EXITING"
    assert factory.job("8.0")["rc"] == 20


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_exactly_as_the_wrapper_sends_it(factory: FactoryClient) -> None:
    """The wrapper's own command line (wrappers/runpilot3-wrapper.sh, apf_monitor)."""
    factory.create(LABEL, "9.0")
    url = f"{factory.monitor.api}/jobs/{factory.name}:9.0"

    def curl(*data: str) -> str:
        args = [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--connect-timeout",
            "5",
            "--max-time",
            "10",
        ]
        done = subprocess.run([*args, *data, url], capture_output=True, text=True, timeout=30, check=False)
        return done.stdout

    assert curl("--data", "state=running") == "200"
    assert curl("--data", "state=exiting", "--data", "rc=0", "--data-urlencode", "ids=11,12") == "200"
    assert curl("--data", "state=exiting", "--data", "rc=0") == "200"  # a retry: replay
    assert curl("--data", "state=running") == "409"
    assert factory.job("9.0")["ids"] == "11,12"


def test_legacy_v1_calls(factory: FactoryClient, http: requests.Session) -> None:
    factory.create(LABEL, "20.0", "21.0", "22.0")
    mon = factory.monitor.url + "/mon"
    assert http.get(f"{mon}/rn/{factory.name}/20.0/", timeout=10).status_code == 200
    assert http.get(f"{mon}/ex/{factory.name}/20.0/0/", timeout=10).json()["state"] == "EXITING"
    # without the trailing slash: no redirect, the same answer
    assert http.get(f"{mon}/rn/{factory.name}/21.0", timeout=10, allow_redirects=False).status_code == 200
    # v1 has no fault: a wrapper failing before its pilot runs sends ex with its own code
    assert http.get(f"{mon}/ex/{factory.name}/22.0/116/", timeout=10).json()["state"] == "FAULT"
    assert factory.job("22.0")["rc"] == 116


def test_factory_heartbeat_and_status(
    factory: FactoryClient, monitor: Monitor, http: requests.Session
) -> None:
    answer = factory.heartbeat()
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"
    listed = {f["name"]: f for f in http.get(monitor.api + "/factories", timeout=10).json()}
    assert listed[factory.name]["version"] == "3.0.0"
    assert listed[factory.name]["url"] == f"http://{factory.name}.example.org/logs"
    monitor.clock.advance(timedelta(minutes=30))
    detail = http.get(f"{monitor.api}/factories/{factory.name}", timeout=10).json()
    assert detail["status"] == "warning"
    monitor.clock.advance(timedelta(hours=1))
    assert http.get(f"{monitor.api}/factories/{factory.name}", timeout=10).json()["status"] == "error"


def test_a_bare_heartbeat_keeps_the_factory_fields(factory: FactoryClient, monitor: Monitor) -> None:
    factory.heartbeat()
    monitor.clock.advance(timedelta(minutes=5))
    answer = factory.call("PUT", f"/factories/{factory.name}", {})
    assert answer.status_code == 200
    assert answer.json()["version"] == "3.0.0"
    assert answer.json()["last_seen"].startswith(monitor.clock().strftime("%Y-%m-%dT%H:%M"))


def test_labels_counts_and_messages(factory: FactoryClient, monitor: Monitor, http: requests.Session) -> None:
    factory.labels("A", "B")
    factory.create("A", "1.0", "1.1", "1.2")
    factory.create("B", "2.0")
    factory.pilot("1.0", state="running")
    factory.pilot("1.1", state="fault")
    for n in range(monitor.settings.messages_kept + 5):
        assert (
            factory.message("A", f"cycle {n}: MaxPending: in=43 pending=10 max=25 -> 15").status_code == 200
        )

    labels = {
        lab["name"]: lab
        for lab in http.get(f"{monitor.api}/factories/{factory.name}/labels", timeout=10).json()
    }
    assert labels["A"]["counts"] == {
        "CREATED": 1,
        "RUNNING": 1,
        "EXITING": 0,
        "DONE": 0,
        "FAULT": 1,
        "REMOVED": 0,
        "flagged": 0,
    }
    assert labels["B"]["counts"]["CREATED"] == 1
    assert labels["A"]["last_message"].startswith(f"cycle {monitor.settings.messages_kept + 4}:")

    detail = http.get(f"{monitor.api}/labels/{factory.name}:A", timeout=10).json()
    assert len(detail["messages"]) == monitor.settings.messages_kept
    assert detail["messages"][0]["text"].startswith(f"cycle {monitor.settings.messages_kept + 4}:")
    assert detail["messages"][-1]["text"].startswith("cycle 5:")

    whole = http.get(f"{monitor.api}/factories/{factory.name}", timeout=10).json()
    assert whole["labels"] == 2
    assert whole["counts"]["CREATED"] == 2


def test_message_as_form_data(factory: FactoryClient, http: requests.Session) -> None:
    factory.labels("A")
    answer = http.post(
        f"{factory.monitor.api}/labels/{factory.name}:A",
        data={"status": "offline: 0 pilots"},
        headers={"Authorization": f"Bearer {factory.token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    detail = http.get(f"{factory.monitor.api}/labels/{factory.name}:A", timeout=10).json()
    assert detail["last_message"] == "offline: 0 pilots"


def test_jobs_of_a_label_paged_and_filtered(
    factory: FactoryClient, monitor: Monitor, http: requests.Session
) -> None:
    factory.labels("P")
    for batch in range(3):
        factory.create("P", *(f"{100 + batch}.{n}" for n in range(10)))
        monitor.clock.advance(timedelta(seconds=1))
    for n in range(4):
        factory.pilot(f"102.{n}", state="running")
    url = f"{monitor.api}/labels/{factory.name}:P/jobs"

    page = http.get(url, params={"limit": 7}, timeout=10).json()
    assert (page["total"], len(page["jobs"])) == (30, 7)
    assert page["jobs"][0]["cid"].startswith("102.")  # newest first
    cids = [
        j["cid"]
        for off in range(0, 30, 7)
        for j in http.get(url, params={"limit": 7, "offset": off}).json()["jobs"]
    ]
    assert sorted(cids) == sorted(f"{100 + b}.{n}" for b in range(3) for n in range(10))

    running = http.get(url, params={"state": "RUNNING"}, timeout=10).json()
    assert running["total"] == 4
    assert {j["state"] for j in running["jobs"]} == {"RUNNING"}


def test_panda_queue_summary_across_factories(
    make_factory: object, monitor: Monitor, http: requests.Session
) -> None:
    first, second = make_factory(), make_factory()  # type: ignore[operator]
    pq = f"PQ_{first.name}".replace("-", "_")
    first.labels("L1", pq=pq)
    second.labels("L2", "L3", pq=pq)
    first.create("L1", "1.0", "1.1")
    second.create("L2", "5.0")
    first.pilot("1.0", state="running")

    summary = {s["pq"]: s for s in http.get(monitor.api + "/pqs", timeout=10).json()}
    assert summary[pq]["factories"] == sorted([first.name, second.name])
    assert summary[pq]["labels"] == 3
    assert summary[pq]["counts"]["CREATED"] == 2
    assert summary[pq]["counts"]["RUNNING"] == 1

    detail = http.get(f"{monitor.api}/pqs/{pq}", timeout=10).json()
    assert [(lab["factory"], lab["name"]) for lab in detail["labels"]] == sorted(
        [(first.name, "L1"), (second.name, "L2"), (second.name, "L3")]
    )
    assert detail["counts"]["CREATED"] == 2
    assert http.get(f"{monitor.api}/pqs/NO_SUCH_PQ", timeout=10).status_code == 404


def test_faults_report(factory: FactoryClient, monitor: Monitor, http: requests.Session) -> None:
    factory.labels("bad", "good")
    factory.create("bad", *(f"30.{n}" for n in range(10)))
    factory.create("good", *(f"31.{n}" for n in range(10)))
    for n in range(6):
        factory.pilot(f"30.{n}", state="fault")
    factory.pilot("31.0", state="fault")
    params = {"hours": 1, "min_created": 10, "min_percent": 50}
    report = http.get(monitor.api + "/report/faults", params=params, timeout=10).json()
    mine = [row for row in report["labels"] if row["factory"] == factory.name]
    assert mine == [
        {
            "factory": factory.name,
            "label": "bad",
            "batchqueue": "CERN-PROD_UCORE",
            "created": 10,
            "faults": 6,
            "percent": 60.0,
        }
    ]
    params["min_created"] = 11
    report = http.get(monitor.api + "/report/faults", params=params, timeout=10).json()
    assert not [row for row in report["labels"] if row["factory"] == factory.name]


def test_jobs_for_an_unannounced_label_create_it(factory: FactoryClient, http: requests.Session) -> None:
    answer = factory.create("NEWLABEL", "40.0")
    assert answer.json() == {"created": 1, "duplicates": 0, "labels_created": 1, "rejected": []}
    factory.labels("NEWLABEL")  # announced later: filled in
    detail = http.get(f"{factory.monitor.api}/labels/{factory.name}:NEWLABEL", timeout=10).json()
    assert detail["batchqueue"] == "CERN-PROD_UCORE"
    assert detail["counts"]["CREATED"] == 1


def test_health(monitor: Monitor, http: requests.Session) -> None:
    answer = http.get(monitor.api + "/health", timeout=10).json()
    assert answer["status"] == "ok"
    assert answer["schema_revision"] == "0002"


def test_label_messages_in_bulk(factory: FactoryClient, monitor: Monitor, http: requests.Session) -> None:
    """One request per cycle for every label's message (thousands of labels); the per-label call stays."""
    factory.labels("A", "B")
    kept = monitor.settings.messages_kept
    for n in range(kept + 2):
        body = [{"label": "A", "status": f"cycle {n}: A"}, {"label": "B", "status": f"cycle {n}: B"}]
        answer = factory.call("POST", f"/factories/{factory.name}/messages", body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["written"] == 2
    bulk = f"/factories/{factory.name}/messages"
    assert factory.call("POST", bulk, [{"label": "C", "status": "new label"}]).status_code == 200
    for label in ("A", "B"):
        detail = http.get(f"{monitor.api}/labels/{factory.name}:{label}", timeout=10).json()
        assert detail["last_message"] == f"cycle {kept + 1}: {label}"
        assert len(detail["messages"]) == kept
    new = http.get(f"{monitor.api}/labels/{factory.name}:C", timeout=10).json()
    assert new["last_message"] == "new label"
    other = factory.call("POST", "/factories/someone-else/messages", [{"label": "A", "status": "x"}])
    assert other.status_code in (403, 404)
    body = [{"label": "A", "status": ""}, {"label": "..", "status": "x"}, {"label": "B", "status": "good"}]
    bad = factory.call("POST", f"/factories/{factory.name}/messages", body)
    assert bad.status_code == 200, bad.text  # the good ones are written, the bad listed
    assert bad.json()["written"] == 1
    assert [(r["index"], r["errors"][0]["where"]) for r in bad.json()["rejected"]] == [
        (0, "status"),
        (1, "label"),
    ]
    assert http.get(f"{monitor.api}/labels/{factory.name}:B", timeout=10).json()["last_message"] == "good"


def test_a_late_exiting_report_is_accepted_for_a_pilot_still_created(
    factory: FactoryClient, http: requests.Session
) -> None:
    """The running report was lost (a monitor outage, or sent before the factory announced the
    pilot): the exiting report still lands, with its rc and PanDA ids, v2 and v1 alike."""
    factory.create(LABEL, "50.0", "51.0")
    answer = factory.pilot("50.0", state="exiting", rc="0", ids="6543210987")
    assert answer.status_code == 200, answer.text
    assert answer.json()["detail"] == "CREATED -> EXITING"
    job = factory.job("50.0")
    assert (job["state"], job["rc"], job["ids"]) == ("EXITING", 0, "6543210987")
    assert factory.pilot("50.0", state="running").status_code == 409  # the lost report, too late
    assert (
        http.get(f"{factory.monitor.url}/mon/ex/{factory.name}/51.0/0/", timeout=10).json()["state"]
        == "EXITING"
    )
