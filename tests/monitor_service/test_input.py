"""Malformed input always ends in a 4xx with a readable ``detail``, never in a 500, and never
changes data."""

from __future__ import annotations

import json
import socket
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopyfactory.monitor_service.deps import fields_of
from autopyfactory.monitor_service.errors import MonitorError
from autopyfactory.monitor_service.schemas import JobUpdateIn
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
        (b"[" * 4000 + b"]" * 4000, "application/json", 400),  # nested too deep
        (b"[" * 100000 + b"]" * 100000, "application/json", 413),  # a report is a few hundred bytes
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


# --- exit codes, JSON encodings, trailing slashes: strict ----------------------------------------


@pytest.mark.parametrize(
    "rc", ["true", "1.0", "1_0", "+5", "0\n", " 5", "5 ", "\u0663", "0x1", "-0", "256", "1e2"]
)
def test_a_form_rc_is_decimal_digits_only(factory: FactoryClient, rc: str) -> None:
    factory.create("L", "1.0")
    detail = assert_refused(factory.pilot("1.0", state="exiting", rc=rc), 422)
    assert "rc" in detail
    assert factory.job("1.0")["state"] == "CREATED"


@pytest.mark.parametrize("rc", [True, False, 1.0, "1_0", "+5", "0\n", 256, -1, "1e2", [1]])
def test_a_json_rc_is_an_integer(factory: FactoryClient, http: requests.Session, rc: object) -> None:
    factory.create("L", "1.0")
    answer = http.post(
        f"{factory.monitor.api}/jobs/{factory.name}:1.0", json={"state": "exiting", "rc": rc}, timeout=10
    )
    assert "rc" in assert_refused(answer, 422)
    assert factory.job("1.0")["state"] == "CREATED"


@pytest.mark.parametrize(("rc", "read"), [("7", 7), ("007", 7), ("255", 255), ("0", 0), ("", None)])
def test_decimal_rcs_are_read_as_written(factory: FactoryClient, rc: str, read: int | None) -> None:
    factory.create("L", "1.0")
    assert factory.pilot("1.0", state="fault", rc=rc).status_code == 200
    assert factory.job("1.0")["rc"] == read


@pytest.mark.parametrize("rc", ["0%0a", "%2B5", "1_0", "1.0", "256", "%205", "%D9%A3"])
def test_a_v1_rc_in_the_path_is_decimal_digits_only(
    factory: FactoryClient, http: requests.Session, rc: str
) -> None:
    factory.create("L", "1.0")
    answer = http.get(f"{factory.monitor.url}/mon/ex/{factory.name}/1.0/{rc}/", timeout=10)
    assert_refused(answer, 422)
    assert factory.job("1.0")["state"] == "CREATED"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"])
def test_json_must_be_utf8(factory: FactoryClient, http: requests.Session, encoding: str) -> None:
    """RFC 8259: JSON between systems is UTF-8; json.loads of bytes would also read these."""
    factory.create("L", "1.0")
    report = json.dumps({"state": "running"}).encode(encoding)
    answer = http.post(
        f"{factory.monitor.api}/jobs/{factory.name}:1.0",
        data=report,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert "UTF-8" in assert_refused(answer, 400)
    labels = json.dumps([{"name": "L", "factory": factory.name, "batchqueue": "PQ"}]).encode(encoding)
    answer = factory.session.put(
        f"{factory.monitor.api}/labels",
        data=labels,
        headers={"Authorization": f"Bearer {factory.token}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert "UTF-8" in assert_refused(answer, 400)
    assert factory.job("1.0")["state"] == "CREATED"


def test_a_report_with_a_trailing_slash_is_answered_not_redirected(
    factory: FactoryClient, http: requests.Session
) -> None:
    factory.create("L", "1.0", "2.0")
    url = f"{factory.monitor.api}/jobs/{factory.name}:1.0/"
    answer = http.post(url, data={"state": "running"}, allow_redirects=False, timeout=10)
    assert answer.status_code == 200, answer.text
    assert factory.job("1.0")["state"] == "RUNNING"
    json_answer = http.post(
        f"{factory.monitor.api}/jobs/{factory.name}:2.0/",
        json={"state": "fault"},
        allow_redirects=False,
        timeout=10,
    )
    assert json_answer.status_code == 200, json_answer.text
    assert factory.job("2.0")["state"] == "FAULT"


# --- bounded bodies: an unauthenticated client cannot make the service parse megabytes ----------

TWO_MILLION_FIELDS = b"&" * (2 * 1024 * 1024 - 1) + b"state=running"  # 2 MiB of empty fields, then one
FOUR_MIB_FORM = b"&".join([b"a="] * (4 * 1024 * 1024 // 3))


def test_a_large_report_is_refused_before_its_body_is_read(factory: FactoryClient, monitor: Monitor) -> None:
    """The headers alone announce 4 MiB: 413 comes back while the body has not been sent."""
    factory.create("L", "1.0")
    head = (
        f"POST /api/jobs/{factory.name}:1.0 HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 4194304\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", monitor.server.port), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = sock.recv(65536)
    assert answer.split(b" ", 2)[1] == b"413", answer
    assert b"8192" in answer


def test_millions_of_fields_or_keys_are_refused_and_reads_go_on(
    factory: FactoryClient, http: requests.Session
) -> None:
    """The 4 MiB body of two million empty form fields and the 4 MiB JSON of 400,000 unknown keys
    (both once accepted for parsing) are refused by size, several at once, while the factory list
    keeps being answered."""
    factory.create("L", "1.0")
    url = f"{factory.monitor.api}/jobs/{factory.name}:1.0"
    keys = json.dumps({"state": "running", **{f"k{n}": n for n in range(400000)}}).encode()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    bodies = [(FOUR_MIB_FORM, form), (keys, {"Content-Type": "application/json"})] * 3

    def post(item: tuple[bytes, dict[str, str]]) -> int:
        with requests.Session() as session:
            session.trust_env = False
            return session.post(url, data=item[0], headers=item[1], timeout=60).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        posted = pool.map(post, bodies)
        listed = [http.get(f"{factory.monitor.api}/factories", timeout=60).status_code for _ in range(10)]
        statuses = list(posted)
    assert statuses == [413] * len(bodies)
    assert listed == [200] * 10
    assert factory.job("1.0")["state"] == "CREATED"


def test_form_fields_are_counted_while_splitting() -> None:
    """Two million fields are refused after the first 20, without building the list of two
    million that parse_qsl made (hundreds of MB): measured by the parser's peak memory."""
    tracemalloc.start()
    try:
        with pytest.raises(MonitorError, match="too many form fields"):
            fields_of("application/x-www-form-urlencoded", TWO_MILLION_FIELDS, JobUpdateIn)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * len(TWO_MILLION_FIELDS) + 1024 * 1024, peak


@pytest.mark.parametrize(("extra", "status"), [(19, 200), (20, 400)])
def test_a_json_report_has_at_most_20_keys(
    factory: FactoryClient, http: requests.Session, extra: int, status: int
) -> None:
    """Unknown keys are ignored (wrappers in the field are old and varied), up to a bound."""
    factory.create("L", "1.0")
    body = {"state": "running", **{f"unknown{n}": n for n in range(extra)}}
    answer = http.post(f"{factory.monitor.api}/jobs/{factory.name}:1.0", json=body, timeout=10)
    assert answer.status_code == status, answer.text


def test_a_chunked_report_is_bounded_too(factory: FactoryClient, http: requests.Session) -> None:
    factory.create("L", "1.0")

    def chunks() -> Iterator[bytes]:
        yield b"state=running"
        for _ in range(64):
            yield b"&pad=" + b"x" * 1024

    answer = http.post(
        f"{factory.monitor.api}/jobs/{factory.name}:1.0",
        data=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert_refused(answer, 413)
    assert factory.job("1.0")["state"] == "CREATED"


def test_a_bulk_body_is_read_only_after_the_token(factory: FactoryClient, http: requests.Session) -> None:
    """Without a valid token the body of a bulk write is never parsed: 401, not a JSON error."""
    for headers in ({}, {"Authorization": "Bearer apfm_" + "x" * 43}):
        answer = http.put(
            f"{factory.monitor.api}/jobs",
            data=b"[{not json" + b" " * 100000,
            headers={**headers, "Content-Type": "application/json"},
            timeout=10,
        )
        assert_refused(answer, 401)
    answer = factory.call("PUT", "/jobs", None, {"Authorization": f"Bearer {factory.token}"})
    assert_refused(answer, 422)  # with the token, the bad body is refused for what it is
