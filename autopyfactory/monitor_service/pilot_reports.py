"""The wrappers' reports, answered without FastAPI's request machinery.

Pilot reports are nearly all of the monitor's traffic (two or more per pilot, thousands per second
for a central monitor), and each is tiny: a profile of the service under load showed that routing,
the middleware stack, dependency solving and the response model cost more CPU than the report's
database work. :class:`PilotReports` (ASGI middleware) therefore answers exactly these requests
itself when they are well formed:

- ``POST /api/jobs/{factory}:{cid}`` (with or without a trailing slash) with a form or JSON body
  that validates as :class:`~schemas.JobUpdateIn`, and the pilot's key if it carries one
  (``Authorization: Bearer apfp_...``, see :mod:`pilot_keys`);
- API v1 ``GET /mon/rn/{fid}/{cid}/`` and ``GET /mon/ex/{fid}/{cid}/{rc}/`` (with or without the
  trailing slash).

The same validation (the same patterns and the same model), the same store call and the same
answers (200 with :class:`~schemas.TransitionOut`, 403, 404, 409, 503) as the FastAPI routes in
:mod:`routes_write`, which stay the documented endpoints. Every other request, and every report
that does not parse or validate, goes on to the FastAPI app unchanged (its body replayed), so
errors are answered there, word for word as before.
"""

from __future__ import annotations

import json
import logging
import re
from functools import partial
from typing import Any

from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autopyfactory.monitor_service.deps import Services, fields_of, validated
from autopyfactory.monitor_service.errors import Conflict, MonitorError
from autopyfactory.monitor_service.pilot_keys import presented_key
from autopyfactory.monitor_service.schemas import CID_PATTERN, FID_PATTERN, JobUpdateIn, TransitionOut
from autopyfactory.monitor_service.states import JobState, legacy_exit_target
from autopyfactory.monitor_service.store import PilotReport, TargetRule, Transition

log = logging.getLogger(__name__)

_FID = FID_PATTERN.strip("^$")
_CID = CID_PATTERN.strip("^$")
_POST = re.compile(rf"/api/jobs/({_FID}):({_CID})/?")
_RUNNING = re.compile(rf"/mon/rn/({_FID})/({_CID})/?")
_EXITING = re.compile(rf"/mon/ex/({_FID})/({_CID})/([0-9]{{1,3}})/?")
_JSON_HEADERS = [(b"content-type", b"application/json")]
DATABASE_UNAVAILABLE = "database unavailable, try again later"


async def report(svc: Services, item: PilotReport) -> Transition:
    """One report, by group commit when it is on (the answer waits for the commit), else in a
    transaction of its own."""
    if svc.writer is None:
        return await run_in_threadpool(svc.store.report, item)
    outcome = await svc.writer.run_together(svc.store.reports_in, item)
    assert isinstance(outcome, Transition)
    return outcome


def answer(outcome: Transition) -> TransitionOut:
    """The 200 answer of an accepted report; a refused one is a 409."""
    if not outcome.accepted:
        raise Conflict(f"job {outcome.job}: {outcome.detail}")
    return TransitionOut(job=outcome.job, state=outcome.state, changed=outcome.changed, detail=outcome.detail)


def error_body(detail: str) -> bytes:
    """An error answer's body, as the app's handlers write it (ASCII, compact)."""
    return json.dumps({"detail": detail}, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def route_path(scope: Scope) -> str:
    """The path below the app's root path (as Starlette's router sees it)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return path


class PilotReports:
    """ASGI middleware answering well-formed pilot reports directly (see the module docstring)."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        path = route_path(scope)
        if method == "POST" and (found := _POST.fullmatch(path)):
            await self._post(scope, receive, send, found[1], found[2])
        elif method == "GET" and (found := _RUNNING.fullmatch(path)):
            await self._run(scope, send, _legacy(scope, found[1], found[2], _running, None))
        elif method == "GET" and (found := _EXITING.fullmatch(path)):
            rc = int(found[3])
            if rc > 255:  # the route's 422 comes from FastAPI
                await self.app(scope, receive, send)
                return
            target = partial(legacy_exit_target, rc=rc)
            await self._run(scope, send, _legacy(scope, found[1], found[2], target, rc))
        else:
            await self.app(scope, receive, send)

    async def _post(self, scope: Scope, receive: Receive, send: Send, fid: str, cid: str) -> None:
        body = await _read(receive)
        parsed = _job_update(scope, body)
        if parsed is None:  # FastAPI's route refuses it, with its own words
            await self.app(scope, replay(body, receive), send)
            return
        target = parsed.target
        key = presented_key(_header(scope, b"authorization"))
        item = PilotReport(fid, cid, lambda _current: target, _source(scope), parsed.rc, parsed.ids, key)
        await self._run(scope, send, item)

    async def _run(self, scope: Scope, send: Send, item: PilotReport) -> None:
        try:
            outcome = answer(await report(self.services, item))
        except MonitorError as exc:
            await _send(send, exc.status, error_body(str(exc)))
            return
        except DBAPIError as exc:
            log.error("database error: %s", exc)
            await _send(send, 503, error_body(DATABASE_UNAVAILABLE))
            return
        await _send(send, 200, outcome.__pydantic_serializer__.to_json(outcome))


def _running(_current: JobState) -> JobState:
    return JobState.RUNNING


def _legacy(scope: Scope, fid: str, cid: str, target: TargetRule, rc: int | None) -> PilotReport:
    """An API v1 report (it can carry no pilot key: see pilot_keys)."""
    return PilotReport(fid, cid, target, _source(scope), rc, None, legacy=True)


def _source(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return str(value.decode("latin-1"))
    return None


def _job_update(scope: Scope, body: bytes) -> JobUpdateIn | None:
    """The body as a report, or None when it is not a valid form or JSON report."""
    kind = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
    try:
        fields = fields_of(kind, body, JobUpdateIn)
        if fields is None:
            return None
        return validated(JobUpdateIn, fields)
    except (MonitorError, RequestValidationError):
        return None


async def _read(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` with ``body`` (already read from it) given again first."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _send(send: Send, status: int, body: bytes) -> None:
    headers: list[Any] = [(b"content-length", str(len(body)).encode("ascii")), *_JSON_HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
