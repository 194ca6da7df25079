"""The lean path of the wrappers' reports (pilot_reports.PilotReports) answers exactly as the
FastAPI routes do: the same requests sent to a monitor with it and to one without it get the same
status, headers and body, and the well-formed ones never reach FastAPI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
import requests
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from autopyfactory.domain.pilot_keys import key_digest, new_pilot_key
from autopyfactory.monitor_service.pilot_reports import PilotReports, route_path
from tests.support.monitor import Monitor, new_factory, start_monitor

LABEL = "LEAN-L"
FORM = "application/x-www-form-urlencoded"

# (method, path below the factory's job or v1 prefix, body, content type, answered by the lean path)
REPORTS: list[tuple[str, str, str, str, bool]] = [
    ("POST", "/api/jobs/{f}:1.0", "state=running", FORM, True),
    ("POST", "/api/jobs/{f}:1.0", "state=running", FORM, True),  # replay: 200, unchanged
    ("POST", "/api/jobs/{f}:1.0", '{"state": "exiting", "rc": 3, "ids": "11,12"}', "application/json", True),
    ("POST", "/api/jobs/{f}:1.0", "state=running", FORM, True),  # illegal: 409, recorded
    ("POST", "/api/jobs/{f}:9.0", "state=running", FORM + "; charset=utf-8", True),  # unknown job: 404
    ("POST", "/api/jobs/nobody:1.0", "state=running", FORM, True),  # unknown factory: 404
    ("POST", "/api/jobs/{f}:2.0", "state=fault&rc=&ids=", FORM, True),  # blank rc and ids: none
    ("POST", "/api/jobs/{f}:3.0", "state=created", FORM, False),  # 422
    ("POST", "/api/jobs/{f}:3.0", "state=running&state=fault", FORM, False),  # 400
    ("POST", "/api/jobs/{f}:3.0", "[1]", "application/json", False),  # 400
    ("POST", "/api/jobs/{f}:3.0", "state=running", "text/plain", False),  # 415
    ("POST", "/api/jobs/{f}:3.0", "", "", False),  # 422: no state
    ("POST", "/api/jobs/{f}:3.x", "state=running", FORM, False),  # 422: the key's pattern
    ("GET", "/mon/rn/{f}/4.0/", "", "", True),
    ("GET", "/mon/ex/{f}/4.0/0", "", "", True),
    ("GET", "/mon/ex/{f}/5.0/7/", "", "", True),  # CREATED, rc != 0: fault
    ("GET", "/mon/ex/{f}/4.0/007/", "", "", True),  # decimal digits: 7
    ("POST", "/api/jobs/{f}:4.0/", "state=fault", FORM, True),  # a trailing slash: answered, not 307
    ("GET", "/mon/ex/{f}/4.0/0%0a/", "", "", False),  # 422: "0\n" is no exit code
    ("GET", "/mon/ex/{f}/4.0/+5/", "", "", False),  # 422
    ("GET", "/mon/ex/{f}/4.0/1_0/", "", "", False),  # 422 (int() would read 10)
    ("POST", "/api/jobs/{f}:3.0", "state=exiting&rc=1_0", FORM, False),  # 422
    ("POST", "/api/jobs/{f}:3.0", "state=exiting&rc=%2B5", FORM, False),  # 422: "+5"
    ("POST", "/api/jobs/{f}:3.0", "state=exiting&rc=0%0a", FORM, False),  # 422: "0\n"
    ("POST", "/api/jobs/{f}:3.0", "state=exiting&rc=1.0", FORM, False),  # 422
    ("POST", "/api/jobs/{f}:3.0", '{"state": "exiting", "rc": true}', "application/json", False),  # 422
    ("POST", "/api/jobs/{f}:3.0", '{"state": "exiting", "rc": 1.0}', "application/json", False),  # 422
    ("POST", "/api/jobs/{f}:3.0", '{"state": "exiting", "rc": "1_0"}', "application/json", False),  # 422
    ("POST", "/api/jobs/{f}:3.0", '\ufeff{"state": "running"}', "application/json", True),  # 400: BOM
    ("POST", "/api/jobs/{f}:3.0", "utf-16:" + '{"state": "running"}', "application/json", True),  # 400
    (
        "POST",
        "/api/jobs/{f}:3.0",
        json.dumps({"state": "running", **{f"k{n}": n for n in range(20)}}),
        "application/json",
        False,
    ),  # 400: at most 20 keys
    (
        "POST",
        "/api/jobs/{f}:3.0",
        "state=running&" + "&".join(f"k{n}=" for n in range(20)),
        FORM,
        False,
    ),  # 400
    ("POST", "/api/jobs/{f}:3.0", "state=running&pad=" + "x" * 9000, FORM, True),  # 413: 8 KiB at most
    ("GET", "/mon/ex/{f}/4.0/256/", "", "", False),  # 422
    ("GET", "/mon/rn/{f}/6.x/", "", "", False),  # 422
    ("GET", "/mon/rn/{f}/1.0/", "", "", True),  # illegal: 409
]


class Recorder:
    """Stands between PilotReports and the app: records the route paths that reach FastAPI."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(route_path(scope))
        await self.app(scope, receive, send)


def layers(monitor: Monitor) -> list[Any]:
    """The app's middleware stack, outermost first (each middleware keeps the next one as .app)."""
    found: list[Any] = []
    layer: Any = monitor.server.app.middleware_stack
    while layer is not None and not isinstance(layer, FastAPI):
        found.append(layer)
        layer = getattr(layer, "app", None)
    return found


def lean_layer(monitor: Monitor) -> PilotReports:
    (layer,) = [layer for layer in layers(monitor) if isinstance(layer, PilotReports)]
    return layer


@pytest.fixture(scope="module")
def pair(db_url: str) -> Iterator[tuple[Monitor, Monitor]]:
    """One monitor with the lean path and one without it, on databases of the same kind."""
    lean = start_monitor(db_url)
    plain = start_monitor(db_url)
    app = plain.server.app
    app.user_middleware = [m for m in app.user_middleware if m.cls is not PilotReports]
    app.middleware_stack = None  # built again, without it, by the next request
    try:
        yield lean, plain
    finally:
        lean.server.stop()
        plain.server.stop()


def test_the_same_answers_with_and_without_the_lean_path(
    pair: tuple[Monitor, Monitor], http: requests.Session
) -> None:
    lean = pair[0]
    factories = [new_factory(monitor, http) for monitor in pair]
    for factory in factories:
        assert factory.create(LABEL, "1.0", "2.0", "3.0", "4.0", "5.0").status_code == 200
    assert factories[0].name != factories[1].name  # one database: each side has its own jobs
    assert not any(isinstance(layer, PilotReports) for layer in layers(pair[1]))
    recorder = Recorder(lean_layer(lean).app)
    lean_layer(lean).app = recorder
    for method, template, body, kind, expect_lean in REPORTS:
        recorder.paths.clear()
        answers = []
        for monitor, factory in zip(pair, factories, strict=True):
            path = template.format(f=factory.name)
            headers = {"Content-Type": kind} if kind else {}
            url = monitor.url + path
            raw = body[len("utf-16:") :].encode("utf-16") if body.startswith("utf-16:") else body.encode()
            response = http.request(method, url, data=raw, headers=headers, timeout=30)
            text = response.text.replace(factory.name, "<f>")
            answers.append((response.status_code, response.headers.get("content-type"), text))
        assert answers[0] == answers[1], (method, template, body)
        reached_fastapi = unquote(template.format(f=factories[0].name)) in recorder.paths
        assert reached_fastapi is not expect_lean, (method, template, body, answers[0])
    for factory in factories:  # the refused report is in the events on both sides
        events = factory.job("1.0")["events"]
        assert isinstance(events, list)
        refused = [(e["old_state"], e["new_state"]) for e in events if not e["accepted"]]
        assert refused == [("EXITING", "RUNNING"), ("EXITING", "RUNNING")]


def test_pilot_keys_the_same_with_and_without_the_lean_path(
    pair: tuple[Monitor, Monitor], http: requests.Session
) -> None:
    """Reports with and without pilot keys, for a factory that requires them: the same answers and
    the same counts on both paths."""
    lean = pair[0]
    key = new_pilot_key()
    factories = [new_factory(monitor, http) for monitor in pair]
    for factory in factories:
        jobs = [
            {"cid": "1.0", "label": LABEL, "factory": factory.name, "key_sha256": key_digest(key)},
            {"cid": "2.0", "label": LABEL, "factory": factory.name},
        ]
        assert factory.call("PUT", "/jobs", jobs).status_code == 200
        factory.monitor.services.store.set_pilot_keys(factory.name, required=True)
    recorder = Recorder(lean_layer(lean).app)
    lean_layer(lean).app = recorder
    cases = [  # (method, path, body, Authorization, answered by the lean path)
        ("POST", "/api/jobs/{f}:1.0", "state=running", "", True),  # 403 unsigned
        ("POST", "/api/jobs/{f}:1.0", "state=running", f"Bearer {new_pilot_key()}", True),  # 403 wrong
        ("POST", "/api/jobs/{f}:1.0", "state=running", "Bearer apfp_short", True),  # 403 wrong
        ("POST", "/api/jobs/{f}:1.0", "state=running", "Basic dXNlcjpwYXNz", True),  # 403 unsigned
        ("POST", "/api/jobs/{f}:2.0", "state=running", f"Bearer {key}", True),  # 403: no digest
        ("GET", "/mon/rn/{f}/1.0/", "", f"Bearer {key}", True),  # 403: v1 is off
        ("GET", "/mon/ex/{f}/1.0/0", "", "", True),  # 403
        ("POST", "/api/jobs/{f}:1.0", "state=running", f"Bearer {key}", True),  # 200
        ("POST", "/api/jobs/{f}:1.0/", "state=exiting&rc=0", f"bearer {key}", True),  # 200
        ("POST", "/api/jobs/{f}:1.0", "state=bogus", f"Bearer {key}", False),  # 422 before the key
        ("POST", "/api/jobs/{f}:9.0", "state=running", f"Bearer {key}", True),  # 404 before the key
    ]
    for method, template, body, authorization, expect_lean in cases:
        recorder.paths.clear()
        answers = []
        for monitor, factory in zip(pair, factories, strict=True):
            headers = {"Content-Type": FORM} if body else {}
            if authorization:
                headers["Authorization"] = authorization
            url = monitor.url + template.format(f=factory.name)
            response = http.request(method, url, data=body.encode(), headers=headers, timeout=30)
            answers.append((response.status_code, response.text.replace(factory.name, "<f>")))
        assert answers[0] == answers[1], (method, template, authorization)
        assert (recorder.paths != []) is not expect_lean, (method, template, answers[0])
    counted = []
    for factory in factories:
        detail = http.get(f"{factory.monitor.api}/factories/{factory.name}", timeout=10).json()
        counted.append((detail["key_refusals"]["unsigned"], detail["key_refusals"]["wrong_key"]))
    assert counted == [(4, 3), (4, 3)]
