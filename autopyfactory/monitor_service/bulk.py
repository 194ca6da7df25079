"""Set-based inserts of many jobs or job events: statements of fixed text, one or two per call.

SQLAlchemy's "insertmanyvalues" writes a statement with a placeholder per value (8,000 for 1,000
jobs); psycopg cannot cache a statement that long and re-parses it in Python every time (about
0.2 s per 500 rows), and SQLite's bind processing formats every timestamp again. Here the rows go
as one JSON text (jobs on both databases, events on SQLite) or as arrays (events on PostgreSQL,
``unnest``), and the shared values (factory, time, source) once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, bindparam, text

from autopyfactory.monitor_service.models import UTCDateTime

# Literal SQL, no value in it: every value is a bound parameter. The jobs come as one JSON text
# of [label_id, cid] pairs on both databases: psycopg escapes each element of a text array with a
# regular expression (a third of the writer's time per 1,000 jobs), json.dumps is one C call.
# PostgreSQL: the jobs and their CREATED events in one statement; its row count is the jobs created.
_PG_CREATE = text(
    "WITH new AS ("
    " INSERT INTO jobs"
    " (factory_id, label_id, cid, state, created_at, state_changed_at, flagged, ids, key_sha256)"
    " SELECT :factory_id, CAST(r->>0 AS integer), r->>1, 'CREATED', :now, :now, false, '', r->>2"
    " FROM json_array_elements(CAST(:rows AS json)) AS r"
    " ON CONFLICT (factory_id, cid) DO NOTHING RETURNING id)"
    " INSERT INTO job_events (job_id, at, old_state, new_state, accepted, source, text)"
    " SELECT id, :now, NULL, 'CREATED', true, :source, :text FROM new"
).bindparams(bindparam("now", type_=UTCDateTime()))
# SQLite has no INSERT in a WITH: the new ids come back and go into the events as one JSON text.
_SQLITE_JOBS = text(
    "INSERT INTO jobs"
    " (factory_id, label_id, cid, state, created_at, state_changed_at, flagged, ids, key_sha256)"
    " SELECT :factory_id, json_extract(value, '$[0]'), json_extract(value, '$[1]'), 'CREATED', :now, :now,"
    " 0, '', json_extract(value, '$[2]') FROM json_each(:rows) WHERE true"
    " ON CONFLICT (factory_id, cid) DO NOTHING RETURNING id"
).bindparams(bindparam("now", type_=UTCDateTime()))
_SQLITE_CREATED_EVENTS = text(
    "INSERT INTO job_events (job_id, at, old_state, new_state, accepted, source, text)"
    " SELECT value, :now, NULL, 'CREATED', 1, :source, :text FROM json_each(:ids)"
).bindparams(bindparam("now", type_=UTCDateTime()))
# The jobs of a create that are recorded as asked (same cid, label and key digest), new or not:
# a replayed create is answered as the first was.
_PG_RECORDED = text(
    "SELECT count(*) FROM json_array_elements(CAST(:rows AS json)) AS r JOIN jobs j"
    " ON j.factory_id = :factory_id AND j.cid = r->>1 AND j.label_id = CAST(r->>0 AS integer)"
    " AND j.key_sha256 = r->>2"
)
_SQLITE_RECORDED = text(
    "SELECT count(*) FROM json_each(:rows) AS r JOIN jobs j"
    " ON j.factory_id = :factory_id AND j.cid = json_extract(r.value, '$[1]')"
    " AND j.label_id = json_extract(r.value, '$[0]') AND j.key_sha256 = json_extract(r.value, '$[2]')"
)
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


def insert_created_jobs(
    connection: Connection,
    factory_id: int,
    now: datetime,
    rows: Sequence[tuple[int, str, str]],
    source: str,
    note: str,
) -> int:
    """Insert CREATED jobs (``(label id, cid, key digest)`` each) and their CREATED events,
    skipping cids the factory has already; the number of jobs of ``rows`` recorded as asked (new,
    or already there with the same label and key digest: a replay). No per-job Python object is
    made on the way in or out."""
    if not rows:
        return 0
    text_rows = json.dumps(rows)
    values = {"factory_id": factory_id, "now": now, "rows": text_rows, "source": source, "text": note}
    if connection.dialect.name == "postgresql":
        inserted = int(cast(CursorResult[Any], connection.execute(_PG_CREATE, values)).rowcount)
    else:
        new_ids = [row[0] for row in connection.execute(_SQLITE_JOBS, values).fetchall()]
        if new_ids:
            connection.execute(_SQLITE_CREATED_EVENTS, {**values, "ids": json.dumps(new_ids)})
        inserted = len(new_ids)
    if inserted == len(rows):
        return inserted
    recorded = _PG_RECORDED if connection.dialect.name == "postgresql" else _SQLITE_RECORDED
    return int(connection.scalar(recorded, {"factory_id": factory_id, "rows": text_rows}) or 0)


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
