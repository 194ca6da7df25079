"""Write endpoints: the factory's (bearer token, only its own data) and the wrapper's (no token,
only legal moves of existing jobs), plus API v1's GET calls so that old wrappers keep working."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import AfterValidator
from starlette.concurrency import run_in_threadpool

from autopyfactory.monitor_service.deps import (
    FactoryAuth,
    Services,
    ServicesDep,
    bulk_body,
    bulk_items,
    client_address,
    form_or_json_body,
    parsed_body,
    require_owner,
    services,
    valid_items,
    valid_jobs,
)
from autopyfactory.monitor_service.errors import MonitorError
from autopyfactory.monitor_service.pilot_keys import presented_key
from autopyfactory.monitor_service.pilot_reports import answer, report
from autopyfactory.monitor_service.schemas import (
    BATCH_REPORTS_MAX,
    CID_PATTERN,
    FID_PATTERN,
    JOB_KEY_PATTERN,
    LABEL_KEY_PATTERN,
    MAX_ITEMS,
    BatchReportIn,
    BatchReportOut,
    BatchReportsOut,
    ErrorOut,
    FactoryIn,
    FactoryOut,
    JobIn,
    JobRow,
    JobsWritten,
    JobUpdateIn,
    LabelIn,
    LabelMessageIn,
    LabelStatusIn,
    LabelsWritten,
    MessagesWritten,
    MessageWritten,
    TransitionOut,
    ValidationErrorOut,
    checked_label_key,
)
from autopyfactory.monitor_service.states import JobState, legacy_exit_target
from autopyfactory.monitor_service.store import JobsCreated, PilotReport, TargetRule

INVALID_INPUT: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationErrorOut, "description": "invalid input: what and where"}
}
_BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "unreadable body (not JSON, not form data)"},
    413: {"model": ErrorOut, "description": "body too large"},
}
router = APIRouter(responses=INVALID_INPUT)

FactoryPath = Annotated[str, Path(pattern=FID_PATTERN, description="factory id")]
JobKey = Annotated[str, Path(pattern=JOB_KEY_PATTERN, description="`<factory>:<cluster.proc>`")]
LabelKey = Annotated[
    str,
    Path(pattern=LABEL_KEY_PATTERN, description="`<factory>:<label>`"),
    AfterValidator(checked_label_key),
]

_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "missing or invalid token"},
    403: {"model": ErrorOut, "description": "the token belongs to another factory"},
    404: {"model": ErrorOut, "description": "unknown factory"},
    **_BODY_ERRORS,
}
_PILOT_ERRORS: dict[int | str, dict[str, Any]] = _BODY_ERRORS | {
    403: {"model": ErrorOut, "description": "no pilot key where its factory requires one, or a wrong one"},
    404: {"model": ErrorOut, "description": "unknown job"},
    409: {"model": ErrorOut, "description": "illegal transition (counted; the last few are job events)"},
    415: {"model": ErrorOut, "description": "neither form data nor JSON"},
}
_LEGACY_ERRORS: dict[int | str, dict[str, Any]] = {code: _PILOT_ERRORS[code] for code in (403, 404, 409)}


async def _label_status_body(request: Request) -> LabelStatusIn:
    return await parsed_body(request, LabelStatusIn)


# Bodies parsed by hand (form data or JSON); the endpoints themselves stay synchronous and run in
# the thread pool, as the database calls block.
LabelStatusBody = Annotated[LabelStatusIn, Depends(_label_status_body)]


# --- factory side ---------------------------------------------------------------------------


@router.put("/api/factories/{fid}", response_model=FactoryOut, responses=_AUTH_ERRORS, tags=["factory"])
def heartbeat(
    fid: FactoryPath, body: FactoryIn, factory: FactoryAuth, svc: ServicesDep, request: Request
) -> FactoryOut:
    """The factory's heartbeat (start-up and every cycle): its log URL, owner and version."""
    require_owner(factory, fid)
    record = svc.store.heartbeat(fid, body, client_address(request))
    return FactoryOut(
        name=record.name,
        url=record.url,
        email=record.email,
        version=record.version,
        created_at=record.created_at,
        last_seen=record.last_seen,
        status=svc.queries.status(record.last_seen),
        pilot_keys="required" if record.require_pilot_keys else "optional",
    )


class TooManyItems(MonitorError):
    status = 422


# The body of a bulk request, read and parsed after the token was checked (a dependency listed
# after FactoryAuth), and off the event loop (deps.bulk_items).
BulkItems = Annotated[list[dict[str, Any]], Depends(bulk_items)]


@router.put(
    "/api/labels",
    response_model=LabelsWritten,
    responses=_AUTH_ERRORS,
    openapi_extra=bulk_body(LabelIn, MAX_ITEMS),
    tags=["factory"],
)
def put_labels(factory: FactoryAuth, items: BulkItems, svc: ServicesDep) -> LabelsWritten:
    """Create or update the factory's labels (one PanDA queue × one CE queue each). Invalid
    labels are left out and listed in ``rejected``; the valid ones are written."""
    labels, rejected = valid_items(LabelIn, items)
    for label in labels:
        require_owner(factory, label.factory)
    created, updated = svc.store.upsert_labels(factory, labels)
    return LabelsWritten(created=created, updated=updated, rejected=rejected)


@router.put(
    "/api/jobs",
    response_model=JobsWritten,
    responses=_AUTH_ERRORS,
    openapi_extra=bulk_body(JobIn, MAX_ITEMS),
    tags=["factory"],
)
async def put_jobs(factory: FactoryAuth, items: BulkItems, svc: ServicesDep, request: Request) -> JobsWritten:
    """Announce created pilots (state CREATED), each optionally with the SHA-256 of its pilot
    key (``key_sha256``). A replayed create changes nothing and is answered as the first was.
    Invalid jobs are left out and listed in ``rejected``; the valid ones are written."""
    jobs, rejected = await run_in_threadpool(valid_jobs, items)
    for owner in dict.fromkeys(job["factory"] for job in jobs):  # in order: the first stranger is named
        require_owner(factory, owner)
    outcome = await _create_jobs(svc, factory, jobs, client_address(request))
    return JobsWritten(
        created=outcome.created,
        duplicates=outcome.duplicates,
        labels_created=outcome.labels_created,
        rejected=rejected,
    )


async def _create_jobs(svc: Services, factory: str, jobs: list[JobRow], source: str) -> JobsCreated:
    """In a transaction of their own (PostgreSQL: a few at once; group commit off: any number), or
    by the group-commit writer (SQLite: one writer). Answered after the commit in every case."""
    if svc.bulk_slots is not None:
        async with svc.bulk_slots:
            return await run_in_threadpool(svc.store.create_jobs, factory, jobs, source)
    if svc.writer is None:
        return await run_in_threadpool(svc.store.create_jobs, factory, jobs, source)
    work = partial(svc.store.create_jobs_in, factory_name=factory, jobs=jobs, source=source)
    return await svc.writer.run(work, weight=len(jobs))


@router.post(
    "/api/labels/{key}",
    response_model=MessageWritten,
    responses=_AUTH_ERRORS | {415: _PILOT_ERRORS[415]},
    openapi_extra=form_or_json_body(LabelStatusIn),
    tags=["factory"],
)
def post_label_message(
    key: LabelKey, factory: FactoryAuth, body: LabelStatusBody, svc: ServicesDep, request: Request
) -> MessageWritten:
    """The label's one-line cycle message (`status=...`, form data or JSON)."""
    fid, label = key.split(":", 1)
    require_owner(factory, fid)
    at = svc.store.add_message(fid, label, body.status, client_address(request))
    return MessageWritten(factory=fid, label=label, at=at)


@router.post(
    "/api/factories/{fid}/messages",
    response_model=MessagesWritten,
    responses=_AUTH_ERRORS,
    openapi_extra=bulk_body(LabelMessageIn, MAX_ITEMS),
    tags=["factory"],
)
def post_label_messages(
    fid: FactoryPath, factory: FactoryAuth, items: BulkItems, svc: ServicesDep, request: Request
) -> MessagesWritten:
    """Many labels' one-line cycle messages at once (one request per cycle instead of one per
    label); the same as `POST /api/labels/{fid}:{label}` for each, in one transaction. Invalid
    messages are left out and listed in ``rejected``; the valid ones are written."""
    require_owner(factory, fid)
    messages, rejected = valid_items(LabelMessageIn, items)
    at = svc.store.add_messages(fid, [(m.label, m.status) for m in messages], client_address(request))
    return MessagesWritten(factory=fid, written=len(messages), at=at, rejected=rejected)


@router.post(
    "/api/factories/{fid}/jobs",
    response_model=BatchReportsOut,
    responses=_AUTH_ERRORS,
    openapi_extra=bulk_body(BatchReportIn, BATCH_REPORTS_MAX),
    tags=["factory"],
)
def post_batch_reports(
    fid: FactoryPath, factory: FactoryAuth, items: BulkItems, svc: ServicesDep, request: Request
) -> BatchReportsOut:
    """What the factory's batch system saw (cron helpers): `done` (Completed), `exiting`,
    `fault` (Removed, or vanished), `removed` (removed on an operator's request) or `flag`
    (stale), applied through legal moves only.

    Completed while RUNNING passes through EXITING to DONE (two events: the wrapper's own report
    was lost); Completed while CREATED is FAULT (the pilot never reported running) unless `ran`
    says its exit code shows it ran; `removed` makes an active job REMOVED, which is final and
    not a fault; a final job is left as it is. The answer says per job what happened; an unknown
    cid is not an error.
    Invalid reports are left out and listed in ``rejected``; the valid ones are applied.
    """
    require_owner(factory, fid)
    if len(items) > BATCH_REPORTS_MAX:
        raise TooManyItems(f"at most {BATCH_REPORTS_MAX} reports in one request, not {len(items)}")
    reports, rejected = valid_items(BatchReportIn, items)
    outcomes = svc.store.batch_reports(fid, reports, client_address(request))
    jobs = [BatchReportOut(cid=o.cid, result=o.result, state=o.state, detail=o.detail) for o in outcomes]
    counts = {result: sum(1 for o in outcomes if o.result == result) for result in _BATCH_RESULTS}
    return BatchReportsOut(jobs=jobs, rejected=rejected, **counts)


_BATCH_RESULTS = ("changed", "unchanged", "unknown", "retry")


# --- wrapper side ---------------------------------------------------------------------------


@router.post(
    "/api/jobs/{key}",
    response_model=TransitionOut,
    responses=_PILOT_ERRORS,
    openapi_extra=form_or_json_body(JobUpdateIn),
    tags=["pilot"],
)
async def post_job_state(key: JobKey, request: Request) -> TransitionOut:
    """A wrapper's report: `state=running`, `state=exiting&rc=N[&ids=...]` or `state=fault[&rc=N]`,
    with `Authorization: Bearer <pilot key>` when the factory gave its pilot one (`APFMON_KEY`)."""
    # Well-formed reports are answered by pilot_reports.PilotReports before they get here (the same
    # checks and answers, without FastAPI's cost); this route documents them and refuses the rest.
    # The body and the services are fetched here rather than declared as dependencies: FastAPI's
    # dependency machinery was a third of the cost of a report (the body is still documented by
    # openapi_extra and refused with the same 422).
    svc = await services(request)
    body = await parsed_body(request, JobUpdateIn)
    fid, cid = key.split(":", 1)
    target = body.target
    pilot_key = presented_key(request.headers.get("authorization"))
    item = PilotReport(
        fid, cid, lambda _current: target, client_address(request), body.rc, body.ids, pilot_key
    )
    return answer(await report(svc, item))


# The same with a trailing slash: answered, not redirected (a wrapper's curl follows no redirect).
router.add_api_route("/api/jobs/{key}/", post_job_state, methods=["POST"], include_in_schema=False)

CidPath = Annotated[str, Path(pattern=CID_PATTERN)]


def _exit_code(rc: str) -> str:
    if int(rc) > 255:
        raise ValueError("an exit code is at most 255")
    return rc


# Decimal digits only: an int path parameter would also take "+5", "1_0" and "0\n" (%0a).
RcPath = Annotated[str, Path(pattern=r"^[0-9]{1,3}$"), AfterValidator(_exit_code)]


async def _legacy(
    svc: Services, request: Request, fid: str, cid: str, target: TargetRule, rc: int | None
) -> TransitionOut:
    item = PilotReport(fid, cid, target, client_address(request), rc, None, legacy=True)
    return answer(await report(svc, item))


@router.get("/mon/rn/{fid}/{cid}/", response_model=TransitionOut, responses=_LEGACY_ERRORS, tags=["pilot v1"])
async def legacy_running(fid: FactoryPath, cid: CidPath, svc: ServicesDep, request: Request) -> TransitionOut:
    """API v1: the pilot is running (refused for a factory that requires pilot keys)."""
    return await _legacy(svc, request, fid, cid, lambda _current: JobState.RUNNING, None)


@router.get(
    "/mon/ex/{fid}/{cid}/{rc}/", response_model=TransitionOut, responses=_LEGACY_ERRORS, tags=["pilot v1"]
)
async def legacy_exiting(
    fid: FactoryPath, cid: CidPath, rc: RcPath, svc: ServicesDep, request: Request
) -> TransitionOut:
    """API v1: the pilot is exiting with ``rc``; from CREATED with rc != 0 this means fault
    (refused for a factory that requires pilot keys)."""
    code = int(rc)
    return await _legacy(svc, request, fid, cid, lambda current: legacy_exit_target(current, code), code)


# The same without the trailing slash, so that no client is sent a redirect it may not follow.
router.add_api_route("/mon/rn/{fid}/{cid}", legacy_running, methods=["GET"], include_in_schema=False)
router.add_api_route("/mon/ex/{fid}/{cid}/{rc}", legacy_exiting, methods=["GET"], include_in_schema=False)
