"""The one monitor API client (URLs, token, timeouts, errors) against a real HTTP server on
127.0.0.1; the factory's observer and the cron helpers both go through it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
import requests
from werkzeug import Request, Response

from autopyfactory.edges.monitor import MonitorClient, MonitorError, path_part
from autopyfactory.observers.monitor import MonitorObserver, MonitorSettings
from tests.support.waiting import free_port

FID = "apf.cern-01_x"
LABEL = "CERN+PROD@ce1=x.y-SCORE"  # every character a label name may have


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.trust_env = False  # 127.0.0.1 only, never a proxy
        yield http


def client_of(server, session: requests.Session, timeout: float = 5.0) -> MonitorClient:
    return MonitorClient(server.url_for("/api/"), "tok", FID, session, timeout)


def test_names_stand_as_they_are_in_urls_and_anything_else_is_escaped() -> None:
    assert path_part(FID) == FID
    assert path_part(LABEL) == LABEL
    assert path_part("a b/c:d") == "a%20b%2Fc%3Ad"


def test_the_observer_and_the_cron_helpers_build_the_same_urls(session: requests.Session) -> None:
    client = MonitorClient("http://127.0.0.1:9/api/", "tok", FID, session)
    assert (client.factory_path(), client.label_path(LABEL)) == (
        f"/factories/{FID}",
        f"/labels/{FID}:{LABEL}",
    )
    observer = MonitorObserver(MonitorSettings("http://127.0.0.1:9/api/", "tok", FID, "o", "u"), session)
    assert observer._single_message(LABEL, "x").path == client.label_path(LABEL)


def test_calls_carry_the_token_and_return_json(httpserver, session: requests.Session) -> None:
    httpserver.expect_request(
        f"/api/factories/{FID}/labels", method="GET", headers={"Authorization": "Bearer tok"}
    ).respond_with_json([{"name": LABEL, "counts": {"CREATED": 3}}])
    httpserver.expect_request(f"/api/factories/{FID}/jobs", method="POST").respond_with_json(
        {"changed": 1, "unchanged": 0, "unknown": 0, "jobs": []}
    )
    client = client_of(httpserver, session)
    assert client.label_counts() == {LABEL: {"CREATED": 3}}
    assert client.report_jobs([{"cid": "1.0", "state": "done"}])["changed"] == 1
    (_, (request, _)) = httpserver.log
    assert request.get_json() == [{"cid": "1.0", "state": "done"}]


def test_a_labels_jobs_come_a_page_at_a_time(httpserver, session: requests.Session) -> None:
    def page(request: Request) -> Response:
        offset = int(request.args["offset"])
        jobs = [
            {"cid": f"{n}.0", "created_at": "2026-03-01T12:00:00+00:00"}
            for n in range(offset, min(offset + 2, 3))
        ]
        return Response(json.dumps({"jobs": jobs, "total": 3}), content_type="application/json")

    httpserver.expect_request(f"/api/labels/{FID}:{LABEL}/jobs").respond_with_handler(page)
    jobs = list(client_of(httpserver, session).jobs(LABEL, "CREATED"))
    assert [job.cid for job in jobs] == ["0.0", "1.0", "2.0"]
    assert {job.label for job in jobs} == {LABEL}
    assert jobs[0].created_at == 1772366400.0
    offsets = [request.args["offset"] for request, _ in httpserver.log]
    assert offsets == ["0", "2"]
    assert {request.args["state"] for request, _ in httpserver.log} == {"CREATED"}


def test_every_failure_is_a_monitor_error(httpserver, session: requests.Session) -> None:
    httpserver.expect_request(f"/api/factories/{FID}/labels").respond_with_data("bad token", status=401)
    httpserver.expect_request(f"/api/factories/{FID}/jobs").respond_with_data("<html>", status=200)
    client = client_of(httpserver, session)
    with pytest.raises(MonitorError, match="HTTP 401 bad token"):
        client.label_counts()
    with pytest.raises(MonitorError, match="not JSON"):
        client.report_jobs([])
    port = free_port()
    with pytest.raises(MonitorError, match="unreachable"):
        MonitorClient(f"http://127.0.0.1:{port}/api", "tok", FID, session).label_counts()


def test_a_hanging_monitor_is_given_up_after_the_timeout(httpserver, session: requests.Session) -> None:
    release = threading.Event()

    def hang(_request: Request) -> Response:
        release.wait(10)
        return Response("[]", content_type="application/json")

    httpserver.expect_request(f"/api/factories/{FID}/labels").respond_with_handler(hang)
    try:
        with pytest.raises(MonitorError, match=r"unreachable.*timed out"):
            client_of(httpserver, session, timeout=0.3).label_counts()
    finally:
        release.set()
