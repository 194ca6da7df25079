"""Malformed input always ends in a 4xx with a readable ``detail``, never in a 500, and never
changes data."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.monitor import FactoryClient, Monitor


def assert_refused(answer: requests.Response, status: int | tuple[int, ...]) -> str:
    expected = status if isinstance(status, tuple) else (status,)
    assert answer.status_code in expected, (answer.status_code, answer.text)
    detail = answer.json()["detail"]
    assert detail
    return str(detail)


# --- pilot reports -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "f:1",
        "f:1.x",
        "f:.0",
        "f",
        "f:1.0:2",
        "f" * 65 + ":1.0",
        "f g:1.0",
        "f%00:1.0",
        ":1.0",
        "f:" + "1" * 21 + ".0",
    ],
)
def test_bad_job_keys(http: requests.Session, monitor: Monitor, key: str) -> None:
    answer = http.post(f"{monitor.api}/jobs/{key}", data={"state": "running"}, timeout=10)
    assert_refused(answer, 422)


@pytest.mark.parametrize(
    ("form", "needle"),
    [
        ({}, "state"),
        ({"state": "bogus"}, "state"),
        ({"state": ""}, "state"),
        ({"state": "done"}, "state"),  # only the server decides DONE
        ({"state": "exiting", "rc": "abc"}, "rc"),
        ({"state": "exiting", "rc": "-1"}, "rc"),
        ({"state": "exiting", "rc": "256"}, "rc"),
        ({"state": "exiting", "rc": "1e3"}, "rc"),
        ({"state": "exiting", "rc": "0", "ids": "1,a"}, "ids"),
        ({"state": "exiting", "rc": "0", "ids": ",1"}, "ids"),
        ({"state": "exiting", "rc": "0", "ids": ",".join(["1"] * 101)}, "ids"),
    ],
)
def test_bad_reports(factory: FactoryClient, form: dict[str, str], needle: str) -> None:
    factory.create("L", "1.0")
    factory.pilot("1.0", state="running")
    detail = assert_refused(factory.pilot("1.0", **form), 422)
    assert needle in detail
    assert factory.job("1.0")["state"] == "RUNNING"


def test_repeated_form_field(factory: FactoryClient, http: requests.Session) -> None:
    factory.create("L", "1.0")
    answer = http.post(
        f"{factory.monitor.api}/jobs/{factory.name}:1.0",
        data=[("state", "running"), ("state", "fault")],
        timeout=10,
    )
    assert "more than once" in assert_refused(answer, 400)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"state=running", "text/plain", 415),
        (b"{not json", "application/json", 400),
        (b'["running"]', "application/json", 400),
        (b'{"state": "running", "rc": 1000000000000000000000000000000}', "application/json", 422),
        (b'{"state": "running\\u0000"}', "application/json", 422),
        (b'{"state": "\\ud800"}', "application/json", 422),
        (b"\xff\xfe", "application/json", 400),
        (b"[" * 100000 + b"]" * 100000, "application/json", 400),
        (b"state=%ff%fe", "application/x-www-form-urlencoded", 422),
    ],
)
def test_unreadable_bodies(
    factory: FactoryClient, http: requests.Session, body: bytes, content_type: str, status: int
) -> None:
    factory.create("L", "1.0")
    answer = http.post(
        f"{factory.monitor.api}/jobs/{factory.name}:1.0",
        data=body,
        headers={"Content-Type": content_type},
        timeout=10,
    )
    assert_refused(answer, status)
    assert factory.job("1.0")["state"] == "CREATED"


def test_files_are_refused(factory: FactoryClient, http: requests.Session) -> None:
    factory.create("L", "1.0")
    answer = http.post(
        f"{factory.monitor.api}/jobs/{factory.name}:1.0",
        data={"state": "running"},
        files={"log": ("pilot.log", b"x" * 100)},
        timeout=10,
    )
    assert_refused(answer, 400)


# --- factory payloads ----------------------------------------------------------------------------


def label(owner: FactoryClient, change: dict[str, object]) -> dict[str, object]:
    return {"name": "L", "factory": owner.name, "batchqueue": "PQ", **change}


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"name": ""}, "name"),
        ({"name": "a b"}, "name"),
        ({"name": "a/b"}, "name"),
        ({"name": "x" * 129}, "name"),
        ({"batchqueue": ""}, "batchqueue"),
        ({"resource": "ce\n01"}, "resource"),
        ({"resource": "x" * 257}, "resource"),
        ({"localqueue": "q\x00"}, "localqueue"),
        ({"factory": "bad factory"}, "factory"),
        ({"colour": "blue"}, "colour"),
        ({"name": 5}, "name"),
    ],
)
def test_bad_labels(factory: FactoryClient, change: dict[str, object], needle: str) -> None:
    answer = factory.call("PUT", "/labels", [label(factory, change)])
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["created"], result["updated"]) == (0, 0)
    (rejected,) = result["rejected"]
    assert rejected["index"] == 0
    assert needle in rejected["detail"]


@pytest.mark.parametrize("name", [".", "..", "...", "a:b", "x" * 129])
def test_one_bad_label_does_not_cost_the_good_ones(factory: FactoryClient, name: str) -> None:
    """The valid labels are written, the invalid one is reported."""
    body = [
        label(factory, {"name": "GOOD-1"}),
        label(factory, {"name": name}),
        label(factory, {"name": "GOOD-2"}),
    ]
    answer = factory.call("PUT", "/labels", body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["created"] == 2
    assert [(r["index"], r["errors"][0]["where"]) for r in result["rejected"]] == [(1, "name")]
    listed = factory.session.get(f"{factory.monitor.api}/factories/{factory.name}/labels", timeout=10).json()
    assert sorted(item["name"] for item in listed) == ["GOOD-1", "GOOD-2"]


def test_one_bad_job_does_not_cost_the_good_ones(factory: FactoryClient) -> None:
    jobs = [
        {"cid": "1.0", "label": "L", "factory": factory.name},
        {"cid": "2.0", "label": "..", "factory": factory.name},
        {"cid": "3", "label": "L", "factory": factory.name},
        {"cid": "4.0", "label": "L", "factory": factory.name},
    ]
    answer = factory.call("PUT", "/jobs", jobs)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["created"] == 2
    assert [(r["index"], r["errors"][0]["where"]) for r in result["rejected"]] == [(1, "label"), (2, "cid")]
    assert factory.job("4.0")["state"] == "CREATED"


@pytest.mark.parametrize("name", [".", "..", "...."])
def test_label_names_made_only_of_dots_are_refused_in_paths(factory: FactoryClient, name: str) -> None:
    """A name of dots only would be a path segment (``.``, ``..``) to clients and proxies."""
    assert_refused(factory.call("POST", f"/labels/{factory.name}:{name}", {"status": "x"}), 422)
    answer = factory.session.get(f"{factory.monitor.api}/labels/{factory.name}:{name}", timeout=10)
    assert_refused(answer, 422)


def test_a_label_key_with_a_long_label_is_refused(factory: FactoryClient) -> None:
    assert_refused(factory.call("POST", f"/labels/{factory.name}:{'x' * 129}", {"status": "x"}), 422)
    assert factory.call("POST", f"/labels/{factory.name}:{'x' * 128}", {"status": "x"}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"name": "L"},
        "labels",
        None,
        [None],
        [[]],
    ],
)
def test_label_bodies_of_the_wrong_shape(factory: FactoryClient, body: object) -> None:
    assert_refused(factory.call("PUT", "/labels", body), 422)


@pytest.mark.parametrize(
    "job",
    [
        {"cid": "1", "label": "L"},
        {"cid": "1.0", "label": ""},
        {"cid": "1.0.0", "label": "L"},
        {"cid": 1.0, "label": "L"},
        {"cid": "1.0"},
    ],
)
def test_bad_jobs(factory: FactoryClient, job: dict[str, object]) -> None:
    answer = factory.call("PUT", "/jobs", [{"factory": factory.name, **job}])
    assert answer.status_code == 200, answer.text
    assert answer.json()["created"] == 0
    assert [r["index"] for r in answer.json()["rejected"]] == [0]


def test_too_many_items(factory: FactoryClient) -> None:
    jobs = [{"cid": f"1.{n}", "label": "L", "factory": factory.name} for n in range(20001)]
    assert "20000" in assert_refused(factory.call("PUT", "/jobs", jobs), 422)


@pytest.mark.parametrize(
    "body",
    [
        {"url": "javascript:alert(1)"},
        {"url": "http://x\ny"},
        {"email": "a" * 257},
        {"version": 3},
        {"owner": "me"},
    ],
)
def test_bad_heartbeats(factory: FactoryClient, body: dict[str, object]) -> None:
    assert_refused(factory.call("PUT", f"/factories/{factory.name}", body), 422)


@pytest.mark.parametrize("status", ["", "x" * 2049, "two\nlines", "tab\t", None, 5])
def test_bad_messages(factory: FactoryClient, status: object) -> None:
    assert_refused(factory.call("POST", f"/labels/{factory.name}:L", {"status": status}), 422)


def test_bad_label_key(factory: FactoryClient) -> None:
    assert_refused(factory.call("POST", f"/labels/{factory.name}:a%20b", {"status": "x"}), 422)
    assert_refused(factory.call("POST", f"/labels/{factory.name}", {"status": "x"}), 422)


# --- body size ---------------------------------------------------------------------------------


def test_declared_body_too_large(factory: FactoryClient, monitor: Monitor) -> None:
    size = monitor.settings.limits.max_body_bytes + 1
    answer = factory.session.put(
        monitor.api + "/jobs",
        data=b" " * size,
        headers={"Authorization": f"Bearer {factory.token}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert_refused(answer, 413)


def test_chunked_body_too_large(factory: FactoryClient, monitor: Monitor) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(monitor.settings.limits.max_body_bytes // 65536 + 2):
            yield b" " * 65536

    answer = factory.session.put(
        monitor.api + "/jobs",
        data=chunks(),
        headers={"Authorization": f"Bearer {factory.token}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert_refused(answer, 413)


def raw_request(monitor: Monitor, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", monitor.server.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_invalid_content_length(monitor: Monitor) -> None:
    answer = raw_request(
        monitor,
        b"POST /api/jobs/f:1.0 HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\nConnection: close\r\n\r\n",
    )
    assert answer.split(b" ", 2)[1] in (b"400", b"413")


# --- read endpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "hours=0",
        "hours=abc",
        "hours=100000",
        "limit=0",
        "limit=1001",
        "offset=-1",
        "offset=100000000000000000000",
        "state=bogus",
        "min_percent=nan",
        "min_percent=101",
        "min_created=0",
    ],
)
def test_bad_queries(factory: FactoryClient, http: requests.Session, query: str) -> None:
    factory.labels("L")
    name = query.split("=")[0]
    path = {
        "hours": f"/factories/{factory.name}/labels",
        "limit": f"/labels/{factory.name}:L/jobs",
        "offset": f"/labels/{factory.name}:L/jobs",
        "state": f"/labels/{factory.name}:L/jobs",
    }.get(name, "/report/faults")
    assert name in assert_refused(http.get(f"{factory.monitor.api}{path}?{query}", timeout=10), 422)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/api/search", "q=%00"),
        ("/api/search", "q=a%00b"),
        ("/search", "q=%00"),
        ("/api/factories", "x=%00"),
        ("/api/factories", "x%00=1"),
        ("/api/report/faults", "hours=%00"),
        ("/", "q=1&q=%00"),
    ],
)
def test_nul_in_any_query_parameter_is_422(
    monitor: Monitor, http: requests.Session, path: str, query: str
) -> None:
    """A NUL is refused up front: on PostgreSQL it reached the database and was a 503."""
    detail = assert_refused(http.get(f"{monitor.url}{path}?{query}", timeout=10), 422)
    assert "NUL" in detail


def test_states_are_spelled_exactly(factory: FactoryClient, http: requests.Session) -> None:
    """As the schema says: reports in lower case (the wrapper's words), filters in upper case."""
    factory.create("L", "1.0")
    assert (
        http.get(f"{factory.monitor.api}/labels/{factory.name}:L/jobs?state=created", timeout=10).status_code
        == 422
    )
    assert (
        http.get(f"{factory.monitor.api}/labels/{factory.name}:L/jobs?state=CREATED", timeout=10).json()[
            "total"
        ]
        == 1
    )
    assert factory.pilot("1.0", state="RUNNING").status_code == 422


def test_unknown_things_are_404(monitor: Monitor, http: requests.Session) -> None:
    for path in (
        "/factories/nobody",
        "/factories/nobody/labels",
        "/labels/nobody:L",
        "/labels/nobody:L/jobs",
    ):
        assert_refused(http.get(monitor.api + path, timeout=10), 404)


# --- never a 500 -----------------------------------------------------------------------------------

_TEXT = st.one_of(
    st.text(max_size=40), st.sampled_from(["running", "exiting", "fault", "1.0", "-1", "\x00", "\ud800", "é"])
)
_JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_TEXT, inner, max_size=4)),
    max_leaves=12,
)
_PATHS = st.sampled_from(
    [
        ("POST", "/api/jobs/{f}:1.0"),
        ("POST", "/api/labels/{f}:L"),
        ("POST", "/api/factories/{f}/messages"),
        ("PUT", "/api/jobs"),
        ("PUT", "/api/labels"),
        ("PUT", "/api/factories/{f}"),
        ("GET", "/mon/ex/{f}/1.0/{x}/"),
        ("GET", "/api/labels/{f}:{x}/jobs"),
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    target=_PATHS,
    body=_JSONISH,
    form=st.booleans(),
    x=st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12),
)
def test_random_input_never_500(
    factory: FactoryClient, target: tuple[str, str], body: object, form: bool, x: str
) -> None:
    method, template = target
    path = template.format(f=factory.name, x=quote(x, safe=""))
    headers = {"Authorization": f"Bearer {factory.token}"}
    if form and isinstance(body, dict):
        data = {
            str(k).encode("utf-8", "surrogatepass"): str(v).encode("utf-8", "surrogatepass")
            for k, v in body.items()
        }
        answer = factory.session.request(
            method, factory.monitor.url + path, data=data, headers=headers, timeout=10
        )
    else:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
        answer = factory.session.request(
            method, factory.monitor.url + path, data=payload, headers=headers, timeout=10
        )
    assert answer.status_code < 500, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    answer.json()
