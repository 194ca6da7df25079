"""The app factory: ``create_app(settings)`` builds a FastAPI app with its own database, store and
optional in-process expiry; nothing is global, so tests run several apps side by side."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from autopyfactory import __version__
from autopyfactory.monitor_service import docs, pages, routes_read, routes_write
from autopyfactory.monitor_service.db import Database
from autopyfactory.monitor_service.deps import Services
from autopyfactory.monitor_service.errors import MonitorError, Unauthorized
from autopyfactory.monitor_service.expiry import Expiry, ExpiryThread
from autopyfactory.monitor_service.group_commit import GroupCommit
from autopyfactory.monitor_service.migrations import upgrade
from autopyfactory.monitor_service.pilot_reports import DATABASE_UNAVAILABLE, PilotReports, replay, route_path
from autopyfactory.monitor_service.queries import Queries
from autopyfactory.monitor_service.settings import Limits, MonitorSettings
from autopyfactory.monitor_service.store import Store

log = logging.getLogger(__name__)


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: an error may quote input that is not valid UTF-8 text."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def build_services(settings: MonitorSettings) -> Services:
    """The services; with group commit, SQLite commits with ``synchronous=FULL``: each acknowledged
    write is on the disk (one fsync per batch is affordable, one per request was not).

    On PostgreSQL bulk creates do not queue for the one writer: each is a transaction of 1,000 or so
    rows already, and a few of them at once keep the database's cores busy (about 1.5 times the
    jobs/s of the writer alone at 16 concurrent PUTs, with a shorter tail than an unbounded number).
    """
    db = Database.open(settings.db_url, sqlite_sync="FULL" if settings.group_commit else "NORMAL")
    if settings.migrate:
        upgrade(db.engines.write)
    writer = GroupCommit(db, settings.clock, settings.max_batch) if settings.group_commit else None
    parallel = settings.group_commit and db.dialect == "postgresql"
    return Services(
        settings=settings,
        db=db,
        store=Store(db, settings.clock, settings.messages_kept),
        queries=Queries(db, settings),
        expiry=Expiry(db, settings.clock, settings.expiry),
        writer=writer,
        bulk_slots=asyncio.Semaphore(settings.bulk_writers) if parallel else None,
    )


def create_app(settings: MonitorSettings) -> FastAPI:
    """A ready app: the schema is upgraded now; in-process expiry starts with the app's lifespan."""
    services = build_services(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        thread = ExpiryThread(services.expiry, settings.expire_every) if settings.expire_every else None
        if thread is not None:
            thread.start()
        if services.writer is not None:
            services.writer.start()
        try:
            yield
        finally:
            # uvicorn ends the lifespan after the requests in flight were answered; anything still
            # queued is committed here before the database closes.
            if services.writer is not None:
                services.writer.stop()
            if thread is not None:
                thread.stop()
            services.db.close()

    app = FastAPI(
        title="autopyfactory-monitor",
        version=__version__,
        description="Monitoring webservice for autopyfactory pilots (apfmon API v2, with v1 pilot calls).",
        lifespan=lifespan,
        docs_url=None,  # docs.py serves them without a CDN
        redoc_url=None,
    )
    app.state.services = services
    app.include_router(routes_write.router)
    app.include_router(routes_read.router)
    pages.install(app)
    docs.install(app)
    _add_error_handlers(app)
    app.add_middleware(PilotReports, services=services)  # innermost: inside the limits below
    app.add_middleware(BodyGuard, limits=settings.limits)
    app.add_middleware(NulQueryGuard)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MonitorError)
    async def monitor_error(_request: Request, exc: MonitorError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        return AsciiJSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_error(e) for e in exc.errors()]
        detail = "; ".join(f"{e['where']}: {e['msg']}" if e["where"] else e["msg"] for e in errors)
        return AsciiJSONResponse({"detail": detail, "errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return AsciiJSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(DBAPIError)
    async def database_error(_request: Request, exc: DBAPIError) -> JSONResponse:
        log.error("database error: %s", exc)
        return AsciiJSONResponse({"detail": DATABASE_UNAVAILABLE}, status_code=503)

    @app.exception_handler(Exception)
    async def bug(_request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error", exc_info=exc)
        return AsciiJSONResponse({"detail": "internal error (logged by the service)"}, status_code=500)


def _allowed_methods(request: Request) -> list[str]:
    """Every method of every route on the request's path (Starlette only names the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, APIRoute) and route.matches(request.scope)[0] is not Match.NONE:
            methods.update(route.methods or ())
    return sorted(methods)


def _error(error: Any) -> dict[str, Any]:
    """A validation error without the input it quotes: location, message and type."""
    loc: Sequence[Any] = error.get("loc", ())
    where = ".".join(str(part) for part in loc)
    return {"where": where, "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))}


# Endpoints that take bulk bodies (a factory's labels, pilots, messages, batch reports).
_BULK_PATHS = re.compile(r"/api/(jobs|labels)|/api/factories/[^/]+/(messages|jobs)")
_PILOT_REPORT = re.compile(r"/api/jobs/[^/]+/?")


def body_limit(limits: Limits, method: str, path: str) -> int:
    """The largest body ``method path`` may have (see :class:`~settings.Limits`)."""
    if method in ("PUT", "POST") and _BULK_PATHS.fullmatch(path):
        return limits.max_body_bytes
    if method == "POST" and _PILOT_REPORT.fullmatch(path):
        return limits.max_report_bytes
    return limits.max_other_bytes


class BodyGuard:
    """Refuses a body larger than its endpoint's limit with 413 before any parsing, and a JSON
    body that is not UTF-8 (a BOM, UTF-16, UTF-32) with 400 (ASGI middleware).

    The body is read here, up to the limit, and replayed to the app: that bounds chunked uploads
    too, which a Content-Length check alone would not. A declared length above the limit is
    refused before a byte of the body is read.
    """

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(self.limits, scope["method"], route_path(scope))
        declared = _content_length(scope)
        if declared is None:
            await _plain(send, 400, "invalid Content-Length header")
            return
        if declared > limit:
            await _plain(send, 413, f"body larger than {limit} bytes")
            return
        body = await self._read(receive, limit)
        if body is None:
            await _plain(send, 413, f"body larger than {limit} bytes")
            return
        if body and _is_json(scope) and (problem := _json_encoding_problem(body)):
            await _plain(send, 400, problem)
            return
        await self.app(scope, replay(body, receive), send)

    async def _read(self, receive: Receive, limit: int) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            kind = str(value.decode("latin-1")).split(";", 1)[0].strip().lower()
            return kind == "application/json" or kind.endswith("+json")
    return False


def _json_encoding_problem(body: bytes) -> str:
    """Why a JSON body is not UTF-8 text (RFC 8259), or "". ``json.loads`` of bytes would read
    UTF-16 and UTF-32 (with or without a BOM) and a UTF-8 BOM; a NUL byte is never valid JSON
    outside an escape, and is how UTF-16/32 of ASCII text looks."""
    if body.startswith(b"\xef\xbb\xbf"):
        return "JSON must be UTF-8 without a byte order mark"
    if b"\x00" in body:
        return "JSON must be UTF-8 (a NUL byte: UTF-16 or UTF-32?)"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return "JSON must be UTF-8"
    return ""


class NulQueryGuard:
    """Refuses a NUL character in any query parameter with 422, before any route sees it.

    PostgreSQL cannot store or compare text with NUL in it (the driver raises, which became a 503),
    and no name, state or search term has one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            bad = _nul_parameter(scope.get("query_string", b""))
            if bad is not None:
                where = f"query.{bad}"
                error = {"where": where, "msg": "NUL character not allowed", "type": "nul_character"}
                await _json(send, 422, {"detail": f"{where}: {error['msg']}", "errors": [error]})
                return
        await self.app(scope, receive, send)


def _nul_parameter(query: bytes) -> str | None:
    """The name of the first query parameter with a NUL in its name or value, or None."""
    if b"\x00" not in query and b"%00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True, encoding="latin-1"):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "\\0")
    return None


def _content_length(scope: Scope) -> int | None:
    """The declared length (0 when absent), or None when the header is not a number."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() and len(text) < 19 else None
    return 0


async def _plain(send: Send, status: int, detail: str) -> None:
    await _json(send, status, {"detail": detail})


async def _json(send: Send, status: int, content: dict[str, Any]) -> None:
    body = json.dumps(content, ensure_ascii=True).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
