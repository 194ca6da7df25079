"""Time bounds: every PanDA and CRIC request has a total deadline, and SIGTERM is
honoured within a couple of seconds while a server trickles its answer. A real TCP server on
127.0.0.1 that sends the headers, then one byte every 0.3 s; the real daemon in a subprocess."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from autopyfactory.edges.http import DeadlineExceeded, RequestAborted, make_session
from tests.support.e2e import Stand, write_config


class Trickler:
    """Answers every request with 200, a 10,000-byte Content-Length, then a byte every 0.3 s."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.requests = 0
        self.asked = threading.Event()
        self.closing = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                self.requests += 1
                self.asked.set()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n")
                while not self.closing.wait(0.3):
                    conn.sendall(b" ")
            except OSError:
                return

    def close(self) -> None:
        self.closing.set()
        self.sock.close()


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    server = Trickler()
    yield server
    server.close()


def test_a_trickling_answer_ends_at_the_total_deadline(trickler: Trickler) -> None:
    session = make_session(0, deadline=1.5)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"total deadline of 1\.5 s"):
        session.get(trickler.url, timeout=2)
    assert time.monotonic() - started < 3


def test_a_stop_request_abandons_the_request_at_once(trickler: Trickler) -> None:
    stop = threading.Event()
    session = make_session(0, deadline=60, stop_requested=stop.is_set)
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    with pytest.raises(RequestAborted):
        session.get(trickler.url, timeout=30)
    assert time.monotonic() - started < 2
    assert isinstance(RequestAborted(), requests.RequestException)  # callers already catch these


def test_a_good_answer_is_read_whole(stand: Stand) -> None:
    text = make_session(0, deadline=5).get(stand.cric_url, timeout=5).text
    assert text.startswith("{")
    assert text.rstrip().endswith("}")


def _config(tmp_path: Path, stand: Stand, panda_url: str) -> Path:
    conf = write_config(tmp_path, stand, "[NDGF-T1]")
    text = conf.read_text().replace(f"pandaserver = {stand.panda_url}", f"pandaserver = {panda_url}")
    conf.write_text(text)
    return conf


def test_a_cycle_against_a_trickling_panda_server_ends_at_the_deadline(
    tmp_path: Path, stand: Stand, condor, trickler: Trickler
) -> None:
    conf = _config(tmp_path, stand, trickler.url)  # httpTimeout = 2, httpRetries = 0
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "run", "-c", str(conf), "--once"],
        env=condor.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20
    assert "no complete answer within the total deadline of 2 s" in result.stderr


def test_sigterm_while_panda_trickles_is_honoured_within_seconds(
    tmp_path: Path, stand: Stand, condor, trickler: Trickler
) -> None:
    conf = _config(tmp_path, stand, trickler.url)
    conf.write_text(conf.read_text().replace("httpTimeout = 2", "httpTimeout = 60"))
    process = subprocess.Popen(
        [sys.executable, "-m", "autopyfactory", "run", "-c", str(conf)],
        env=condor.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert trickler.asked.wait(30), "the factory never asked PanDA"
        time.sleep(0.5)  # well inside the request
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert time.monotonic() - signalled < 5
        assert condor.calls("condor_submit") == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_sigterm_during_a_hanging_condor_q_is_honoured_within_seconds(
    tmp_path: Path, stand: Stand, condor
) -> None:
    stand.stats = {"NDGF-T1": {"activated": 10}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]")
    conf.write_text(conf.read_text().replace("condorTimeout = 3", "condorTimeout = 60"))
    condor.fail_next("condor_q", "hang", seconds=60)
    process = subprocess.Popen(
        [sys.executable, "-m", "autopyfactory", "run", "-c", str(conf)],
        env=condor.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not condor.calls("condor_q"):
            assert time.monotonic() < deadline, "the factory never ran condor_q"
            time.sleep(0.05)
        time.sleep(0.5)  # well inside the query
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert time.monotonic() - signalled < 5
        assert condor.calls("condor_submit") == []
        assert "abandoned, the factory is stopping" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
