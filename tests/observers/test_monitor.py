"""The factory's monitor observer (its outbox and sending thread) against a real HTTP server on
127.0.0.1."""

from __future__ import annotations

import threading
import time

import pytest
from werkzeug import Response

from autopyfactory import __version__
from autopyfactory.observers.monitor import MonitorObserver, MonitorSettings
from tests.support.cycle_data import observed_labels, tell_cycle
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
    tell_cycle(client, report, labels)
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
        tell_cycle(client, report_for(labels, job_ids=()), labels)
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
    tell_cycle(client, report_for(labels), labels)
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
        tell_cycle(client, report_for(labels), labels)
    assert time.monotonic() - started < 0.5  # 20 cycles of events queued without waiting
    before = time.monotonic()
    client.close(timeout=0.3)
    assert time.monotonic() - before < 1.5
    release.set()


def test_more_labels_than_the_queue_holds_drop_the_oldest_messages_never_a_pilot(labels):
    settings = MonitorSettings("http://127.0.0.1:9/api", "tok", "mon-test", "o", "u", queue_size=1)
    client = MonitorObserver(settings, sleep=lambda _s: False)  # not started: nothing drains the outbox
    tell_cycle(client, report_for(labels, job_ids=("1.0", "1.1", "1.2")), labels)  # 3 pilots, 2 messages
    tell_cycle(client, report_for(labels, job_ids=("2.0",)), labels)
    assert client.dropped_by_kind == {"label messages": 3}
    assert client.pending() == 1 + 1 + 4 + 1  # heartbeat, labels, every pilot, the newest message


def test_a_rejected_event_is_dropped_and_the_rest_goes_on(httpserver, labels):
    httpserver.expect_request("/api/factories/mon-test").respond_with_data("not a heartbeat", status=422)
    httpserver.expect_request("/api/labels").respond_with_json({})
    httpserver.expect_request("/api/jobs").respond_with_json({})
    httpserver.expect_request("/api/factories/mon-test/messages").respond_with_json({})
    client = client_for(httpserver)
    tell_cycle(client, report_for(labels), labels)
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
        tell_cycle(client, report_for(labels, job_ids=ids), labels)
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


def test_an_old_monitor_without_bulk_messages_gets_one_per_label(httpserver, labels):
    for path in ("/api/factories/mon-test", "/api/labels", "/api/jobs"):
        httpserver.expect_request(path).respond_with_json({})
    httpserver.expect_request("/api/factories/mon-test/messages").respond_with_data("", status=405)
    for label in labels:
        httpserver.expect_request(f"/api/labels/mon-test:{label.name}").respond_with_json({})
    client = client_for(httpserver)
    tell_cycle(client, report_for(labels), labels)
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
    tell_cycle(client, report_for(labels), labels)
    wait_for(lambda: client.sent == 4)
    client.close(1.0)
    assert "1 items rejected as invalid (first: item 1: label: String should match pattern)" in caplog.text


def answering(server, jobs=None) -> None:
    """``server`` answers every request of the observer, ``/api/jobs`` with ``jobs`` if given."""
    for path in ("/api/factories/mon-test", "/api/labels", "/api/factories/mon-test/messages"):
        server.expect_request(path).respond_with_json({})
    if jobs is None:
        server.expect_request("/api/jobs").respond_with_json({})
    else:
        server.expect_request("/api/jobs").respond_with_handler(jobs)


def outbox_client(url: str, directory, **overrides) -> MonitorObserver:
    settings = MonitorSettings(url, "tok", "mon-test", "o", "u", outbox_dir=str(directory), **overrides)
    return MonitorObserver(settings, sleep=lambda _s: time.sleep(0.02) or False)


def test_a_long_outage_of_200_labels_and_60_cycles_loses_no_pilot(httpserver, tmp_path):
    """12,000 announcements, more than the in-memory queue holds: all sent, oldest first."""
    state = {"down": True}

    def jobs(_request):
        return (
            Response("down", status=503) if state["down"] else Response("{}", content_type="application/json")
        )

    answering(httpserver, jobs)
    client = outbox_client(httpserver.url_for("/api"), tmp_path / "outbox", queue_size=10000)
    client.start()
    created = []
    for cycle in range(60):
        for label in range(200):
            cid = f"{cycle + 1}.{label}"
            created.append(cid)
            client.pilots_created(f"label-{label}", [cid])
    wait_for(lambda: sum(r.path == "/api/jobs" for r, _ in httpserver.log) >= 2, what="refused announcements")
    assert client.dropped == 0
    state["down"] = False
    wait_for(lambda: client.pending() == 0, seconds=120)
    assert jobs_announced(httpserver) == created
    assert list((tmp_path / "outbox").iterdir()) == []  # every segment sent and gone
    client.close(1.0)


def test_announcements_kept_on_disk_are_sent_after_a_restart(httpserver, tmp_path):
    """Announced while the monitor is down, the factory killed (no close, no flush): the next
    start sends them, oldest first."""
    outbox = tmp_path / "outbox"
    killed = outbox_client("http://127.0.0.1:9/api", outbox)  # never started: as if SIGKILLed
    killed.pilots_created("A", ["1.0", "1.1"])
    killed.pilots_created("B", ["2.0"])
    answering(httpserver)
    client = outbox_client(httpserver.url_for("/api"), outbox)
    assert client.pending() == 3
    client.start()
    wait_for(lambda: client.pending() == 0)
    assert jobs_announced(httpserver) == ["1.0", "1.1", "2.0"]
    client.close(1.0)


def test_stopping_with_the_monitor_down_keeps_the_announcements(tmp_path, caplog):
    outbox = tmp_path / "outbox"
    client = outbox_client("http://127.0.0.1:9/api", outbox)
    client.start()
    client.pilots_created("A", ["1.0"])
    client.close(0.2)
    assert f"1 pilot announcements kept in {outbox}" in caplog.text
    assert outbox_client("http://127.0.0.1:9/api", outbox).pending() == 1


def test_at_the_disk_limit_the_oldest_announcements_go_and_are_counted(tmp_path):
    one = len('[{"cid":"1.0","label":"A","factory":"mon-test"}]')
    client = outbox_client("http://127.0.0.1:9/api", tmp_path / "outbox", outbox_bytes=2 * one)
    for cycle in range(1, 5):
        client.pilots_created("A", [f"{cycle}.0"])
    assert client.dropped_by_kind == {"pilots": 2}
    again = outbox_client("http://127.0.0.1:9/api", tmp_path / "outbox")
    assert [item["cid"] for item in again._pilots.peek(10)] == ["3.0", "4.0"]


def test_a_slow_monitor_gets_each_bulk_create_once(httpserver, labels):
    """The monitor takes 4 ms per item; the configured guess is 20 times too fast. The batches
    and timeouts follow its measured speed, so no announcement is sent twice."""

    def slow(request):
        time.sleep(0.004 * len(request.get_json()))
        return Response("{}", content_type="application/json")

    answering(httpserver, slow)
    settings = dict(timeout=0.3, per_item_timeout=0.0002, batch_size=500, max_timeout=30.0)
    client = paused_client(httpserver, **settings)
    created = tuple(f"7.{n}" for n in range(1000))
    client.pilots_created(labels[0].name, created)
    wait_for(lambda: client.pending() == 0, seconds=60)
    puts = [request.get_json() for request, _ in httpserver.log if request.path == "/api/jobs"]
    sent = [item["cid"] for body in puts for item in body]
    assert sorted(sent) == sorted(created)  # each once: no PUT repeated
    assert max(len(body) for body in puts) <= 500
    assert client.timeout_for(500) > 0.004 * 500  # it has learnt the monitor's speed
    client.close(1.0)


def test_a_pilot_keys_digest_goes_with_its_announcement_and_survives_the_outbox(httpserver, tmp_path):
    """Each pilot's item carries its own key's digest (none for a pilot without a key), also when
    the announcement waited on disk for a restart; the key itself is never given to the client."""
    outbox = tmp_path / "outbox"
    digest = "a" * 64
    killed = outbox_client("http://127.0.0.1:9/api", outbox)  # never started: as if SIGKILLed
    killed.pilots_created("A", ["1.0", "1.1"], {"1.0": digest})
    answering(httpserver)
    client = outbox_client(httpserver.url_for("/api"), outbox)
    client.start()
    wait_for(lambda: client.pending() == 0)
    items = [
        item for request, _ in httpserver.log if request.path == "/api/jobs" for item in request.get_json()
    ]
    assert items == [
        {"cid": "1.0", "label": "A", "factory": "mon-test", "key_sha256": digest},
        {"cid": "1.1", "label": "A", "factory": "mon-test"},
    ]
    client.close(1.0)


@pytest.mark.parametrize("pilot_keys", [False, True])
def test_a_monitor_requiring_pilot_keys_is_pointed_out_to_a_factory_without_them(
    httpserver, labels, caplog, pilot_keys
):
    """The heartbeat's answer says the monitor requires keys: a factory whose pilots get none is
    told once (every report of its pilots would be refused); one whose pilots get keys is not."""
    httpserver.expect_request("/api/factories/mon-test").respond_with_json({"pilot_keys": "required"})
    answering(httpserver)
    client = paused_client(httpserver, pilot_keys=pilot_keys)
    for _ in range(2):
        tell_cycle(client, report_for(labels), labels)
    wait_for(lambda: client.pending() == 0 and client.sent >= 4)
    client.close(1.0)
    warnings = caplog.text.count("it requires pilot keys but monitorPilotKeys is off")
    assert warnings == (0 if pilot_keys else 1)


def test_a_bulk_request_that_timed_out_is_sent_again_smaller(httpserver, labels):
    """The monitor cannot answer more than 150 items within the longest timeout: the request that
    timed out is not sent again as it was (forever), its pilots go in smaller requests."""

    def slow_when_large(request):
        if len(request.get_json()) > 150:
            time.sleep(2.0)
        return Response("{}", content_type="application/json")

    answering(httpserver, slow_when_large)
    settings = dict(timeout=0.3, per_item_timeout=0.0002, batch_size=500, max_timeout=1.0)
    client = paused_client(httpserver, **settings)
    created = tuple(f"7.{n}" for n in range(1000))
    client.pilots_created(labels[0].name, created)
    wait_for(lambda: client.pending() == 0, seconds=60)
    assert set(jobs_announced(httpserver)) == set(created)
    sizes = [len(request.get_json()) for request, _ in httpserver.log if request.path == "/api/jobs"]
    large = sum(size > 150 for size in sizes)  # each timed out; the size grows back after answers
    assert large < len(sizes) - large
    client.close(1.0)
