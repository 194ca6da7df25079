"""Request-scoped helpers shared by the routes: the app's services, the factory token, the client
address, and bodies that may come as form data or JSON (wrappers send forms, clients JSON)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from urllib.parse import unquote_plus

from fastapi import Depends, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from autopyfactory.monitor_service.db import Database
from autopyfactory.monitor_service.errors import Forbidden, MonitorError, Unauthorized
from autopyfactory.monitor_service.expiry import Expiry
from autopyfactory.monitor_service.group_commit import GroupCommit
from autopyfactory.monitor_service.queries import Queries
from autopyfactory.monitor_service.schemas import (
    JOB_ROWS,
    MAX_FIELDS,
    MAX_ITEMS,
    InputError,
    JobIn,
    JobRow,
    RejectedItem,
)
from autopyfactory.monitor_service.settings import MonitorSettings
from autopyfactory.monitor_service.store import Store

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Services:
    settings: MonitorSettings
    db: Database
    store: Store
    queries: Queries
    expiry: Expiry
    writer: GroupCommit | None = None  # None: one transaction per request (group commit off)
    bulk_slots: asyncio.Semaphore | None = None  # PostgreSQL: bulk creates in transactions of their own


async def services(request: Request) -> Services:
    """Async, so that FastAPI does not send this lookup through its thread pool."""
    found = request.app.state.services
    if not isinstance(found, Services):
        raise RuntimeError("app.state.services is not set: build the app with create_app()")
    return found


ServicesDep = Annotated[Services, Depends(services)]

_bearer = HTTPBearer(
    auto_error=False, description="the factory's token, from `autopyfactory-monitor add-factory`"
)


def authenticated_factory(
    svc: ServicesDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
) -> str:
    """The name of the factory whose token came with the request (401 without a valid one)."""
    if credentials is None:
        raise Unauthorized("missing 'Authorization: Bearer <factory token>'")
    name = svc.store.factory_for_token(credentials.credentials)
    if name is None:
        raise Unauthorized("invalid factory token")
    return name


FactoryAuth = Annotated[str, Depends(authenticated_factory)]


def require_owner(authenticated: str, factory: str) -> None:
    """A token may only write its own factory's data."""
    if authenticated != factory:
        raise Forbidden(f"this token belongs to factory {authenticated!r}, not to {factory!r}")


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


class UnsupportedMediaType(MonitorError):
    status = 415


async def body_fields(request: Request, model: type[BaseModel]) -> dict[str, Any]:
    """The request body as a dict, from JSON or from form data (a field of ``model`` given twice
    in a form is refused)."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        return await _form_fields(request, model)
    raw = await request.body()
    fields = fields_of(kind, raw, model)
    if fields is not None:
        return fields
    if kind == "" and not raw:
        return {}
    raise UnsupportedMediaType(f"send application/x-www-form-urlencoded or application/json, not {kind!r}")


def fields_of(kind: str, raw: bytes, model: type[BaseModel]) -> dict[str, Any] | None:
    """A JSON or urlencoded body (media type ``kind``) of at most :data:`MAX_FIELDS` fields as a
    dict; None for any other type."""
    if kind == "application/json":
        return _json_object(raw)
    if kind == "application/x-www-form-urlencoded":
        return _urlencoded_fields(raw, model)
    return None


def json_value(raw: bytes) -> Any:
    """A JSON body: UTF-8 only (RFC 8259; ``json.loads`` of bytes would also take UTF-16 and
    UTF-32, and a byte order mark)."""
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise MonitorError("the body is not UTF-8 (JSON must be UTF-8)") from exc
    except (ValueError, RecursionError) as exc:
        raise MonitorError("the body is not valid JSON") from exc


def _json_object(raw: bytes) -> dict[str, Any]:
    data = json_value(raw)
    if not isinstance(data, dict):
        raise MonitorError("the JSON body must be an object")
    if len(data) > MAX_FIELDS:
        raise MonitorError(f"too many keys in the JSON object (at most {MAX_FIELDS})")
    return data


def _urlencoded_fields(raw: bytes, model: type[BaseModel]) -> dict[str, Any]:
    """A urlencoded form, decoded as Starlette's form parser does (names and values as UTF-8 after
    percent-decoding, bad bytes replaced) at a fraction of its cost: wrappers send every report so.

    The fields are counted while splitting (empty ones too): a body of two million ``&`` is
    refused after the first :data:`MAX_FIELDS`, without a list of two million fields."""
    parts = raw.split(b"&", MAX_FIELDS)
    if len(parts) > MAX_FIELDS:
        raise MonitorError(f"too many form fields (at most {MAX_FIELDS})")
    fields: dict[str, Any] = {}
    for part in parts:
        if not part:
            continue
        name, _, value = part.decode("latin-1").partition("=")
        key = unquote_plus(name, errors="replace")
        if key in fields and key in model.model_fields:
            raise MonitorError(f"form field {key!r} given more than once")
        fields.setdefault(key, unquote_plus(value, errors="replace"))
    return fields


_BULK = TypeAdapter(Annotated[list[dict[str, Any]], Field(max_length=MAX_ITEMS)])


async def bulk_items(request: Request) -> list[dict[str, Any]]:
    """A bulk body: a JSON array of at most :data:`MAX_ITEMS` objects (each validated later, one
    by one). Parsed in the thread pool, not on the event loop: a body of megabytes takes tens of
    milliseconds, which every other request would wait for."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind not in ("", "application/json"):
        raise UnsupportedMediaType(f"send a JSON array (application/json), not {kind!r}")
    return await run_in_threadpool(_parse_bulk, await request.body())


def _parse_bulk(raw: bytes) -> list[dict[str, Any]]:
    try:
        data = json_value(raw)
    except MonitorError as exc:
        error = {"type": "json_invalid", "loc": ("body",), "msg": str(exc), "input": None}
        raise RequestValidationError([error]) from exc
    try:
        return _BULK.validate_python(data)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from exc


async def _form_fields(request: Request, model: type[BaseModel]) -> dict[str, Any]:
    form = await request.form(max_files=0, max_fields=MAX_FIELDS)
    fields: dict[str, Any] = {}
    for key in form:
        values = form.getlist(key)
        if len(values) > 1 and key in model.model_fields:
            raise MonitorError(f"form field {key!r} given more than once")
        if isinstance(values[0], UploadFile):
            raise MonitorError(f"form field {key!r}: files are not accepted")
        fields[key] = values[0]
    return fields


async def parsed_body(request: Request, model: type[M]) -> M:
    """The body as ``model``, from form data or JSON."""
    return validated(model, await body_fields(request, model))


def validated(model: type[M], data: dict[str, Any]) -> M:
    """Validate a hand-parsed body; errors look like FastAPI's own (422, located in the body)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from exc


def valid_items(model: type[M], items: Sequence[dict[str, Any]]) -> tuple[list[M], list[RejectedItem]]:
    """The items of a bulk body that are valid ``model``s, and why each other one is not: one bad
    item must not cost the good ones (a factory sends all its labels and pilots at once)."""
    good: list[M] = []
    rejected: list[RejectedItem] = []
    for index, item in enumerate(items):
        try:
            good.append(model.model_validate(item))
        except ValidationError as exc:
            errors = [
                InputError(where=".".join(str(p) for p in e["loc"]), msg=e["msg"], type=e["type"])
                for e in exc.errors(include_url=False)
            ]
            detail = "; ".join(f"{e.where}: {e.msg}" if e.where else e.msg for e in errors)
            rejected.append(RejectedItem(index=index, detail=detail, errors=errors))
    return good, rejected


def valid_jobs(items: Sequence[dict[str, Any]]) -> tuple[list[JobRow], list[RejectedItem]]:
    """:func:`valid_items` for :class:`JobIn`, as dicts: all items in one validation call when they
    are all valid (the usual case), else item by item with :class:`JobIn` for the same answer."""
    try:
        return JOB_ROWS.validate_python(items), []
    except ValidationError:
        jobs, rejected = valid_items(JobIn, items)
        return [JobRow(**job.model_dump(exclude_unset=True)) for job in jobs], rejected  # type: ignore[typeddict-item]


def bulk_body(model: type[BaseModel], max_items: int) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON array of ``model`` (validated item by item)."""
    schema = {"type": "array", "maxItems": max_items, "items": model.model_json_schema()}
    content = {"application/json": {"schema": schema}}
    return {"requestBody": {"required": True, "content": content}}


def form_or_json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring that an endpoint takes ``model`` as form data or JSON.

    Form data cannot say null: there an optional field is either absent or a value.
    """
    schema = model.model_json_schema()
    if "$defs" in schema:
        raise ValueError(f"{model.__name__}: nested models would be unresolvable references in openapi_extra")
    form = {**schema, "properties": {name: _not_null(p) for name, p in schema["properties"].items()}}
    content = {"application/x-www-form-urlencoded": {"schema": form}, "application/json": {"schema": schema}}
    return {"requestBody": {"required": True, "content": content}}


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    choices = [c for c in prop.get("anyOf", []) if c.get("type") != "null"]
    if len(choices) != 1:
        return prop
    rest = {key: value for key, value in prop.items() if key not in ("anyOf", "default")}
    return {**rest, **choices[0]}
