"""A PanDA server stand-in on 127.0.0.1 for the real pilot 3: what the pilot asks before and when it
asks for a job, answered as the real services do (CONTRACTS §4).

- ``GET /cache/pilot/pilot3.tar.gz``: the pilot tarball (the server's static cache);
- ``GET /cache/schedconfig/<queue>.all.json``: the queue's CRIC record (pilot 3's
  ``--queuedata-url``; a record, not keyed by queue);
- ``GET /cache/ddmendpoints.json``: DDM endpoints (``--storagedata-url``), none;
- ``POST /server/panda/getJob``: recorded; "no job" (``StatusCode`` 20) unless ``job`` is set,
  or refused as panda-server 1.0.4 refuses it over plain http (403, ``ERROR : method getJob is
  forbidden``) when ``refuse_get_job`` is set;
- any other ``POST /server/panda/...``: ``StatusCode`` 0;
- ``/api/...``: the monitor's wrapper reports, recorded and accepted.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

NO_JOBS = 20  # PanDA's StatusCode for "no job for you"


@dataclass
class PandaStandIn:
    records: dict[str, dict[str, Any]]
    tarball: bytes
    job: dict[str, Any] | None = None
    refuse_get_job: bool = False
    calls: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def get_jobs(self) -> list[dict[str, list[str]]]:
        return [form for method, path, form in self.calls if path == "/server/panda/getJob"]

    def monitor_calls(self) -> list[dict[str, list[str]]]:
        return [form for method, path, form in self.calls if path.startswith("/api/")]

    def wait_for_get_job(self, within: float) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.get_jobs():
                return True
            time.sleep(0.1)
        return False

    def _answer(self, method: str, path: str) -> tuple[int, bytes, str]:
        if method == "GET" and path == "/cache/pilot/pilot3.tar.gz":
            return 200, self.tarball, "application/gzip"
        if method == "GET" and path.startswith("/cache/schedconfig/") and path.endswith(".all.json"):
            record = self.records.get(path[len("/cache/schedconfig/") : -len(".all.json")])
            if record is None:
                return 404, b'{"error": "no such queue"}', "application/json"
            return 200, json.dumps(record).encode(), "application/json"
        if method == "GET" and path == "/cache/ddmendpoints.json":
            return 200, b"{}", "application/json"
        if method == "POST" and path == "/server/panda/getJob" and self.refuse_get_job:
            return 403, b"ERROR : method getJob is forbidden", "text/plain"
        if method == "POST" and path == "/server/panda/getJob":
            answer = self.job if self.job is not None else {"StatusCode": NO_JOBS}
            return 200, json.dumps(answer).encode(), "application/json"
        if method == "POST" and path.startswith(("/server/panda/", "/api/")):
            return 200, json.dumps({"StatusCode": 0}).encode(), "application/json"
        return 404, b"not found", "text/plain"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode(errors="replace") if length else ""
                path = urlparse(self.path).path
                owner.calls.append((method, path, parse_qs(body, keep_blank_values=True)))
                status, data, kind = owner._answer(method, path)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
