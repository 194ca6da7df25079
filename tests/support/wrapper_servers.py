"""Real servers on 127.0.0.1 for the wrapper tests: an HTTP server that serves pilot tarballs and
records monitor calls, and a TCP server that accepts connections and never answers."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    form: dict[str, list[str]]
    authorization: str | None = None


@dataclass
class Route:
    body: bytes
    status: int = 200
    content_type: str = "application/octet-stream"
    fail_first: int = 0  # answer 503 to this many requests first


@dataclass
class RecordingServer:
    """Serves ``routes`` (GET) and answers the monitor (``/api/...`` POST, ``/mon/...`` GET)
    with ``monitor_status``, or first with the statuses queued in ``monitor_script`` (one per
    call); records every request in ``calls``. While ``hold`` is set, a monitor call waits (at
    most 30 s) until it is cleared: a monitor that takes its time."""

    routes: dict[str, Route] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    monitor_status: int = 200
    monitor_script: list[int] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                form = parse_qs(body, keep_blank_values=True)
                owner.calls.append(Call(method, self.path, form, self.headers.get("Authorization")))
                route = owner.routes.get(self.path)
                if self.path.startswith(("/api/", "/mon/")):
                    if owner.hold.is_set():
                        owner.released.wait(30)
                    status = owner.monitor_script.pop(0) if owner.monitor_script else owner.monitor_status
                    self._answer(status, b'{"ok": true}', "application/json")
                elif route is None:
                    self._answer(404, b"<html><body>404 Not Found</body></html>", "text/html")
                elif route.fail_first > 0:
                    route.fail_first -= 1
                    self._answer(503, b"<html>busy</html>", "text/html")
                else:
                    self._answer(route.status, route.body, route.content_type)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def serve(
        self,
        path: str,
        body: bytes,
        *,
        status: int = 200,
        content_type: str = "application/octet-stream",
        fail_first: int = 0,
    ) -> str:
        """Serve ``body`` at ``path``; return its URL."""
        self.routes[path] = Route(body, status, content_type, fail_first)
        return self.base + path

    def monitor_calls(self) -> list[tuple[str, str, dict[str, list[str]]]]:
        return [(c.method, c.path, c.form) for c in self.calls if c.path.startswith(("/api/", "/mon/"))]

    def monitor_states(self) -> list[str]:
        """The ``state`` of every v2 monitor call, in order."""
        return [c.form["state"][0] for c in self.calls if c.path.startswith("/api/") and "state" in c.form]

    def fetches(self) -> list[str]:
        return [c.path for c in self.calls if not c.path.startswith(("/api/", "/mon/"))]


class SilentServer:
    """Accepts TCP connections and never answers: a hanging monitor or pilot source."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self.accepted = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def base(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)
            self.accepted += 1

    def wait_accepted(self, count: int, within: float) -> int:
        deadline = time.monotonic() + within
        while self.accepted < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.accepted

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._held:
            conn.close()
        self._sock.close()
