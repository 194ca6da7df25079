"""Read-only views: everything is counted by aggregation in the database (GROUP BY over the
indexes of :mod:`models`), never by loading job rows; only pages of jobs are loaded.

State counts mean "jobs now in CREATED/RUNNING/EXITING, and jobs that became DONE/FAULT/REMOVED in
the last ``hours`` hours": the active jobs matter whatever their age, the finished ones only recently.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import BigInteger, ColumnElement, case, cast, func, literal, select
from sqlalchemy.orm import Session

from autopyfactory.monitor_service.db import Database
from autopyfactory.monitor_service.errors import NotFound
from autopyfactory.monitor_service.models import Factory, Job, JobEvent, Label, LabelMessage
from autopyfactory.monitor_service.schemas import (
    RC_GETJOB_FAILURE,
    RC_GETJOB_REFUSED,
    RC_KILLED,
    RC_MISS,
    RC_PAYLOAD,
    RC_WRAPPER,
    EventOut,
    FactoryDetail,
    FactoryOut,
    FactoryStatus,
    FaultReport,
    FaultRow,
    JobDetail,
    JobOut,
    JobPage,
    KeyRefusals,
    LabelDetail,
    LabelOut,
    MessageOut,
    Outcomes,
    PqDetail,
    PqSummary,
    StateCounts,
)
from autopyfactory.monitor_service.settings import MonitorSettings
from autopyfactory.monitor_service.states import ACTIVE_STATES, FINAL_STATES, JobState
from autopyfactory.monitor_service.store import find_factory

_ACTIVE = [state.value for state in ACTIVE_STATES]
_FINAL = [state.value for state in FINAL_STATES]

BIN = timedelta(minutes=10)  # width of an activity bin of the index page's 24 h charts
ACTIVITY_SPAN = timedelta(hours=24)  # the index page's activity charts' window
#: Bin widths (minutes) a chart of another window may use: the narrowest with at most MAX_BINS.
NICE_BINS = (5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)
MAX_BINS = 168
MIN_SPAN = timedelta(hours=1)  # a young factory's chart covers at least this much
# The state a job reached at its latest change, as an activity series.
_SERIES_OF_STATE = {
    JobState.RUNNING.value: "running",
    JobState.EXITING.value: "done",
    JobState.DONE.value: "done",
    JobState.FAULT.value: "fault",
}
_OUTCOME_OF_RC = {
    RC_PAYLOAD: "payload",
    RC_MISS: "miss",
    RC_GETJOB_REFUSED: "refused",
    RC_GETJOB_FAILURE: "getjob_failure",
}
_EXITED = [JobState.EXITING.value, JobState.DONE.value]


def rc_outcome(rc: int | None) -> str:
    """The Outcomes field a pilot's exit code counts in (see the wrapper's exit code table)."""
    if rc in _OUTCOME_OF_RC:
        return _OUTCOME_OF_RC[rc]
    if rc is not None and rc in RC_WRAPPER:
        return "wrapper"
    if rc is not None and rc in RC_KILLED:
        return "killed"
    return "other"


SEARCH_LIMIT = 50  # hits per kind


# --- views of the pages (their JSON twins answer these models) ---------------------------------


class Activity(BaseModel):
    """Per bin of ``bin_minutes`` from ``start``: jobs created in it, and jobs whose latest state
    change fell in it by the state they reached (running: RUNNING; done: EXITING or DONE; fault)."""

    start: datetime
    bin_minutes: int
    created: list[int]
    running: list[int]
    done: list[int]
    fault: list[int]

    def series(self) -> dict[str, list[int]]:
        return {"created": self.created, "running": self.running, "done": self.done, "fault": self.fault}

    def last(self, name: str, span: timedelta) -> int:
        """The sum of a series over the last ``span`` of the window."""
        bins = int(span / timedelta(minutes=self.bin_minutes))
        return sum(self.series()[name][-bins:])


class FactoryOverview(FactoryOut):
    """A factory on the index page."""

    created_1h: int = Field(description="pilots created in the last hour")
    running: int = Field(description="pilots running now")
    faults_6h: int = Field(description="pilots that became FAULT in the last 6 hours")
    activity: Activity


SearchKind = Literal["factory", "label", "pq", "site"]


class SearchHit(BaseModel):
    kind: SearchKind
    name: str
    factory: str = ""  # for a label
    pq: str = ""  # for a label or a site


class SearchResult(BaseModel):
    q: str
    hits: list[SearchHit]


def count_states(
    session: Session, group: Any, where: Sequence[ColumnElement[bool]], since: datetime
) -> dict[Any, StateCounts]:
    """State counts per value of the ``group`` column, aggregated in the database.

    Two queries, one per kind of state, so that each is a range scan of an index on
    ``state`` (active: every row; final: only rows changed since ``since``)."""
    flagged = func.sum(case((Job.flagged.is_(True), 1), else_=0))
    active = select(group, Job.state, func.count(), flagged).where(*where, Job.state.in_(_ACTIVE))
    final = select(group, Job.state, func.count(), literal(0)).where(
        *where, Job.state.in_(_FINAL), Job.state_changed_at >= since
    )
    raw: dict[Any, dict[str, int]] = defaultdict(lambda: {"flagged": 0})
    for query in (active, final):
        for key, state, number, flagged_number in session.execute(query.group_by(group, Job.state)):
            raw[key][state] = number
            raw[key]["flagged"] += int(flagged_number or 0)
    return {key: StateCounts.model_validate(values) for key, values in raw.items()}


def outcomes_by_label(
    session: Session, where: Sequence[ColumnElement[bool]], since: datetime, hours: int
) -> dict[int, Outcomes]:
    """Per label: its pilots that exited (EXITING or DONE) since ``since``, by rc, aggregated in
    the database (a range scan of the per-label state index)."""
    rows = session.execute(
        select(Job.label_id, Job.rc, func.count())
        .where(*where, Job.state.in_(_EXITED), Job.state_changed_at >= since)
        .group_by(Job.label_id, Job.rc)
    )
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for label_id, rc, number in rows:
        field = rc_outcome(rc)
        counts[label_id][field] = counts[label_id].get(field, 0) + number
    return {label_id: Outcomes(hours=hours, **fields) for label_id, fields in counts.items()}


def of_factory(factory_id: int) -> ColumnElement[bool]:
    """Jobs of a factory, through its labels (so that the per-label indexes apply)."""
    return Job.label_id.in_(select(Label.id).where(Label.factory_id == factory_id))


def epoch_seconds(column: Any, dialect: str) -> ColumnElement[int]:
    """Whole seconds since 1970 of a (naive UTC) timestamp column, in SQL."""
    if dialect == "sqlite":
        return cast(func.strftime("%s", column), BigInteger)
    return cast(func.floor(func.extract("epoch", column)), BigInteger)


def bin_of(column: Any, start: datetime, dialect: str, width: timedelta = BIN) -> ColumnElement[int]:
    """The index of the activity bin of ``column`` (rows at or after ``start`` only)."""
    offset = epoch_seconds(column, dialect) - int(start.timestamp())
    return offset // int(width.total_seconds())


def bin_for(span: timedelta) -> timedelta:
    """The bin width of a chart over ``span``: 5 min for 6 h, 10 min for 24 h, 1 h for 7 d."""
    for minutes in NICE_BINS:
        if span / timedelta(minutes=minutes) <= MAX_BINS:
            return timedelta(minutes=minutes)
    return timedelta(minutes=NICE_BINS[-1])


@dataclass(frozen=True)
class Window:
    """An activity chart's time window: ``start`` to ``start + bins x width``."""

    start: datetime
    width: timedelta
    bins: int

    @classmethod
    def last(cls, now: datetime, span: timedelta, born: datetime | None = None) -> Window:
        """The last ``span`` before ``now``, shortened to begin at ``born`` (a young factory's
        first heartbeat), but never below MIN_SPAN; bins as :func:`bin_for` the shown span."""
        if born is not None:
            span = min(span, max(now - born, MIN_SPAN))
        width = bin_for(span)
        bins = max(1, -(-span // width))  # ceil
        return cls(now - bins * width, width, bins)


DAY_WINDOW = Window(datetime.min.replace(tzinfo=UTC), BIN, int(ACTIVITY_SPAN / BIN))  # start set per call


def activity(
    session: Session,
    group: Any,
    where: Sequence[ColumnElement[bool]],
    start: datetime,
    dialect: str,
    window: Window | None = None,
) -> dict[Any, Activity]:
    """Activity per value of ``group`` (a column of Job or Label), binned in the database;
    over the index page's 24 h from ``start`` unless a ``window`` is given."""
    window = window or replace(DAY_WINDOW, start=start)
    start, bins, width = window.start, window.bins, window.width
    end = start + bins * width
    raw: dict[Any, dict[str, list[int]]] = defaultdict(
        lambda: {name: [0] * bins for name in ("created", "running", "done", "fault")}
    )
    created_bin = bin_of(Job.created_at, start, dialect, width)
    created = (
        select(group, created_bin, literal("created"), func.count())
        .select_from(Job)
        .join(Label, Label.id == Job.label_id)
        .where(*where, Job.created_at >= start, Job.created_at < end)
        .group_by(group, created_bin)
    )
    changed_bin = bin_of(Job.state_changed_at, start, dialect, width)
    changed = (
        select(group, changed_bin, Job.state, func.count())
        .select_from(Job)
        .join(Label, Label.id == Job.label_id)
        .where(*where, Job.state.in_(list(_SERIES_OF_STATE)))
        .where(Job.state_changed_at >= start, Job.state_changed_at < end)
        .group_by(group, changed_bin, Job.state)
    )
    for query in (created, changed):
        for key, index, kind, number in session.execute(query):
            if 0 <= index < bins:
                raw[key][_SERIES_OF_STATE.get(kind, kind)][index] += number
    return {
        key: Activity(start=start, bin_minutes=int(width.total_seconds() // 60), **series)
        for key, series in raw.items()
    }


def empty_activity(start: datetime, window: Window | None = None) -> Activity:
    window = window or replace(DAY_WINDOW, start=start)
    zeros = [0] * window.bins
    return Activity(
        start=window.start,
        bin_minutes=int(window.width.total_seconds() // 60),
        created=zeros,
        running=zeros,
        done=zeros,
        fault=zeros,
    )


def like(text: str) -> str:
    """A case-insensitive substring pattern for ``text``, with LIKE's wildcards escaped by a backslash."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def job_out(job: Job, factory: str, label: str) -> JobOut:
    return JobOut(
        factory=factory,
        cid=job.cid,
        label=label,
        state=JobState(job.state),
        flagged=job.flagged,
        flagged_at=job.flagged_at,
        rc=job.rc,
        ids=job.ids,
        created_at=job.created_at,
        state_changed_at=job.state_changed_at,
    )


def label_out(label: Label, factory: str, counts: StateCounts | None, outcomes: Outcomes) -> LabelOut:
    return LabelOut(
        name=label.name,
        factory=factory,
        batchqueue=label.batchqueue,
        wmsqueue=label.wmsqueue,
        resource=label.resource,
        localqueue=label.localqueue,
        created_at=label.created_at,
        updated_at=label.updated_at,
        last_message=label.last_message,
        last_message_at=label.last_message_at,
        counts=counts or StateCounts(),
        outcomes=outcomes,
    )


class Queries:
    def __init__(self, db: Database, settings: MonitorSettings) -> None:
        self._db = db
        self._settings = settings

    def _since(self, hours: int) -> datetime:
        return self._settings.clock() - timedelta(hours=hours)

    def status(self, last_seen: datetime | None) -> FactoryStatus:
        """apfmon's index colours: ok < 20 min since the heartbeat, warning < 1 h, else error."""
        if last_seen is None:
            return "error"
        age = self._settings.clock() - last_seen
        if age < self._settings.heartbeat_ok:
            return "ok"
        return "warning" if age < self._settings.heartbeat_warning else "error"

    def _factory_out(self, factory: Factory) -> dict[str, Any]:
        return {
            "name": factory.name,
            "url": factory.url,
            "email": factory.email,
            "version": factory.version,
            "created_at": factory.created_at,
            "last_seen": factory.last_seen,
            "status": self.status(factory.last_seen),
            "pilot_keys": "required" if factory.require_pilot_keys else "optional",
        }

    # --- factories and labels ------------------------------------------------------------

    def factories(self) -> list[FactoryOut]:
        with self._db.read() as session:
            rows = session.scalars(select(Factory).order_by(Factory.name))
            return [FactoryOut(**self._factory_out(factory)) for factory in rows]

    def factory(self, name: str, hours: int) -> FactoryDetail:
        with self._db.read() as session:
            factory = find_factory(session, name)
            labels = session.scalar(
                select(func.count()).select_from(Label).where(Label.factory_id == factory.id)
            )
            counts = count_states(session, Job.factory_id, [of_factory(factory.id)], self._since(hours))
            unkeyed = session.scalar(
                select(func.count())
                .select_from(Job)
                .where(of_factory(factory.id), Job.state.in_(_ACTIVE), Job.key_sha256 == "")
            )
            refusals = KeyRefusals(
                unsigned=factory.refused_unsigned,
                wrong_key=factory.refused_bad_key,
                last_at=factory.key_refused_at,
                active_without_key=unkeyed or 0,
            )
            return FactoryDetail(
                **self._factory_out(factory),
                labels=labels or 0,
                counts=counts.get(factory.id, StateCounts()),
                hours=hours,
                key_refusals=refusals,
            )

    def labels(self, factory_name: str, hours: int) -> list[LabelOut]:
        with self._db.read() as session:
            factory = find_factory(session, factory_name)
            labels = session.scalars(
                select(Label).where(Label.factory_id == factory.id).order_by(Label.name)
            ).all()
            since, where = self._since(hours), [of_factory(factory.id)]
            counts = count_states(session, Job.label_id, where, since)
            outcomes = outcomes_by_label(session, where, since, hours)
            return [
                label_out(
                    label, factory.name, counts.get(label.id), outcomes.get(label.id, Outcomes(hours=hours))
                )
                for label in labels
            ]

    def label(self, factory_name: str, label_name: str, hours: int) -> LabelDetail:
        with self._db.read() as session:
            label = _label(session, factory_name, label_name)
            since, where = self._since(hours), [Job.label_id == label.id]
            counts = count_states(session, Job.label_id, where, since)
            outcomes = outcomes_by_label(session, where, since, hours).get(label.id, Outcomes(hours=hours))
            messages = session.scalars(
                select(LabelMessage)
                .where(LabelMessage.label_id == label.id)
                .order_by(LabelMessage.id.desc())
                .limit(self._settings.messages_kept)
            )
            return LabelDetail(
                **label_out(label, factory_name, counts.get(label.id), outcomes).model_dump(),
                hours=hours,
                messages=[MessageOut(at=m.at, text=m.text) for m in messages],
            )

    # --- jobs ------------------------------------------------------------------------------

    def jobs(
        self, factory_name: str, label_name: str, state: JobState | None, limit: int, offset: int
    ) -> JobPage:
        """A page of a label's jobs, newest first."""
        with self._db.read() as session:
            label = _label(session, factory_name, label_name)
            where = [Job.label_id == label.id]
            if state is not None:
                where.append(Job.state == state.value)
            total = session.scalar(select(func.count()).select_from(Job).where(*where)) or 0
            jobs = session.scalars(
                select(Job)
                .where(*where)
                .order_by(Job.created_at.desc(), Job.id.desc())
                .limit(limit)
                .offset(offset)
            )
            return JobPage(
                total=total,
                offset=offset,
                limit=limit,
                jobs=[job_out(job, factory_name, label_name) for job in jobs],
            )

    def job(self, factory_name: str, cid: str, limit: int = 100, offset: int = 0) -> JobDetail:
        """One job with a page of its events (oldest first)."""
        with self._db.read() as session:
            row = session.execute(
                select(Job, Label)
                .join(Factory, Factory.id == Job.factory_id)
                .join(Label, Label.id == Job.label_id)
                .where(Factory.name == factory_name, Job.cid == cid)
            ).one_or_none()
            if row is None:
                raise NotFound(f"no job {factory_name}:{cid}")
            job, label = row
            total = session.scalar(
                select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job.id)
            )
            events = session.scalars(
                select(JobEvent)
                .where(JobEvent.job_id == job.id)
                .order_by(JobEvent.id)
                .limit(limit)
                .offset(offset)
            )
            return JobDetail(
                **job_out(job, factory_name, label.name).model_dump(),
                batchqueue=label.batchqueue,
                refusals=job.refusals,
                refused_at=job.refused_at,
                events_total=total or 0,
                events_offset=offset,
                events_limit=limit,
                events=[_event_out(event) for event in events],
            )

    # --- PanDA queues and reports -------------------------------------------------------------

    def pqs(self, hours: int) -> list[PqSummary]:
        with self._db.read() as session:
            labels = session.execute(
                select(Label.id, Label.batchqueue, Factory.name).join(Factory, Factory.id == Label.factory_id)
            ).all()
            per_label = count_states(session, Job.label_id, [], self._since(hours))
        factories: dict[str, set[str]] = defaultdict(set)
        members: dict[str, list[StateCounts]] = defaultdict(list)
        for label_id, pq, factory in labels:
            factories[pq].add(factory)
            members[pq].append(per_label.get(label_id, StateCounts()))
        return [
            PqSummary(
                pq=pq, factories=sorted(factories[pq]), labels=len(members[pq]), counts=_total(members[pq])
            )
            for pq in sorted(factories)
        ]

    def pq(self, pq: str, hours: int) -> PqDetail:
        with self._db.read() as session:
            rows = session.execute(
                select(Label, Factory.name)
                .join(Factory, Factory.id == Label.factory_id)
                .where(Label.batchqueue == pq)
                .order_by(Factory.name, Label.name)
            ).all()
            if not rows:
                raise NotFound(f"no label serves PanDA queue {pq!r}")
            since, where = self._since(hours), [Job.label_id.in_([label.id for label, _ in rows])]
            counts = count_states(session, Job.label_id, where, since)
            outcomes = outcomes_by_label(session, where, since, hours)
            labels = [
                label_out(label, factory, counts.get(label.id), outcomes.get(label.id, Outcomes(hours=hours)))
                for label, factory in rows
            ]
            return PqDetail(pq=pq, hours=hours, counts=_total(c.counts for c in labels), labels=labels)

    def faults(self, hours: int, min_created: int, min_percent: float) -> FaultReport:
        """Labels with at least ``min_created`` jobs created in the last ``hours`` hours of which at
        least ``min_percent`` % are FAULT, worst first."""
        since = self._since(hours)
        faults = func.sum(case((Job.state == JobState.FAULT.value, 1), else_=0))
        created = func.count()
        per_label = (
            select(Job.label_id, created.label("created"), faults.label("faults"))
            .where(Job.created_at >= since)
            .group_by(Job.label_id)
            .having(created >= min_created, faults * 100 >= created * min_percent)
            .subquery()
        )
        with self._db.read() as session:
            rows = session.execute(
                select(Factory.name, Label.name, Label.batchqueue, per_label.c.created, per_label.c.faults)
                .join(Label, Label.id == per_label.c.label_id)
                .join(Factory, Factory.id == Label.factory_id)
            )
            report = [
                FaultRow(
                    factory=factory,
                    label=label,
                    batchqueue=pq,
                    created=number,
                    faults=int(fault_number),
                    percent=round(100.0 * int(fault_number) / number, 1),
                )
                for factory, label, pq, number, fault_number in rows
            ]
        report.sort(key=lambda row: (-row.percent, -row.faults, row.factory, row.label))
        return FaultReport(
            since=since, hours=hours, min_created=min_created, min_percent=min_percent, labels=report
        )

    # --- pages: overview, activity, outcomes, search ----------------------------------------------

    def _activity_start(self) -> datetime:
        return self._settings.clock() - ACTIVITY_SPAN

    def overview(self) -> list[FactoryOverview]:
        """Every factory with the index page's numbers: created in 1 h, running now, faults in 6 h."""
        start = self._activity_start()
        with self._db.read() as session:
            factories = session.scalars(select(Factory).order_by(Factory.name)).all()
            charts = activity(session, Label.factory_id, [], start, self._db.dialect)
            running = dict(
                session.execute(
                    select(Label.factory_id, func.count())
                    .select_from(Job)
                    .join(Label, Label.id == Job.label_id)
                    .where(Job.state == JobState.RUNNING.value)
                    .group_by(Label.factory_id)
                ).all()
            )
        result = []
        for factory in factories:
            chart = charts.get(factory.id) or empty_activity(start)
            result.append(
                FactoryOverview(
                    **self._factory_out(factory),
                    created_1h=chart.last("created", timedelta(hours=1)),
                    running=running.get(factory.id, 0),
                    faults_6h=chart.last("fault", timedelta(hours=6)),
                    activity=chart,
                )
            )
        return result

    def _window(self, hours: int, born: datetime | None) -> Window:
        return Window.last(self._settings.clock(), timedelta(hours=hours), _aware(born))

    def factory_activity(self, name: str, hours: int = 24) -> Activity:
        """Over the last ``hours``, or since the factory's first heartbeat if it is younger."""
        with self._db.read() as session:
            factory = find_factory(session, name)
            w = self._window(hours, factory.created_at)
            found = activity(
                session, Label.factory_id, [of_factory(factory.id)], w.start, self._db.dialect, w
            )
        return found.get(factory.id) or empty_activity(w.start, w)

    def label_activity(self, factory_name: str, label_name: str, hours: int = 24) -> Activity:
        """Over the last ``hours``, or since the label first appeared if it is younger."""
        with self._db.read() as session:
            label = _label(session, factory_name, label_name)
            w = self._window(hours, label.created_at)
            found = activity(session, Job.label_id, [Job.label_id == label.id], w.start, self._db.dialect, w)
        return found.get(label.id) or empty_activity(w.start, w)

    def pq_activity(self, pq: str, hours: int = 24) -> Activity:
        w = self._window(hours, None)
        ids = select(Label.id).where(Label.batchqueue == pq)
        with self._db.read() as session:
            found = activity(session, Label.batchqueue, [Job.label_id.in_(ids)], w.start, self._db.dialect, w)
        return found.get(pq) or empty_activity(w.start, w)

    def outcomes(self, factory_name: str, label_name: str, hours: int) -> Outcomes:
        """Pilots of the label that exited (EXITING or DONE) in the window, by rc."""
        with self._db.read() as session:
            label = _label(session, factory_name, label_name)
            found = outcomes_by_label(session, [Job.label_id == label.id], self._since(hours), hours)
        return found.get(label.id, Outcomes(hours=hours))

    def factory_url(self, name: str) -> str:
        """The factory's log URL (its heartbeat's ``url``), "" when unknown."""
        with self._db.read() as session:
            return find_factory(session, name).url

    def search(self, text: str) -> SearchResult:
        """Factories, labels, PanDA queues and sites whose name contains ``text`` (any case)."""
        pattern = like(text.strip())
        with self._db.read() as session:
            hits = [
                SearchHit(kind="factory", name=name)
                for name in session.scalars(
                    select(Factory.name)
                    .where(func.lower(Factory.name).like(pattern, escape="\\"))
                    .order_by(Factory.name)
                    .limit(SEARCH_LIMIT)
                )
            ]
            hits += _search_labels(session, pattern)
            hits += _search_queues(session, "pq", Label.batchqueue, pattern)
            hits += _search_queues(session, "site", Label.wmsqueue, pattern)
        return SearchResult(q=text, hits=hits)


def _search_labels(session: Session, pattern: str) -> list[SearchHit]:
    rows = session.execute(
        select(Label.name, Factory.name, Label.batchqueue)
        .join(Factory, Factory.id == Label.factory_id)
        .where(func.lower(Label.name).like(pattern, escape="\\"))
        .order_by(Label.name, Factory.name)
        .limit(SEARCH_LIMIT)
    )
    return [SearchHit(kind="label", name=name, factory=factory, pq=pq) for name, factory, pq in rows]


def _search_queues(session: Session, kind: SearchKind, column: Any, pattern: str) -> list[SearchHit]:
    """Distinct PanDA queues (``batchqueue``) or sites (``wmsqueue``) matching ``pattern``."""
    rows = session.execute(
        select(column, func.min(Label.batchqueue))
        .where(column != "", func.lower(column).like(pattern, escape="\\"))
        .group_by(column)
        .order_by(column)
        .limit(SEARCH_LIMIT)
    )
    return [SearchHit(kind=kind, name=name, pq=pq) for name, pq in rows]


def _aware(when: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back (stored as UTC)."""
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


def _label(session: Session, factory_name: str, label_name: str) -> Label:
    label = session.scalars(
        select(Label)
        .join(Factory, Factory.id == Label.factory_id)
        .where(Factory.name == factory_name, Label.name == label_name)
    ).one_or_none()
    if label is None:
        raise NotFound(f"no label {factory_name}:{label_name}")
    return label


def _event_out(event: JobEvent) -> EventOut:
    return EventOut(
        at=event.at,
        old_state=JobState(event.old_state) if event.old_state else None,
        new_state=JobState(event.new_state),
        accepted=event.accepted,
        source=event.source,
        text=event.text,
    )


def _total(counts: Iterable[StateCounts]) -> StateCounts:
    total: dict[str, int] = defaultdict(int)
    for one in counts:
        for key, value in one.model_dump().items():
            total[key] += value
    return StateCounts.model_validate(total)
