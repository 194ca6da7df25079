"""Schedconfig: reading the CRIC dump from http(s), file:// and paths; the last-good copy; refresh."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from autopyfactory.edges.schedconfig import SchedconfigError, SchedconfigSource, parse_dump, read_source
from tests.support.paths import DATA
from tests.support.waiting import free_port

DUMP_TEXT = (DATA / "cric_dump.json").read_text()
DUMP = json.loads(DUMP_TEXT)
PATH = "/api/atlas/pandaqueue/query/"
TIMEOUT = 5.0


@pytest.fixture(scope="module")
def server() -> Iterator[HTTPServer]:
    http = HTTPServer(host="127.0.0.1", port=0)
    http.start()
    yield http
    http.clear()
    if http.is_running():
        http.stop()


@pytest.fixture
def cric(server: HTTPServer) -> Iterator[HTTPServer]:
    server.clear()
    yield server
    server.clear()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def url(server: HTTPServer) -> str:
    return server.url_for(PATH)


def serve(server: HTTPServer, body: str, status: int = 200) -> None:
    server.clear_all_handlers()
    server.expect_request(PATH).respond_with_data(body, status=status, content_type="application/json")


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "autopyfactory.edges.schedconfig"]


def source(
    location: str, cache: Path, session: requests.Session, clock: Clock, **kw: Any
) -> SchedconfigSource:
    return SchedconfigSource(location, cache, 600, session, TIMEOUT, clock, **kw)


# --- parse_dump -----------------------------------------------------------------------------------


def test_parse_dump_accepts_the_dump() -> None:
    dump = parse_dump(DUMP_TEXT, "x")
    assert sorted(dump) == ["CERN", "DOWN-SITE", "LEGACY-SITE", "NDGF-T1", "NOCE-SITE", "TEST-SITE"]
    assert len(dump["CERN"]["queues"]) == 13


def test_parse_dump_accepts_a_bare_record() -> None:
    text = (DATA / "cric_pandaqueue_CERN.json").read_text()
    dump = parse_dump(text, "x")
    assert list(dump) == ["CERN"]
    assert dump["CERN"] == json.loads(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<html>down</html>", "src: not JSON (Expecting value: line 1 column 1 (char 0))"),
        ("", "src: not JSON (Expecting value: line 1 column 1 (char 0))"),
        ("[1, 2]", "src: expected a JSON object {PQ: record}, got list"),
        ("null", "src: expected a JSON object {PQ: record}, got NoneType"),
        ("{}", "src: expected a JSON object {PQ: record}, got an empty object"),
        ('{"CERN": {"queues": []}, "X": [1]}', "src: record 'X' is not an object"),
        ('{"CERN": "online"}', "src: record 'CERN' is not an object"),
    ],
)
def test_parse_dump_rejects(text: str, message: str) -> None:
    with pytest.raises(SchedconfigError) as info:
        parse_dump(text, "src")
    assert str(info.value) == message


# --- read_source ----------------------------------------------------------------------------------


def test_read_plain_path_and_file_url(tmp_path: Path, session: requests.Session) -> None:
    directory = tmp_path / "with space"
    directory.mkdir()
    path = directory / "cric.json"
    path.write_text(DUMP_TEXT)
    assert read_source(str(path), session, TIMEOUT) == DUMP_TEXT
    assert read_source(f"file://{path}", session, TIMEOUT) == DUMP_TEXT
    assert read_source(f"file://{quote(str(path))}", session, TIMEOUT) == DUMP_TEXT


def test_read_missing_path(tmp_path: Path, session: requests.Session) -> None:
    with pytest.raises(SchedconfigError) as info:
        read_source(f"file://{tmp_path}/none.json", session, TIMEOUT)
    assert str(info.value) == f"{tmp_path}/none.json: No such file or directory"


def test_read_binary_file_is_an_error(tmp_path: Path, session: requests.Session) -> None:
    path = tmp_path / "cric.json"
    path.write_bytes(b'{"CERN": "\xff"}')
    with pytest.raises(SchedconfigError) as info:
        read_source(str(path), session, TIMEOUT)
    assert str(info.value).startswith(f"{path}: not UTF-8 text")


def test_read_http(cric: HTTPServer, session: requests.Session) -> None:
    serve(cric, DUMP_TEXT)
    assert read_source(url(cric) + "?json", session, TIMEOUT) == DUMP_TEXT
    ((request, _),) = cric.log
    assert request.headers["Accept"] == "application/json"
    assert request.query_string == b"json"


def test_read_http_error_status(cric: HTTPServer, session: requests.Session) -> None:
    serve(cric, "oops", status=500)
    with pytest.raises(SchedconfigError) as info:
        read_source(url(cric), session, TIMEOUT)
    assert str(info.value) == f"{url(cric)}: HTTP 500"


def test_read_http_timeout(cric: HTTPServer, session: requests.Session) -> None:
    release = threading.Event()

    def slow(_request: Request) -> Response:
        release.wait(10)  # until the client has given up (no fixed sleep)
        return Response("{}", status=200)

    cric.expect_request(PATH).respond_with_handler(slow)
    try:
        with pytest.raises(SchedconfigError) as info:
            read_source(url(cric), session, 0.05)
    finally:
        release.set()
    assert str(info.value).startswith(f"{url(cric)}: ")
    assert "timed out" in str(info.value)


def test_read_http_connection_refused(session: requests.Session) -> None:
    port = free_port()
    location = f"http://127.0.0.1:{port}{PATH}"
    with pytest.raises(SchedconfigError) as info:
        read_source(location, session, TIMEOUT)
    assert str(info.value).startswith(f"{location}: ")


# --- SchedconfigSource ----------------------------------------------------------------------------


def test_good_download_is_used_and_written_atomically(
    cric: HTTPServer, session: requests.Session, tmp_path: Path
) -> None:
    serve(cric, DUMP_TEXT)
    cache = tmp_path / "state" / "schedconfig.json"
    clock = Clock()
    snapshot = source(url(cric), cache, session, clock).get()
    assert snapshot.data == DUMP
    assert snapshot.source == url(cric)
    assert cache.read_text() == DUMP_TEXT
    assert [p.name for p in cache.parent.iterdir()] == ["schedconfig.json"]  # no temporary file left


def test_keep_copy_false_writes_nothing(cric: HTTPServer, session: requests.Session, tmp_path: Path) -> None:
    serve(cric, DUMP_TEXT)
    cache = tmp_path / "state" / "schedconfig.json"
    snapshot = source(url(cric), cache, session, Clock(), keep_copy=False).get()
    assert snapshot.data == DUMP
    assert not cache.parent.exists()
    assert list(tmp_path.iterdir()) == []


def test_refresh_interval_is_honoured(cric: HTTPServer, session: requests.Session, tmp_path: Path) -> None:
    serve(cric, DUMP_TEXT)
    clock = Clock()
    start = clock.now
    sc = source(url(cric), tmp_path / "sc.json", session, clock)
    first = sc.get()
    assert len(cric.log) == 1
    clock.now = start + 599
    assert sc.get() is first
    assert len(cric.log) == 1
    clock.now = start + 600
    second = sc.get()
    assert len(cric.log) == 2
    assert second is not first
    clock.now = start + 1199
    assert sc.get() is second
    assert len(cric.log) == 2


def test_refresh_zero_downloads_every_time(
    cric: HTTPServer, session: requests.Session, tmp_path: Path
) -> None:
    serve(cric, DUMP_TEXT)
    sc = SchedconfigSource(url(cric), tmp_path / "sc.json", 0, session, TIMEOUT, Clock())
    for _ in range(3):
        sc.get()
    assert len(cric.log) == 3


@pytest.mark.parametrize(
    ("status", "body", "problem"),
    [
        (500, "Internal Server Error", "HTTP 500"),
        (200, "<html>maintenance</html>", "not JSON (Expecting value: line 1 column 1 (char 0))"),
        (200, '{"CERN": ["not", "a", "record"]}', "record 'CERN' is not an object"),
        (200, "[]", "expected a JSON object {PQ: record}, got list"),
    ],
)
def test_failure_keeps_the_copy_in_memory(
    cric: HTTPServer,
    session: requests.Session,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    status: int,
    body: str,
    problem: str,
) -> None:
    serve(cric, DUMP_TEXT)
    clock = Clock()
    cache = tmp_path / "sc.json"
    sc = source(url(cric), cache, session, clock)
    good = sc.get()
    serve(cric, body, status)
    clock.now += 600
    with caplog.at_level(logging.WARNING, logger="autopyfactory.edges.schedconfig"):
        assert sc.get() is good
    assert messages(caplog) == [f"schedconfig: {url(cric)}: {problem}; keeping the copy from {url(cric)}"]
    assert cache.read_text() == DUMP_TEXT  # the bad answer did not replace the last-good copy
    # a failed attempt counts for the refresh interval too
    clock.now += 599
    assert sc.get() is good
    assert len(cric.log) == 2


def test_failure_after_restart_uses_the_copy_on_disk(
    cric: HTTPServer, session: requests.Session, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    serve(cric, DUMP_TEXT)
    cache = tmp_path / "state" / "schedconfig.json"
    source(url(cric), cache, session, Clock()).get()
    serve(cric, "boom", 503)
    restarted = source(url(cric), cache, session, Clock(2_000_000.0))
    with caplog.at_level(logging.WARNING, logger="autopyfactory.edges.schedconfig"):
        snapshot = restarted.get()
    assert snapshot.data == DUMP
    assert snapshot.source == f"last-good copy {cache}"
    assert messages(caplog) == [f"schedconfig: {url(cric)}: HTTP 503; using the last-good copy {cache}"]


def test_no_source_and_no_copy_raises_and_retries_next_time(
    cric: HTTPServer, session: requests.Session, tmp_path: Path
) -> None:
    serve(cric, "boom", 500)
    cache = tmp_path / "sc.json"
    sc = source(url(cric), cache, session, Clock())
    with pytest.raises(SchedconfigError) as info:
        sc.get()
    assert str(info.value) == (
        f"{url(cric)}: HTTP 500; no last-good copy either ({cache}: No such file or directory)"
    )
    assert not cache.exists()
    serve(cric, DUMP_TEXT)
    assert sc.get().data == DUMP  # nothing good yet, so the interval does not hold it back
    assert len(cric.log) == 2


@pytest.mark.parametrize(("content", "why"), [(b"garbage", "not JSON"), (b"\xff\xfe", "not UTF-8 text")])
def test_broken_copy_on_disk_is_not_used(
    session: requests.Session, tmp_path: Path, content: bytes, why: str
) -> None:
    cache = tmp_path / "sc.json"
    cache.write_bytes(content)
    with pytest.raises(SchedconfigError) as info:
        source(str(tmp_path / "missing.json"), cache, session, Clock()).get()
    assert str(info.value).startswith(
        f"{tmp_path / 'missing.json'}: No such file or directory; no last-good copy"
    )
    assert why in str(info.value)


def test_copy_that_cannot_be_written_does_not_lose_the_download(
    cric: HTTPServer, session: requests.Session, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    serve(cric, DUMP_TEXT)
    (tmp_path / "state").write_text("a file where the state directory should be")
    cache = tmp_path / "state" / "schedconfig.json"
    with caplog.at_level(logging.WARNING, logger="autopyfactory.edges.schedconfig"):
        snapshot = source(url(cric), cache, session, Clock()).get()
    assert snapshot.data == DUMP
    assert len(messages(caplog)) == 1
    assert messages(caplog)[0].startswith(f"schedconfig: cannot write the last-good copy {cache}: ")


def test_file_source_and_plain_path(tmp_path: Path, session: requests.Session) -> None:
    dump_file = tmp_path / "cric_pandaqueues.json"
    dump_file.write_text(DUMP_TEXT)
    for location in (f"file://{dump_file}", str(dump_file)):
        cache = tmp_path / "copy.json"
        snapshot = source(location, cache, session, Clock()).get()
        assert snapshot.data == DUMP
        assert snapshot.source == location
        assert cache.read_text() == DUMP_TEXT
        cache.unlink()


def test_bare_record_source_round_trips_through_the_copy(tmp_path: Path, session: requests.Session) -> None:
    record = DATA / "cric_pandaqueue_CERN.json"
    cache = tmp_path / "copy.json"
    first = source(str(record), cache, session, Clock()).get()
    assert list(first.data) == ["CERN"]
    again = source(str(tmp_path / "gone.json"), cache, session, Clock()).get()
    assert again.data == first.data
