"""Read endpoints (JSON, no token): factories, labels, jobs, PanDA queues, the faults report."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from autopyfactory.domain.names import LABEL_MAX, LABEL_PATTERN
from autopyfactory.monitor_service.deps import ServicesDep
from autopyfactory.monitor_service.migrations import current_revision
from autopyfactory.monitor_service.queries import Activity, FactoryOverview, SearchResult
from autopyfactory.monitor_service.routes_write import INVALID_INPUT, FactoryPath, JobKey, LabelKey
from autopyfactory.monitor_service.schemas import (
    HOURS_MAX,
    PAGE_MAX,
    ErrorOut,
    FactoryDetail,
    FactoryOut,
    FaultReport,
    Health,
    JobDetail,
    JobPage,
    LabelDetail,
    LabelOut,
    Outcomes,
    PqDetail,
    PqSummary,
)
from autopyfactory.monitor_service.states import JobState

router = APIRouter(tags=["read"], responses=INVALID_INPUT)

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "not found"}}


Hours = Annotated[
    int, Query(ge=1, le=HOURS_MAX, description="window for the DONE/FAULT/REMOVED counts, in hours")
]
StateFilter = Annotated[JobState | None, Query(description="only jobs in this state")]
PqPath = Annotated[str, Path(pattern=LABEL_PATTERN, max_length=LABEL_MAX, description="PanDA queue name")]


@router.get("/api/health", response_model=Health)
def health(svc: ServicesDep) -> Health:
    """Liveness and the schema revision of the database."""
    revision = current_revision(svc.db.engines.read)
    return Health(status="ok", schema_revision=revision, time=svc.settings.clock())


@router.get("/api/factories", response_model=list[FactoryOut])
def factories(svc: ServicesDep) -> list[FactoryOut]:
    """Every factory, with its status from the age of its last heartbeat."""
    return svc.queries.factories()


@router.get("/api/factories/{fid}", response_model=FactoryDetail, responses=_NOT_FOUND)
def factory(fid: FactoryPath, svc: ServicesDep, hours: Hours = 24) -> FactoryDetail:
    return svc.queries.factory(fid, hours)


@router.get("/api/factories/{fid}/labels", response_model=list[LabelOut], responses=_NOT_FOUND)
def labels(fid: FactoryPath, svc: ServicesDep, hours: Hours = 24) -> list[LabelOut]:
    """The factory's labels with their job counts per state and last cycle message."""
    return svc.queries.labels(fid, hours)


@router.get("/api/labels/{key}", response_model=LabelDetail, responses=_NOT_FOUND)
def label(key: LabelKey, svc: ServicesDep, hours: Hours = 24) -> LabelDetail:
    """One label: counts per state and its latest cycle messages."""
    fid, name = key.split(":", 1)
    return svc.queries.label(fid, name, hours)


@router.get("/api/labels/{key}/jobs", response_model=JobPage, responses=_NOT_FOUND)
def label_jobs(
    key: LabelKey,
    svc: ServicesDep,
    state: StateFilter = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> JobPage:
    """A page of the label's jobs, newest first, optionally only those in one state."""
    fid, name = key.split(":", 1)
    return svc.queries.jobs(fid, name, state, limit, offset)


EventsLimit = Annotated[int, Query(ge=1, le=PAGE_MAX, description="events per page")]
EventsOffset = Annotated[int, Query(ge=0, le=10**9, description="events to skip, from the oldest")]


@router.get("/api/jobs/{key}", response_model=JobDetail, responses=_NOT_FOUND)
def job(key: JobKey, svc: ServicesDep, limit: EventsLimit = 100, offset: EventsOffset = 0) -> JobDetail:
    """One job with a page of its event timeline, oldest first (every transition and flag, and
    its last few refused reports; ``refusals`` counts them all)."""
    fid, cid = key.split(":", 1)
    return svc.queries.job(fid, cid, limit, offset)


@router.get("/api/pqs", response_model=list[PqSummary])
def pqs(svc: ServicesDep, hours: Hours = 24) -> list[PqSummary]:
    """Every PanDA queue served by a label, with the factories serving it and job counts."""
    return svc.queries.pqs(hours)


@router.get("/api/pqs/{pq}", response_model=PqDetail, responses=_NOT_FOUND)
def pq(pq: PqPath, svc: ServicesDep, hours: Hours = 24) -> PqDetail:
    """One PanDA queue across factories: every label serving it, with counts."""
    return svc.queries.pq(pq, hours)


@router.get("/api/report/faults", response_model=FaultReport)
def faults(
    svc: ServicesDep,
    hours: Annotated[int, Query(ge=1, le=HOURS_MAX, description="jobs created in the last N hours")] = 24,
    min_created: Annotated[int, Query(ge=1, le=10**9)] = 20,
    min_percent: Annotated[float, Query(ge=0, le=100, allow_inf_nan=False)] = 20.0,
) -> FaultReport:
    """Labels with at least `min_created` jobs created in the window, `min_percent` % of them FAULT."""
    return svc.queries.faults(hours, min_created, min_percent)


# --- JSON twins of the pages ------------------------------------------------------------------------


@router.get("/api/overview", response_model=list[FactoryOverview])
def overview(svc: ServicesDep) -> list[FactoryOverview]:
    """The index page: every factory with pilots created in 1 h, running now, faults in 6 h, activity."""
    return svc.queries.overview()


@router.get("/api/factories/{fid}/activity", response_model=Activity, responses=_NOT_FOUND)
def factory_activity(fid: FactoryPath, svc: ServicesDep, hours: Hours = 24) -> Activity:
    """Created/running/done/fault over the last `hours` (since the first heartbeat if the factory
    is younger): per 5 min for 6 h, 10 min for 24 h, 1 h for 7 d."""
    return svc.queries.factory_activity(fid, hours)


@router.get("/api/labels/{key}/activity", response_model=Activity, responses=_NOT_FOUND)
def label_activity(key: LabelKey, svc: ServicesDep, hours: Hours = 24) -> Activity:
    fid, name = key.split(":", 1)
    return svc.queries.label_activity(fid, name, hours)


@router.get("/api/labels/{key}/outcomes", response_model=Outcomes, responses=_NOT_FOUND)
def label_outcomes(key: LabelKey, svc: ServicesDep, hours: Hours = 24) -> Outcomes:
    """Pilots that exited in the window by rc: with a payload (rc 0), no job (rc 20), getJob
    refused (rc 119), ..., and the shares of no job and refused."""
    fid, name = key.split(":", 1)
    return svc.queries.outcomes(fid, name, hours)


@router.get("/api/pqs/{pq}/activity", response_model=Activity)
def pq_activity(pq: PqPath, svc: ServicesDep, hours: Hours = 24) -> Activity:
    return svc.queries.pq_activity(pq, hours)


@router.get("/api/search", response_model=SearchResult)
def search(svc: ServicesDep, q: Annotated[str, Query(min_length=1, max_length=128)]) -> SearchResult:
    """Factories, labels, PanDA queues and sites whose name contains `q`."""
    return svc.queries.search(q)
