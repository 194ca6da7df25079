"""Set-based inserts of many jobs or job events: one statement of fixed text per call.

SQLAlchemy's "insertmanyvalues" writes a statement with a placeholder per value (8,000 for 1,000
jobs); psycopg cannot cache a statement that long and re-parses it in Python every time (about
0.2 s per 500 rows), and SQLite's bind processing formats every timestamp again. Here the rows go
as arrays (PostgreSQL ``unnest``) or as one JSON text (SQLite ``json_each``), and the shared
values (factory, time) once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, TextClause, bindparam, text

from autopyfactory.monitor_service.models import UTCDateTime

# Literal SQL, no value in it: every value is a bound parameter.
_PG_JOBS = text(
    "INSERT INTO jobs (factory_id, label_id, cid, state, created_at, state_changed_at, flagged, ids)"
    " SELECT :factory_id, u.label_id, u.cid, 'CREATED', :now, :now, false, ''"
    " FROM unnest(CAST(:label_ids AS integer[]), CAST(:cids AS varchar[])) AS u(label_id, cid)"
    " ON CONFLICT (factory_id, cid) DO NOTHING RETURNING id"
).bindparams(bindparam("now", type_=UTCDateTime()))
_SQLITE_JOBS = text(
    "INSERT INTO jobs (factory_id, label_id, cid, state, created_at, state_changed_at, flagged, ids)"
    " SELECT :factory_id, json_extract(value, '$[0]'), json_extract(value, '$[1]'), 'CREATED', :now, :now,"
    " 0, '' FROM json_each(:rows) WHERE true"
    " ON CONFLICT (factory_id, cid) DO NOTHING RETURNING id"
).bindparams(bindparam("now", type_=UTCDateTime()))
_PG_EVENTS = text(
    "INSERT INTO job_events (job_id, at, old_state, new_state, accepted, source, text)"
    " SELECT u.job_id, :at, u.old, u.new, u.accepted, u.source, u.text"
    " FROM unnest(CAST(:job_ids AS bigint[]), CAST(:olds AS varchar[]), CAST(:news AS varchar[]),"
    " CAST(:accepted AS boolean[]), CAST(:sources AS varchar[]), CAST(:texts AS varchar[]))"
    " AS u(job_id, old, new, accepted, source, text)"
).bindparams(bindparam("at", type_=UTCDateTime()))
_SQLITE_EVENTS = text(
    "INSERT INTO job_events (job_id, at, old_state, new_state, accepted, source, text)"
    " SELECT json_extract(value, '$[0]'), :at, json_extract(value, '$[1]'), json_extract(value, '$[2]'),"
    " json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]')"
    " FROM json_each(:rows)"
).bindparams(bindparam("at", type_=UTCDateTime()))


def insert_jobs(
    connection: Connection, factory_id: int, now: datetime, label_and_cid: Sequence[tuple[int, str]]
) -> list[int]:
    """Insert CREATED jobs, skipping cids the factory has already; the ids of the new ones."""
    if not label_and_cid:
        return []
    statement: TextClause
    if connection.dialect.name == "postgresql":
        statement = _PG_JOBS
        values: dict[str, Any] = {
            "label_ids": [label for label, _ in label_and_cid],
            "cids": [cid for _, cid in label_and_cid],
        }
    else:
        statement = _SQLITE_JOBS
        values = {"rows": json.dumps(label_and_cid)}
    return list(connection.execute(statement, {"factory_id": factory_id, "now": now, **values}).scalars())


def insert_events(connection: Connection, events: Sequence[dict[str, Any]]) -> None:
    """Insert job events (dicts as made by :func:`store.job_event`), one statement per time."""
    by_time: dict[datetime, list[dict[str, Any]]] = {}
    for event in events:
        by_time.setdefault(event["at"], []).append(event)
    for at, group in by_time.items():
        rows = [
            (
                e["job_id"],
                _text(e["old_state"]),
                str(e["new_state"]),
                bool(e["accepted"]),
                e["source"],
                e["text"],
            )
            for e in group
        ]
        if connection.dialect.name == "postgresql":
            columns = ("job_ids", "olds", "news", "accepted", "sources", "texts")
            arrays = {name: [row[i] for row in rows] for i, name in enumerate(columns)}
            connection.execute(_PG_EVENTS, {"at": at, **arrays})
        else:
            connection.execute(_SQLITE_EVENTS, {"at": at, "rows": json.dumps(rows)})


def _text(value: object) -> str | None:
    return None if value is None else str(value)
