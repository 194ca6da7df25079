"""The factory's monitor observer (its outbox and sending thread) against a real HTTP server on
127.0.0.1."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from werkzeug import Response

from autopyfactory import __version__
from autopyfactory.observers.monitor import MonitorObserver, MonitorSettings
from tests.support.cycle_data import observed_labels
from tests.support.cycle_data import observed_report as report_for
from tests.support.waiting import wait_for


@pytest.fixture
def labels(tmp_path):
    return observed_labels(tmp_path)


def client_for(server, **overrides):
    settings = MonitorSettings(
        server.url_for("/api"),
        "tok",
        "mon-test",
        "ops@example.org",
        "http://logs.example.org/pilots",
        **{"timeout": 1.0, **overrides},
    )
    client = MonitorObserver(settings, sleep=lambda _seconds: False)
    client.start()
    return client


def requests_seen(server):
    return [(r.method, r.path, r.get_json(silent=True)) for r, _ in server.log]


def test_events_in_order_with_exact_bodies(httpserver, labels):
    httpserver.expect_request(
        "/api/factories/mon-test", method="PUT", headers={"Authorization": "Bearer tok"}
    ).respond_with_json({})
    httpserver.expect_request("/api/labels", method="PUT").respond_with_json({})
    httpserver.expect_request("/api/jobs", method="PUT").respond_with_json({})
    httpserver.expect_request("/api/factories/mon-test/messages", method="POST").respond_with_json({})
    client = client_for(httpserver)
    report = report_for(labels)
    client.cycle_done(report, labels)
    wait_for(lambda: client.sent == 4)
    seen = requests_seen(httpserver)
    assert seen[0] == (
        "PUT",
        "/api/factories/mon-test",
        {"url": "http://logs.example.org/pilots", "email": "ops@example.org", "version": __version__},
    )
    assert seen[1] == (
        "PUT",
        "/api/labels",
        [
            {
                "name": "NDGF-T1-arc01.ndgf.org-atlas",
                "factory": "mon-test",
                "batchqueue": "NDGF-T1",
                "wmsqueue": "NDGF-T1",
                "resource": "arc01.ndgf.org:2811",
                "localqueue": "atlas",
            },
            {
                "name": "NDGF-T1-arc02.ndgf.org-atlas",
                "factory": "mon-test",
                "batchqueue": "NDGF-T1",
                "wmsqueue": "NDGF-T1",
                "resource": "arc02.ndgf.org:443",
                "localqueue": "atlas",
            },
        ],
    )
    assert seen[2] == (
        "PUT",
        "/api/jobs",
        [
            {"cid": "1.0", "label": "NDGF-T1-arc01.ndgf.org-atlas", "factory": "mon-test"},
            {"cid": "1.1", "label": "NDGF-T1-arc01.ndgf.org-atlas", "factory": "mon-test"},
        ],
    )
    assert seen[3] == (
        "POST",
        "/api/factories/mon-test/messages",
        [{"label": r.plan.label.name, "status": r.line()} for r in report.results],
    )
    client.close(1.0)


def test_heartbeat_every_cycle_labels_only_when_changed(httpserver, labels):
    httpserver.expect_request("/api/labels", method="PUT").respond_with_json({})
    httpserver.expect_request("/api/factories/mon-test", method="PUT").respond_with_json({})
    httpserver.expect_request("/api/factories/mon-test/messages").respond_with_json({})
    client = client_for(httpserver)
    for _ in range(3):
        client.cycle_done(report_for(labels, job_ids=()), labels)
        wait_for(lambda: client.pending() == 0)
    wait_for(lambda: client.sent == 3 + 1 + 3)
    paths = [path for _, path, _ in requests_seen(httpserver)]
    assert paths.count("/api/factories/mon-test") == 3
    assert paths.count("/api/labels") == 1
    assert paths.count("/api/factories/mon-test/messages") == 3
    assert "/api/jobs" not in paths
    client.close(1.0)


def test_monitor_answering_503_gets_the_events_once_it_is_back(httpserver, labels):
    state = {"down": True}

    def handler(request):
        return (
            Response("down", status=503) if state["down"] else Response("{}", content_type="application/json")
        )

    httpserver.expect_request("/api/factories/mon-test").respond_with_handler(handler)
    httpserver.expect_request("/api/labels").respond_with_handler(handler)
    httpserver.expect_request("/api/jobs").respond_with_handler(handler)
    httpserver.expect_request("/api/factories/mon-test/messages").respond_with_handler(handler)
    client = client_for(httpserver)
    client.cycle_done(report_for(labels), labels)
    wait_for(
        lambda: sum(a.status_code == 503 for _r, a in httpserver.log) >= 3, what="three refused attempts"
    )
    assert client.sent == 0
    state["down"] = False
    wait_for(lambda: client.sent == 4)
    assert client.dropped == 0
    ok_paths = [r.path for r, resp in httpserver.log if resp.status_code == 200]
    assert ok_paths[:3] == ["/api/factories/mon-test", "/api/labels", "/api/jobs"]
    client.close(1.0)


def test_a_hanging_monitor_never_delays_the_cycle(httpserver, labels):
    release = threading.Event()

    def hang(_request):
        release.wait(5)
        return Response("{}")

    httpserver.expect_request("/api/factories/mon-test").respond_with_handler(hang)
    client = client_for(httpserver, timeout=0.2)
    started = time.monotonic()
    for _ in range(20):
        client.cycle_done(report_for(labels), labels)
    assert time.monotonic() - started < 0.5  # 20 cycles of events queued without waiting
    before = time.monotonic()
    client.close(timeout=0.3)
    assert time.monotonic() - before < 1.5
    release.set()


def test_full_outbox_drops_label_messages_before_pilots_and_counts_by_kind(labels):
    settings = MonitorSettings("http://127.0.0.1:9/api", "tok", "mon-test", "o", "u", queue_size=3)
    client = MonitorObserver(settings, sleep=lambda _s: False)  # not started: nothing drains the outbox
    client.cycle_done(report_for(labels, job_ids=("1.0", "1.1", "1.2")), labels)  # 3 pilots, 2 messages
    assert client.dropped_by_kind == {"label messages": 2}
    client.cycle_done(report_for(labels, job_ids=("2.0",)), labels)  # no message left to drop
    assert client.dropped_by_kind == {"label messages": 4, "pilots": 1}


def test_a_rejected_event_is_dropped_and_the_rest_goes_on(httpserver, labels):
    httpserver.expect_request("/api/factories/mon-test").respond_with_data("not a heartbeat", status=422)
    httpserver.expect_request("/api/labels").respond_with_json({})
    httpserver.expect_request("/api/jobs").respond_with_json({})
    httpserver.expect_request("/api/factories/mon-test/messages").respond_with_json({})
    client = client_for(httpserver)
    client.cycle_done(report_for(labels), labels)
    wait_for(lambda: client.sent == 3)
    assert client.dropped == 1
    client.close(1.0)


def jobs_announced(server) -> list[str]:
    return [
        item["cid"]
        for request, response in server.log
        if request.path == "/api/jobs" and response.status_code == 200
        for item in request.get_json()
    ]


def paused_client(server, **overrides) -> MonitorObserver:
    """A started client that pauses briefly between retries (a real pause would be seconds)."""
    settings = MonitorSettings(server.url_for("/api"), "tok", "mon-test", "o", "u", **overrides)
    client = MonitorObserver(settings, sleep=lambda _s: time.sleep(0.02) or False)
    client.start()
    return client


def test_an_outage_keeps_every_pilot_and_the_latest_message_per_label(httpserver, labels):
    """30 cycles during a monitor outage; superseded messages go, announcements stay."""
    state = {"down": True}

    def handler(_request):
        return (
            Response("down", status=503) if state["down"] else Response("{}", content_type="application/json")
        )

    for path in ("/api/factories/mon-test", "/api/labels", "/api/jobs", "/api/factories/mon-test/messages"):
        httpserver.expect_request(path).respond_with_handler(handler)
    client = paused_client(httpserver, queue_size=100)
    created = []
    for cycle in range(30):
        ids = (f"{cycle + 1}.0", f"{cycle + 1}.1")
        created += ids
        client.cycle_done(report_for(labels, job_ids=ids), labels)
    assert client.dropped_by_kind == {}
    last = report_for(labels, job_ids=("30.0", "30.1"))
    state["down"] = False
    wait_for(lambda: client.pending() == 0 and client.sent >= 4)
    assert sorted(jobs_announced(httpserver)) == sorted(created)
    messages = [
        r.get_json() for r, a in httpserver.log if r.path.endswith("/messages") and a.status_code == 200
    ]
    assert messages == [[{"label": r.plan.label.name, "status": r.line()} for r in last.results]]
    client.close(1.0)


def test_large_announcements_in_batches_with_a_timeout_that_fits(httpserver, labels):
    """A slow monitor (1.5 s for 500 creates) is asked once per batch, not again and again."""

    def slow(request):
        time.sleep(1.5 if len(request.get_json()) > 100 else 0)
        return Response("{}", content_type="application/json")

    httpserver.expect_request("/api/jobs").respond_with_handler(slow)
    for path in ("/api/factories/mon-test", "/api/labels", "/api/factories/mon-test/messages"):
        httpserver.expect_request(path).respond_with_json({})
    client = paused_client(httpserver, timeout=0.5, per_item_timeout=0.01, batch_size=500)
    assert client.timeout_for(500) == pytest.approx(5.5)
    client.cycle_done(report_for(labels, job_ids=tuple(f"7.{n}" for n in range(1200))), labels)
    wait_for(lambda: client.pending() == 0 and client.sent == 6, seconds=20)
    sizes = [len(r.get_json()) for r, _ in httpserver.log if r.path == "/api/jobs"]
    assert sizes == [500, 500, 200]  # no repeats: none timed out
    client.close(1.0)


def test_pilots_the_monitor_never_heard_of_are_announced_once(labels):
    """The census's recent pilots that were never announced (a half-failed submission) are
    announced."""
    settings = MonitorSettings("http://127.0.0.1:9/api", "tok", "mon-test", "o", "u")
    client = MonitorObserver(settings, sleep=lambda _s: False)  # not started: look at the outbox
    name = labels[0].name
    first = dataclasses.replace(report_for(labels, job_ids=("3.0",)), recent={name: ("1.0", "2.0")})
    client.cycle_done(first, labels)
    second = dataclasses.replace(report_for(labels, job_ids=()), recent={name: ("1.0", "2.0", "3.0", "4.0")})
    client.cycle_done(second, labels)
    assert [p["cid"] for p in client._pilots] == ["3.0", "1.0", "2.0", "4.0"]


def test_an_old_monitor_without_bulk_messages_gets_one_per_label(httpserver, labels):
    for path in ("/api/factories/mon-test", "/api/labels", "/api/jobs"):
        httpserver.expect_request(path).respond_with_json({})
    httpserver.expect_request("/api/factories/mon-test/messages").respond_with_data("", status=405)
    for label in labels:
        httpserver.expect_request(f"/api/labels/mon-test:{label.name}").respond_with_json({})
    client = client_for(httpserver)
    client.cycle_done(report_for(labels), labels)
    wait_for(lambda: client.sent == 3 + len(labels))
    assert client.dropped == 0
    client.close(1.0)


def test_items_the_monitor_rejects_are_counted_and_logged(httpserver, labels, caplog):
    """The monitor writes the valid items of a bulk request and lists the others."""
    rejected = {"index": 1, "detail": "label: String should match pattern", "errors": []}
    httpserver.expect_request("/api/factories/mon-test").respond_with_json({})
    httpserver.expect_request("/api/labels").respond_with_json(
        {"created": 1, "updated": 0, "rejected": [rejected]}
    )
    httpserver.expect_request("/api/jobs").respond_with_json({"created": 2, "rejected": []})
    httpserver.expect_request("/api/factories/mon-test/messages").respond_with_json({})
    client = client_for(httpserver)
    client.cycle_done(report_for(labels), labels)
    wait_for(lambda: client.sent == 4)
    client.close(1.0)
    assert "1 items rejected as invalid (first: item 1: label: String should match pattern)" in caplog.text
