"""What changes the monitor's data: factories and their tokens, labels and their cycle messages,
job creation (bulk, idempotent) and job transitions (checked by :mod:`states`, logged as events).

Every method is one short write transaction. Inserts that may race with a replay of the same
request use ``INSERT ... ON CONFLICT DO NOTHING``, and a transition is a conditional
``UPDATE ... WHERE state = <the state it was judged from>``, so concurrent requests never produce
a duplicate or skip a check.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, cast

from sqlalchemy import CursorResult, Insert, Table, bindparam, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from autopyfactory.monitor_service.auth import looks_like_token, new_token, token_digest
from autopyfactory.monitor_service.bulk import insert_created_jobs
from autopyfactory.monitor_service.db import Database
from autopyfactory.monitor_service.errors import AlreadyExists, Conflict, Forbidden, MonitorError, NotFound
from autopyfactory.monitor_service.group_commit import Batch, Outcome
from autopyfactory.monitor_service.models import Factory, Job, JobEvent, Label, LabelMessage, UTCDateTime
from autopyfactory.monitor_service.pilot_keys import KeyVerdict, verdict
from autopyfactory.monitor_service.schemas import BatchReportIn, BatchResult, FactoryIn, JobRow, LabelIn
from autopyfactory.monitor_service.settings import Clock
from autopyfactory.monitor_service.states import JobState, Verdict, decide

JOBS = cast(Table, Job.__table__)
FACTORIES = cast(Table, Factory.__table__)
CHUNK = 500  # ids per IN (...) list: far below SQLite's and PostgreSQL's parameter limits
SOURCE_MAX = 64
TEXT_MAX = 512  # job_events.text
REFUSALS_KEPT = 5  # refused reports (409) kept as job events per job; the job counts them all
_TRANSITION_ATTEMPTS = 3


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def insert_ignoring(dialect: str, model: type[Any] | Table, keys: Sequence[str]) -> Insert:
    """``INSERT ... ON CONFLICT (keys) DO NOTHING`` for SQLite and PostgreSQL."""
    if dialect == "postgresql":
        return pg_insert(model).on_conflict_do_nothing(index_elements=list(keys))
    return sqlite_insert(model).on_conflict_do_nothing(index_elements=list(keys))


def job_event(job_id: int, at: datetime, old: str | None, new: str, source: str, text: str) -> dict[str, Any]:
    """One row of ``job_events`` as a dict for a bulk insert."""
    return {
        "job_id": job_id,
        "at": at,
        "old_state": old,
        "new_state": new,
        "accepted": True,
        "source": source[:SOURCE_MAX],
        "text": text[:TEXT_MAX],
    }


@dataclass(frozen=True)
class JobsCreated:
    created: int
    duplicates: int
    labels_created: int


@dataclass(frozen=True)
class Transition:
    """The outcome of a pilot's report. ``accepted`` False means refused (HTTP 409)."""

    job: str
    state: JobState
    changed: bool
    accepted: bool
    detail: str


@dataclass(frozen=True)
class BatchOutcome:
    """What a factory's batch report did to one job (see :func:`batch_plan`)."""

    cid: str
    result: BatchResult
    state: JobState | None
    detail: str


@dataclass(frozen=True)
class BatchPlan:
    """The legal moves that bring a job in line with its batch system's view.

    ``path`` lists the states it passes through (each one a job event); ``flag`` sets the flag
    and keeps the state; neither means nothing to do, for the reason in ``detail``.
    """

    path: tuple[JobState, ...] = ()
    flag: bool = False
    detail: str = ""


_NEVER_RAN = "finished in the batch system, never reported running"
_REPORTS_LOST = "finished in the batch system, its exit code says it ran: its wrapper's reports were lost"
_BATCH_PATHS: dict[tuple[str, JobState], tuple[JobState, ...]] = {
    ("done", JobState.CREATED): (JobState.FAULT,),
    ("done", JobState.RUNNING): (JobState.EXITING, JobState.DONE),
    ("done", JobState.EXITING): (JobState.DONE,),
    ("exiting", JobState.CREATED): (JobState.FAULT,),
    ("exiting", JobState.RUNNING): (JobState.EXITING,),
}
_RAN_PATHS: dict[str, tuple[JobState, ...]] = {
    "done": (JobState.EXITING, JobState.DONE),
    "exiting": (JobState.EXITING,),
}


def batch_plan(request: str, current: JobState, flagged: bool, ran: bool = False) -> BatchPlan:
    """Moves for a factory's report ``request`` (done, exiting, fault, removed, flag) on a job in
    ``current``; ``removed`` (an operator's removal) makes any active job REMOVED, not FAULT.

    Completed (``done``/``exiting``) while the monitor still has RUNNING means the wrapper's own
    report was lost: the job passes through EXITING. Completed while still CREATED: when the
    factory says the pilot ``ran`` (from the batch system's exit code), all its wrapper's reports
    were lost (a monitor outage), and it passes through EXITING the same way; otherwise the pilot
    never said it ran: FAULT. A final job stays as it is; so does a job already there.
    """
    if current.final:
        return BatchPlan(detail=f"already {current}, final")
    if request == "flag":
        return BatchPlan(detail="already flagged") if flagged else BatchPlan(flag=True, detail="flagged")
    if request in ("fault", "removed"):
        target = JobState.FAULT if request == "fault" else JobState.REMOVED
        return BatchPlan((target,), detail=f"{current} -> {target}")
    lost = ran and current is JobState.CREATED and request in _RAN_PATHS
    path = _RAN_PATHS[request] if lost else _BATCH_PATHS.get((request, current), ())
    if not path:
        return BatchPlan(detail=f"already {current}")
    why = _REPORTS_LOST if lost else _NEVER_RAN
    detail = " -> ".join([current, *path]) + (f" ({why})" if current is JobState.CREATED else "")
    return BatchPlan(path, detail=detail)


TargetRule = Callable[[JobState], JobState]
"""Chooses the requested state from the current one (API v1 ``ex`` depends on it)."""


@dataclass(frozen=True)
class PilotReport:
    """A wrapper's report, as an item of a group commit (see :meth:`Store.reports_in`).

    ``pilot_key``: the pilot key it carried (None: none); ``legacy``: an API v1 ``GET`` (see
    :mod:`pilot_keys`)."""

    factory: str
    cid: str
    target: TargetRule
    source: str
    rc: int | None
    ids: str | None
    pilot_key: str | None = None
    legacy: bool = False

    @property
    def key(self) -> str:
        return f"{self.factory}:{self.cid}"

    def text(self, reason: str) -> str:
        """The job event's text: the verdict's reason, then what the wrapper sent with it."""
        return (
            reason
            + (f" rc={self.rc}" if self.rc is not None else "")
            + (f" ids={self.ids}" if self.ids else "")
        )


class ConcurrentChange(Conflict):
    """A job changed between the batch's read and its update (another process; not expected, as
    the rows are locked when read): the batch is rolled back and its items are done one by one,
    each judged again; a report alone that meets it again is answered with this 409."""


class Store:
    def __init__(self, db: Database, clock: Clock, messages_kept: int = 50) -> None:
        self._db = db
        self._clock = clock
        self._messages_kept = messages_kept

    # --- factories and tokens --------------------------------------------------------------

    def add_factory(self, name: str, *, new_token_if_exists: bool = False) -> str:
        """Register a factory; return its token (shown once, only its digest is kept)."""
        token = new_token()
        now = self._clock()
        with self._db.write.begin() as session:
            factory = session.scalars(select(Factory).where(Factory.name == name)).one_or_none()
            if factory is not None and not new_token_if_exists:
                raise AlreadyExists(f"factory {name!r} exists; use --new-token to replace its token")
            if factory is None:
                factory = Factory(name=name, created_at=now, url="", email="", version="", last_ip="")
                session.add(factory)
            factory.token_hash = token_digest(token)
        return token

    def factory_for_token(self, token: str) -> str | None:
        """The name of the factory owning ``token``, or None."""
        if not looks_like_token(token):
            return None
        with self._db.read() as session:
            return session.scalars(
                select(Factory.name).where(Factory.token_hash == token_digest(token))
            ).one_or_none()

    def set_pilot_keys(self, name: str, required: bool) -> None:
        """Whether the factory's pilot reports must carry their pilot's key (see pilot_keys.py)."""
        with self._db.write.begin() as session:
            find_factory(session, name).require_pilot_keys = required

    def heartbeat(self, name: str, data: FactoryIn, source: str) -> Factory:
        """The factory is alive: note when and from where, and the fields it sent."""
        with self._db.write.begin() as session:
            factory = find_factory(session, name)
            for field in data.model_fields_set:  # fields left out keep their value
                setattr(factory, field, getattr(data, field))
            factory.last_seen = self._clock()
            factory.last_ip = source[:SOURCE_MAX]
            return factory

    # --- labels -----------------------------------------------------------------------------

    def upsert_labels(self, factory_name: str, labels: Sequence[LabelIn]) -> tuple[int, int]:
        """Create or update the labels (last record wins for a repeated name); (created, updated)."""
        records = {label.name: label for label in sorted(labels, key=lambda label: label.name)}
        now = self._clock()
        with self._db.write.begin() as session:
            factory_id = find_factory(session, factory_name).id
            ids = _ensure_labels(session, self._db.dialect, factory_id, list(records), now)
            existing = len(records) - ids.created
            rows = [
                {
                    "id": ids.by_name[name],
                    "batchqueue": record.batchqueue,
                    "wmsqueue": record.wmsqueue,
                    "resource": record.resource,
                    "localqueue": record.localqueue,
                    "updated_at": now,
                }
                for name, record in records.items()
            ]
            if rows:
                session.execute(update(Label), rows)  # ORM bulk UPDATE by primary key
        return ids.created, existing

    def add_message(self, factory_name: str, label: str, text: str, source: str) -> datetime:
        """Keep a label's cycle message; only the last ``messages_kept`` per label stay."""
        return self.add_messages(factory_name, [(label, text)], source)

    def add_messages(self, factory_name: str, messages: Sequence[tuple[str, str]], source: str) -> datetime:
        """Keep cycle messages of many labels ((label, text), one transaction); only the last
        ``messages_kept`` per label stay."""
        now = self._clock()
        with self._db.write.begin() as session:
            factory_id = find_factory(session, factory_name).id
            names = sorted({label for label, _ in messages})
            by_name = _ensure_labels(session, self._db.dialect, factory_id, names, now).by_name
            for label, text in messages:
                label_id = by_name[label]
                session.add(LabelMessage(label_id=label_id, at=now, text=text, source=source[:SOURCE_MAX]))
                session.execute(
                    update(Label).where(Label.id == label_id).values(last_message=text, last_message_at=now)
                )
            session.flush()
            for label in names:
                self._prune_messages(session, by_name[label])
        return now

    def _prune_messages(self, session: Session, label_id: int) -> None:
        oldest_kept = (
            select(LabelMessage.id)
            .where(LabelMessage.label_id == label_id)
            .order_by(LabelMessage.id.desc())
            .offset(self._messages_kept - 1)
            .limit(1)
            .scalar_subquery()
        )
        session.execute(
            delete(LabelMessage).where(LabelMessage.label_id == label_id, LabelMessage.id < oldest_kept)
        )

    # --- jobs -------------------------------------------------------------------------------

    def create_jobs(self, factory_name: str, jobs: Sequence[JobRow], source: str) -> JobsCreated:
        """Record created pilots. Idempotent: a cid already known is left as it is; a replayed
        create (same cids, labels and key digests) writes nothing and is answered as the first was
        (``created``: the jobs recorded as asked; ``duplicates``: the others, i.e. a cid repeated
        in the request or known with another label or key digest)."""
        with self._db.write.begin() as session:
            return self.create_jobs_in(Batch(session, self._clock()), factory_name, jobs, source)

    def create_jobs_in(
        self, batch: Batch, factory_name: str, jobs: Sequence[JobRow], source: str
    ) -> JobsCreated:
        """:meth:`create_jobs` as one item of a group commit; the jobs' CREATED events are inserted
        with them (set-based, :func:`bulk.insert_created_jobs`), not added to the batch's."""
        wanted: dict[str, tuple[str, str]] = {}
        for job in jobs:
            wanted.setdefault(job["cid"], (job["label"], job.get("key_sha256", "")))
        session, now = batch.session, batch.now
        factory_id = find_factory(session, factory_name).id
        names = sorted({label for label, _ in wanted.values()})
        labels = _ensure_labels(session, self._db.dialect, factory_id, names, now)
        # In cid order: concurrent creates of the same cids (a replay, another worker) then take
        # the unique index's locks in the same order and cannot deadlock on PostgreSQL.
        rows = [(labels.by_name[wanted[cid][0]], cid, wanted[cid][1]) for cid in sorted(wanted)]
        note = f"created by factory {factory_name}"[:TEXT_MAX]
        connection = session.connection()
        recorded = insert_created_jobs(connection, factory_id, now, rows, source[:SOURCE_MAX], note)
        return JobsCreated(recorded, len(jobs) - recorded, labels.created)

    def reports_in(self, batch: Batch, reports: Sequence[PilotReport]) -> list[Outcome]:
        """Several reports in arrival order, with the results, events and final states that
        reports one after the other would give, but one SELECT of the jobs (rows locked on
        PostgreSQL, in id order across all factories) and one UPDATE statement for the jobs that
        change.

        A report must pass its job's pilot key check (:func:`pilot_keys.verdict`; refused: 403,
        counted on the factory, nothing else written) and the state machine (refused: 409, counted
        on the job; only the last :data:`REFUSALS_KEPT` refusals stay as job events).

        Each update is still conditional on the state the job was judged from: if another process
        changed a job meanwhile, :class:`ConcurrentChange` sends the batch back to be done one by
        one (where each report is judged again).
        """
        jobs = _current_jobs(batch, reports)
        states = {key: row.state for key, row in jobs.items()}
        changes: dict[tuple[str, str], dict[str, Any]] = {}
        refused: Counter[int] = Counter()
        key_refused: Counter[tuple[int, KeyVerdict]] = Counter()
        first_event = len(batch.events)
        outcomes: list[Outcome] = []
        for report in reports:
            job = jobs.get((report.factory, report.cid))
            if job is None:
                outcomes.append((False, NotFound(f"no job {report.key}: the factory has not announced it")))
                continue
            access = verdict(report.pilot_key, job.key_sha256, job.require_keys, legacy=report.legacy)
            if access is not KeyVerdict.OK:
                key_refused[job.factory_id, access] += 1
                outcomes.append((False, Forbidden(_key_refusal(report, access))))
                continue
            transition, event = _judge(report, job.job_id, states[report.factory, report.cid], batch.now)
            if event is not None:
                batch.events.append(event)
            if not transition.accepted:
                refused[job.job_id] += 1
            if transition.changed:
                states[report.factory, report.cid] = transition.state
                change = changes.setdefault(
                    (report.factory, report.cid),
                    {"job_id": job.job_id, "judged": job.state.value, "new_rc": None, "new_ids": None},
                )
                change |= {"new_state": transition.state.value, "now": batch.now}
                change["new_rc"] = report.rc if report.rc is not None else change["new_rc"]
                change["new_ids"] = report.ids or change["new_ids"]
            outcomes.append((True, transition))
        if changes and _update_reported(batch, list(changes.values())) != len(changes):
            raise ConcurrentChange("a job is changing concurrently, try again")
        if refused:
            _count_refusals(batch, refused, first_event, {job.job_id: job.refusals for job in jobs.values()})
        if key_refused:
            _count_key_refusals(batch, key_refused)
        return outcomes

    def report(self, report: PilotReport) -> Transition:
        """Apply one pilot's report in a transaction of its own (group commit off): as
        :meth:`reports_in` with a batch of one. A refusal is raised after its commit (the
        refusal is counted); a report that meets a concurrent change is judged again."""
        for _ in range(_TRANSITION_ATTEMPTS):
            try:
                with self._db.write.begin() as session:
                    batch = Batch(session, self._clock())
                    ((ok, outcome),) = self.reports_in(batch, [report])
                    batch.finish()
            except ConcurrentChange:
                continue
            if not ok:
                assert isinstance(outcome, MonitorError)
                raise outcome
            assert isinstance(outcome, Transition)
            return outcome
        raise Conflict(f"job {report.key} is changing concurrently, try again")

    # --- the factory's batch view -----------------------------------------------------------

    def batch_reports(
        self, factory_name: str, reports: Sequence[BatchReportIn], source: str
    ) -> list[BatchOutcome]:
        """Apply the factory's reports (the last one wins for a repeated cid), in chunks of
        :data:`CHUNK`, one transaction each; every move is checked by :func:`states.decide`."""
        latest = {report.cid: report for report in reports}
        outcomes: list[BatchOutcome] = []
        for part in chunks(list(latest.values())):
            outcomes.extend(self._batch_chunk(factory_name, part, source))
        return outcomes

    def _batch_chunk(
        self, factory_name: str, reports: Sequence[BatchReportIn], source: str
    ) -> list[BatchOutcome]:
        now = self._clock()
        with self._db.write.begin() as session:
            factory_id = find_factory(session, factory_name).id
            rows = {
                row.cid: row
                for row in session.execute(
                    select(Job.id, Job.cid, Job.state, Job.rc, Job.flagged)
                    .where(Job.factory_id == factory_id, Job.cid.in_([r.cid for r in reports]))
                    .order_by(Job.id)  # locked in the one order every writer uses: no deadlock
                    .with_for_update()
                )
            }
            return [
                _apply_batch(session, rows[r.cid], r, now, source)
                if r.cid in rows
                else BatchOutcome(r.cid, "unknown", None, f"no job {factory_name}:{r.cid}")
                for r in reports
            ]


# Statements of the group-commit report path, built once (their SQL is compiled once and cached).

# One UPDATE for all the jobs a batch of reports changes (executed with one parameter set each).
_REPORTS_UPDATE = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("job_id"), JOBS.c.state == bindparam("judged"))
    .values(
        state=bindparam("new_state"),
        state_changed_at=bindparam("now", type_=JOBS.c.state_changed_at.type),
        flagged=False,
        flagged_at=None,
        rc=func.coalesce(bindparam("new_rc", type_=JOBS.c.rc.type), JOBS.c.rc),
        ids=func.coalesce(bindparam("new_ids", type_=JOBS.c.ids.type), JOBS.c.ids),
    )
)
# PostgreSQL: the same as one statement of fixed text over arrays (one round trip, one plan).
_PG_REPORTS_UPDATE = text(
    "UPDATE jobs SET state = v.new_state, state_changed_at = :now, flagged = false, flagged_at = NULL,"
    " rc = COALESCE(v.new_rc, jobs.rc), ids = COALESCE(v.new_ids, jobs.ids)"
    " FROM unnest(CAST(:job_ids AS bigint[]), CAST(:judged AS varchar[]), CAST(:new_states AS varchar[]),"
    " CAST(:new_rcs AS integer[]), CAST(:new_ids AS varchar[]))"
    " AS v(job_id, judged, new_state, new_rc, new_ids)"
    " WHERE jobs.id = v.job_id AND jobs.state = v.judged"
).bindparams(bindparam("now", type_=JOBS.c.state_changed_at.type))
# The reported jobs of every factory in the batch, in one statement. PostgreSQL locks them in one
# global order (job id, whatever the factory): two batches that mix factories can then never hold
# one job each while waiting for the other's (a deadlock, which PostgreSQL breaks after a second by
# failing one batch). SQLite needs no row locks: BEGIN IMMEDIATE holds the whole database.
_PG_REPORTED_JOBS = text(
    "SELECT j.id, j.factory_id, f.name, j.cid, j.state, j.key_sha256, j.refusals, f.require_pilot_keys"
    " FROM unnest(CAST(:names AS varchar[]), CAST(:cids AS varchar[])) AS r(name, cid)"
    " JOIN factories f ON f.name = r.name JOIN jobs j ON j.factory_id = f.id AND j.cid = r.cid"
    " ORDER BY j.id FOR UPDATE OF j"
)
_SQLITE_REPORTED_JOBS = text(
    "SELECT j.id, j.factory_id, f.name, j.cid, j.state, j.key_sha256, j.refusals, f.require_pilot_keys"
    " FROM json_each(:pairs) AS r JOIN factories f ON f.name = json_extract(r.value, '$[0]')"
    " JOIN jobs j ON j.factory_id = f.id AND j.cid = json_extract(r.value, '$[1]')"
)
_COUNT_REFUSALS = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("job_id"))
    .values(refusals=JOBS.c.refusals + bindparam("n"), refused_at=bindparam("now", type_=UTCDateTime()))
)
_COUNT_KEY_REFUSALS = (
    update(FACTORIES)
    .where(FACTORIES.c.id == bindparam("factory_id"))
    .values(
        refused_unsigned=FACTORIES.c.refused_unsigned + bindparam("unsigned"),
        refused_bad_key=FACTORIES.c.refused_bad_key + bindparam("wrong"),
        key_refused_at=bindparam("now", type_=UTCDateTime()),
    )
)


@dataclass(frozen=True)
class _ReportedJob:
    """A reported job as read (and on PostgreSQL locked) for a batch of reports."""

    job_id: int
    factory_id: int
    state: JobState
    key_sha256: str
    refusals: int
    require_keys: bool


def _update_reported(batch: Batch, changes: list[dict[str, Any]]) -> int:
    """Apply the changes of :meth:`Store.reports_in` (conditional on the judged state); how many
    jobs were updated."""
    connection = batch.session.connection()
    if connection.dialect.name != "postgresql":
        return cast(CursorResult[Any], connection.execute(_REPORTS_UPDATE, changes)).rowcount
    arrays = {
        name: [change[key] for change in changes]
        for name, key in (
            ("job_ids", "job_id"),
            ("judged", "judged"),
            ("new_states", "new_state"),
            ("new_rcs", "new_rc"),
            ("new_ids", "new_ids"),
        )
    }
    return cast(
        CursorResult[Any], connection.execute(_PG_REPORTS_UPDATE, {"now": batch.now, **arrays})
    ).rowcount


def _current_jobs(batch: Batch, reports: Sequence[PilotReport]) -> dict[tuple[str, str], _ReportedJob]:
    """(factory, cid) -> the job, for the reports' jobs that exist (one statement)."""
    pairs = sorted({(report.factory, report.cid) for report in reports})
    connection = batch.session.connection()
    if connection.dialect.name == "postgresql":
        names, cids = [name for name, _ in pairs], [cid for _, cid in pairs]
        rows = connection.execute(_PG_REPORTED_JOBS, {"names": names, "cids": cids})
    else:
        rows = connection.execute(_SQLITE_REPORTED_JOBS, {"pairs": json.dumps(pairs)})
    return {
        (row.name, row.cid): _ReportedJob(
            row.id,
            row.factory_id,
            JobState(row.state),
            row.key_sha256,
            row.refusals,
            bool(row.require_pilot_keys),
        )
        for row in rows
    }


def _key_refusal(report: PilotReport, access: KeyVerdict) -> str:
    if access is KeyVerdict.WRONG:
        return f"job {report.key}: wrong pilot key"
    if report.legacy:
        return f"job {report.key}: factory {report.factory} requires pilot keys: API v1 GET reports are off"
    return (
        f"job {report.key}: factory {report.factory} requires pilot keys:"
        " send the pilot's key (Authorization: Bearer <its APFMON_KEY>)"
    )


def _count_refusals(batch: Batch, refused: Counter[int], first_event: int, before: dict[int, int]) -> None:
    """Count the batch's refused reports on their jobs and keep only the last
    :data:`REFUSALS_KEPT` of them per job as events: repeated refusals (a wrapper replaying a
    report on a finished pilot, or anyone flooding one) cost a counter, not a row each."""
    kept: dict[int, int] = {}
    fresh = batch.events[first_event:]
    for event in reversed(fresh):
        if not event["accepted"]:
            kept[event["job_id"]] = kept.get(event["job_id"], 0) + 1
            event["keep"] = kept[event["job_id"]] <= REFUSALS_KEPT
    batch.events[first_event:] = [event for event in fresh if event.pop("keep", True)]
    rows = [{"job_id": job_id, "n": n, "now": batch.now} for job_id, n in sorted(refused.items())]
    batch.session.connection().execute(_COUNT_REFUSALS, rows)
    crowded = [job_id for job_id, n in refused.items() if before.get(job_id, 0) + n > REFUSALS_KEPT]
    if crowded:
        batch.after.append(partial(_prune_refusals, sorted(crowded)))


def _prune_refusals(job_ids: list[int], session: Session) -> None:
    """Delete all but the last :data:`REFUSALS_KEPT` refusal events of these jobs."""
    oldest_kept = (
        select(JobEvent.id)
        .where(JobEvent.job_id == bindparam("job_id"), JobEvent.accepted.is_(False))
        .order_by(JobEvent.id.desc())
        .offset(REFUSALS_KEPT - 1)
        .limit(1)
        .scalar_subquery()
    )
    statement = delete(JobEvent).where(
        JobEvent.job_id == bindparam("job_id"), JobEvent.accepted.is_(False), JobEvent.id < oldest_kept
    )
    session.connection().execute(statement, [{"job_id": job_id} for job_id in job_ids])


def _count_key_refusals(batch: Batch, refused: Counter[tuple[int, KeyVerdict]]) -> None:
    """Count reports refused for their pilot key on their factories (one row each, in id order)."""
    factories = sorted({factory_id for factory_id, _ in refused})
    rows = [
        {
            "factory_id": factory_id,
            "unsigned": refused[factory_id, KeyVerdict.UNSIGNED],
            "wrong": refused[factory_id, KeyVerdict.WRONG],
            "now": batch.now,
        }
        for factory_id in factories
    ]
    batch.session.connection().execute(_COUNT_KEY_REFUSALS, rows)


def _judge(
    report: PilotReport, job_id: int, current: JobState, now: datetime
) -> tuple[Transition, dict[str, Any] | None]:
    """What ``report`` does to a job in ``current`` (state machine): the answer and its event."""
    decision = decide(current, report.target(current))
    if decision.verdict is Verdict.REPLAY:
        return Transition(report.key, current, False, True, decision.reason), None
    event = job_event(job_id, now, current, decision.target, report.source, report.text(decision.reason))
    if decision.verdict is Verdict.ILLEGAL:
        return Transition(report.key, current, False, False, decision.reason), event | {"accepted": False}
    return Transition(report.key, decision.target, True, True, decision.reason), event


def _apply_batch(
    session: Session, row: Any, report: BatchReportIn, now: datetime, source: str
) -> BatchOutcome:
    current = JobState(row.state)
    plan = batch_plan(report.state, current, bool(row.flagged), report.ran)
    if not plan.path and not plan.flag:
        return BatchOutcome(report.cid, "unchanged", current, plan.detail)
    why = f"batch system: {report.state}" + (f" rc={report.rc}" if report.rc is not None else "")
    why += f": {report.reason}" if report.reason else ""
    values: dict[str, Any] = {"flagged": True, "flagged_at": now}
    events = [job_event(row.id, now, current, current, source, f"flagged, {why}")]
    if plan.path:
        values = {"state": plan.path[-1].value, "state_changed_at": now, "flagged": False, "flagged_at": None}
        if report.rc is not None and row.rc is None:
            values["rc"] = report.rc  # the wrapper's own rc, when it sent one, wins
        events = _path_events(row.id, current, plan.path, now, source, why)
    changed = session.execute(
        update(Job)
        .where(Job.id == row.id, Job.state == current.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], changed).rowcount != 1:
        return BatchOutcome(report.cid, "retry", None, "changed concurrently, send it again")
    session.execute(insert(JobEvent), events)
    return BatchOutcome(report.cid, "changed", plan.path[-1] if plan.path else current, plan.detail)


def _path_events(
    job_id: int, current: JobState, path: Sequence[JobState], now: datetime, source: str, why: str
) -> list[dict[str, Any]]:
    events = []
    for target in path:
        decision = decide(current, target)
        if decision.verdict is not Verdict.APPLY:  # batch_plan only plans legal moves
            raise AssertionError(decision.reason)
        events.append(job_event(job_id, now, current, target, source, f"{decision.reason}, {why}"))
        current = target
    return events


@dataclass(frozen=True)
class _LabelIds:
    by_name: dict[str, int]
    created: int


def find_factory(session: Session, name: str) -> Factory:
    factory = session.scalars(select(Factory).where(Factory.name == name)).one_or_none()
    if factory is None:
        raise NotFound(f"no factory {name!r}")
    return factory


def _label_ids(session: Session, factory_id: int, names: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for part in chunks(names):
        rows = session.execute(
            select(Label.name, Label.id).where(Label.factory_id == factory_id, Label.name.in_(part))
        )
        found.update({name: label_id for name, label_id in rows})
    return found


def _ensure_labels(
    session: Session, dialect: str, factory_id: int, names: Sequence[str], now: datetime
) -> _LabelIds:
    """Ids of the factory's labels ``names``, creating missing ones empty (filled in by PUT /labels)."""
    found = _label_ids(session, factory_id, names)
    missing = [name for name in names if name not in found]
    if not missing:
        return _LabelIds(found, 0)
    rows = [_empty_label(factory_id, name, now) for name in missing]
    statement = insert_ignoring(dialect, Label, ["factory_id", "name"]).returning(Label.id)
    created = len(session.scalars(statement, rows).all())  # a concurrent request may have won some
    found.update(_label_ids(session, factory_id, missing))
    return _LabelIds(found, created)


def _empty_label(factory_id: int, name: str, now: datetime) -> dict[str, Any]:
    return {
        "factory_id": factory_id,
        "name": name,
        "batchqueue": "",
        "wmsqueue": "",
        "resource": "",
        "localqueue": "",
        "created_at": now,
        "updated_at": now,
        "last_message": "",
    }
