"""Request and response bodies. Every input field is bounded and checked by a pattern, so bad
input ends in a 4xx with a clear message and never reaches the database."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal, NotRequired

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    computed_field,
    with_config,
)
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from autopyfactory.domain.names import LABEL_BODY, LABEL_CHARS, LABEL_MAX, LABEL_PATTERN, label_problem
from autopyfactory.domain.pilot_keys import DIGEST_PATTERN
from autopyfactory.monitor_service.states import PILOT_REPORTS, JobState

FID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
CID_PATTERN = r"^[0-9]{1,20}\.[0-9]{1,10}$"
NAME_CHARS = LABEL_CHARS
JOB_KEY_PATTERN = r"^[A-Za-z0-9_.-]{1,64}:[0-9]{1,20}\.[0-9]{1,10}$"
LABEL_KEY_PATTERN = rf"^[A-Za-z0-9_.-]{{1,64}}:{LABEL_BODY}$"
"""``<factory>:<label>``; the label's length is checked by :func:`label_key_problem`."""
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"

MAX_ITEMS = 20000  # labels or jobs in one bulk PUT
PAGE_MAX = 1000  # jobs or job events per page
MAX_FIELDS = 20  # fields of a form or keys of a JSON object in a report or message
HOURS_MAX = 24 * 366  # longest window of a read endpoint

FactoryId = Annotated[str, StringConstraints(pattern=FID_PATTERN)]
ClusterId = Annotated[str, StringConstraints(pattern=CID_PATTERN)]
LabelName = Annotated[str, StringConstraints(pattern=LABEL_PATTERN, max_length=LABEL_MAX)]
QueueName = Annotated[str, StringConstraints(pattern=rf"^[{NAME_CHARS}]{{0,128}}$")]
PandaQueue = Annotated[str, StringConstraints(pattern=LABEL_PATTERN, max_length=LABEL_MAX)]


def checked_label_key(key: str) -> str:
    """A ``<factory>:<label>`` key whose label obeys :func:`names.label_problem` (pattern checked)."""
    why = label_problem(key.split(":", 1)[-1])
    if why is not None:
        raise ValueError(f"label name {why}")
    return key


def _text(max_length: int, min_length: int = 0) -> StringConstraints:
    return StringConstraints(pattern=_PRINTABLE, min_length=min_length, max_length=max_length)


def _blank_is_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


_RC_DIGITS = re.compile(r"[0-9]{1,3}")
RC_RULE = "an exit code is a whole number 0-255 written in decimal digits"


def _exit_code(value: object) -> object:
    """An rc exactly as a shell prints it: a JSON integer (not a boolean, not 1.0) or a string of
    1-3 ASCII digits; pydantic's lax int would also take ``true``, ``1.0``, ``"1_0"`` (10),
    ``"+5"`` and ``"0\\n"``. Blank is "no rc"."""
    if value is None or (isinstance(value, str) and value == ""):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _RC_DIGITS.fullmatch(value):
        return int(value)
    raise ValueError(RC_RULE)


ExitCode = Annotated[Annotated[int, Field(ge=0, le=255)] | None, BeforeValidator(_exit_code)]
# A pilot key's SHA-256 in lower-case hex, or "" (announced without a key).
KeyDigest = Annotated[str, StringConstraints(pattern=f"^({DIGEST_PATTERN.strip('^$')})?$")]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- factory side -------------------------------------------------------------------------


class FactoryIn(StrictModel):
    """Heartbeat of a factory, sent at start-up and every cycle."""

    url: Annotated[str, StringConstraints(pattern=r"^(https?://[^\s\x00-\x1f\x7f]*)?$", max_length=512)] = (
        Field(default="", description="base URL of the factory's pilot logs")
    )
    email: Annotated[str, _text(256)] = ""
    version: Annotated[str, _text(64)] = ""


class LabelIn(StrictModel):
    name: LabelName
    factory: FactoryId
    batchqueue: PandaQueue = Field(description="the PanDA queue (PQ)")
    wmsqueue: QueueName = Field(default="", description="the PanDA siteid")
    resource: Annotated[str, _text(256)] = Field(default="", description="the compute element")
    localqueue: Annotated[str, _text(128)] = Field(default="", description="the CE's batch queue")


class JobIn(StrictModel):
    cid: ClusterId = Field(description="HTCondor cluster.proc")
    label: LabelName
    factory: FactoryId
    key_sha256: KeyDigest = Field(
        default="",
        description="SHA-256 (hex) of the key the factory gave this pilot in APFMON_KEY: its reports"
        " must then carry that key (see pilot keys); empty: none",
    )


@with_config(ConfigDict(extra="forbid"))
class JobRow(TypedDict):
    """:class:`JobIn` as a plain dict: the same fields and rules, so that a bulk body of 1,000 jobs
    is validated in one call without an object per job (a fifth of the server's work per job)."""

    cid: ClusterId
    label: LabelName
    factory: FactoryId
    key_sha256: NotRequired[KeyDigest]


JOB_ROWS = TypeAdapter(list[JobRow])


class LabelStatusIn(StrictModel):
    status: Annotated[str, _text(2048, min_length=1)] = Field(
        description="the label's one-line cycle message"
    )


class LabelMessageIn(StrictModel):
    label: LabelName
    status: Annotated[str, _text(2048, min_length=1)] = Field(
        description="the label's one-line cycle message"
    )


# --- wrapper side -------------------------------------------------------------------------


class JobUpdateIn(BaseModel):
    """A wrapper's report. Unknown keys are ignored: wrappers in the field are old and varied."""

    state: Literal["running", "exiting", "fault"]
    rc: ExitCode = Field(default=None, description=f"the pilot's exit code (empty: none); {RC_RULE}")
    ids: Annotated[
        Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}(,[0-9]{1,20}){0,99}$")] | None,
        BeforeValidator(_blank_is_none),
    ] = Field(default=None, description="comma-separated PanDA job ids the pilot ran (empty: none)")

    @property
    def target(self) -> JobState:
        return PILOT_REPORTS[self.state]


# --- answers ------------------------------------------------------------------------------


class ErrorOut(BaseModel):
    detail: str


class InputError(BaseModel):
    where: str = Field(description="location of the bad value, e.g. body.0.cid")
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    """A 422 answer: ``detail`` sums up every error in one line."""

    detail: str
    errors: list[InputError]


class StateCounts(BaseModel):
    """Jobs now in CREATED/RUNNING/EXITING, and jobs that became DONE/FAULT/REMOVED in the window."""

    CREATED: int = 0
    RUNNING: int = 0
    EXITING: int = 0
    DONE: int = 0
    FAULT: int = 0
    REMOVED: int = Field(default=0, description="removed by an operator's request: not faults")
    flagged: int = Field(default=0, description="active jobs flagged by expiry")


RC_PAYLOAD, RC_MISS = 0, 20  # pilot exit codes: the payload ran / there was no job ("miss")
RC_GETJOB_FAILURE = 79  # pilot 3: getJob / PanDA server communication failure
RC_GETJOB_REFUSED = 119  # the wrapper: pilot 3 exited 0 after its getJob was refused or unanswered
#: the wrapper's own failures (usage, work dir, no pilot, no python, APF 1 option)
RC_WRAPPER = range(114, 119)
RC_KILLED = range(129, 256)  # 128+N: killed by signal N


class Outcomes(BaseModel):
    """How a label's pilots that finished in the window ended, by rc (the wrapper's exit codes)."""

    hours: int
    payload: int = Field(default=0, description=f"rc {RC_PAYLOAD}: the pilot ran a payload")
    miss: int = Field(default=0, description=f"rc {RC_MISS}: no job for the pilot")
    refused: int = Field(
        default=0,
        description=f"rc {RC_GETJOB_REFUSED}: PanDA refused the pilot's getJob (e.g. HTTP 403) or gave"
        " no readable answer; pilot 3 exited 0 without a job",
    )
    getjob_failure: int = Field(
        default=0, description=f"rc {RC_GETJOB_FAILURE}: pilot 3 could not ask PanDA for a job"
    )
    killed: int = Field(default=0, description="rc 129-255: the pilot was killed by a signal (128+N)")
    wrapper: int = Field(default=0, description="rc 114-118: the wrapper failed before the pilot ran")
    other: int = Field(
        default=0, description="any other rc (e.g. 1 pilot or payload failure, 64-113 pilot errors)"
    )

    @computed_field(description="pilots that exited in the window (the sum of the above)")  # type: ignore[prop-decorator]
    @property
    def exited(self) -> int:
        return (
            self.payload
            + self.miss
            + self.refused
            + self.getjob_failure
            + self.killed
            + self.wrapper
            + self.other
        )

    @computed_field(description="share of them, in %, that ran no job (rc 20)")  # type: ignore[prop-decorator]
    @property
    def no_job_percent(self) -> float:
        return _percent(self.miss, self.exited)

    @computed_field(description="share of them, in %, whose getJob PanDA refused (rc 119)")  # type: ignore[prop-decorator]
    @property
    def refused_percent(self) -> float:
        return _percent(self.refused, self.exited)


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


FactoryStatus = Literal["ok", "warning", "error"]


PilotKeys = Literal["required", "optional"]


class FactoryOut(BaseModel):
    name: str
    url: str
    email: str
    version: str
    created_at: datetime
    last_seen: datetime | None
    status: FactoryStatus = Field(description="from the age of the last heartbeat")
    pilot_keys: PilotKeys = Field(
        description="required: pilot reports without their pilot's key are refused (and v1 GET reports)"
    )


class KeyRefusals(BaseModel):
    """Pilot reports refused for their key (403), since the factory was registered."""

    unsigned: int = Field(description="without a key where one is required, or by API v1 GET")
    wrong_key: int = Field(description="with a key that is not the pilot's")
    last_at: datetime | None
    active_without_key: int = Field(
        description="pilots not yet final that were announced without a key digest (their reports"
        " would be refused if keys were required now)"
    )


class FactoryDetail(FactoryOut):
    labels: int
    counts: StateCounts
    hours: int = Field(description="window for the DONE/FAULT/REMOVED counts")
    key_refusals: KeyRefusals


class LabelOut(BaseModel):
    name: str
    factory: str
    batchqueue: str
    wmsqueue: str
    resource: str
    localqueue: str
    created_at: datetime
    updated_at: datetime
    last_message: str
    last_message_at: datetime | None
    counts: StateCounts
    outcomes: Outcomes = Field(description="how its pilots that exited in the window ended")


class MessageOut(BaseModel):
    at: datetime
    text: str


class LabelDetail(LabelOut):
    hours: int
    messages: list[MessageOut] = Field(description="the latest cycle messages, newest first")


class JobOut(BaseModel):
    factory: str
    cid: str
    label: str
    state: JobState
    flagged: bool
    flagged_at: datetime | None
    rc: int | None
    ids: str
    created_at: datetime
    state_changed_at: datetime


class EventOut(BaseModel):
    at: datetime
    old_state: JobState | None
    new_state: JobState
    accepted: bool
    source: str
    text: str


class JobDetail(JobOut):
    batchqueue: str
    refusals: int = Field(description="reports refused by the state machine (409); the last few are events")
    refused_at: datetime | None
    events_total: int
    events_offset: int
    events_limit: int
    events: list[EventOut] = Field(description="a page of the job's timeline, oldest first")


class JobPage(BaseModel):
    total: int
    offset: int
    limit: int
    jobs: list[JobOut]


class PqSummary(BaseModel):
    pq: str
    factories: list[str]
    labels: int
    counts: StateCounts


class PqDetail(BaseModel):
    pq: str
    hours: int
    counts: StateCounts
    labels: list[LabelOut]


class FaultRow(BaseModel):
    factory: str
    label: str
    batchqueue: str
    created: int
    faults: int
    percent: float


class FaultReport(BaseModel):
    since: datetime
    hours: int
    min_created: int
    min_percent: float
    labels: list[FaultRow]


class RejectedItem(BaseModel):
    """An item of a bulk request that was not valid and was left out; the others were written."""

    index: int = Field(description="position of the item in the request, from 0")
    detail: str
    errors: list[InputError]


class LabelsWritten(BaseModel):
    created: int
    updated: int
    rejected: list[RejectedItem] = Field(default=[], description="invalid labels, left out")


class JobsWritten(BaseModel):
    created: int
    duplicates: int = Field(description="jobs already known: a replayed create changes nothing")
    labels_created: int = Field(description="labels not announced before, created empty")
    rejected: list[RejectedItem] = Field(default=[], description="invalid jobs, left out")


class MessageWritten(BaseModel):
    factory: str
    label: str
    at: datetime


class MessagesWritten(BaseModel):
    factory: str
    written: int
    at: datetime
    rejected: list[RejectedItem] = Field(default=[], description="invalid messages, left out")


class TransitionOut(BaseModel):
    job: str
    state: JobState
    changed: bool
    detail: str


class Health(BaseModel):
    status: Literal["ok"]
    schema_revision: str | None
    time: datetime


# --- the factory's view of finished pilots --------------------------------------------------

BATCH_REPORTS_MAX = 5000  # jobs in one POST /api/factories/{fid}/jobs

BatchState = Literal["done", "fault", "exiting", "removed", "flag"]
BatchResult = Literal["changed", "unchanged", "unknown", "retry"]


class BatchReportIn(StrictModel):
    """What the factory's batch system says about one of its pilots (cron helpers).

    ``done``: Completed; ``exiting``: Completed, but let expiry make it DONE; ``fault``: Removed or
    vanished (AWOL); ``removed``: removed on an operator's request (REMOVED: final, not a fault);
    ``flag``: stale (idle or running far too long): flagged, state unchanged.
    ``ran``: the batch system's outcome (its exit code) says the pilot ran, so a ``done`` or
    ``exiting`` for a pilot the monitor still has as CREATED means its wrapper's reports were lost
    (a monitor outage), not that it never ran.
    """

    cid: ClusterId
    state: BatchState
    rc: ExitCode = Field(
        default=None, description="the pilot's exit code; kept only when the wrapper sent none"
    )
    reason: Annotated[str, _text(256)] = Field(default="", description="for people: why (job events)")
    ran: bool = Field(
        default=False,
        description="done/exiting for a pilot still CREATED: true, the pilot ran (its exit code says"
        " so; its wrapper's reports were lost): CREATED -> EXITING [-> DONE]; false: it never said it"
        " ran: FAULT",
    )


class BatchReportOut(BaseModel):
    cid: str
    result: BatchResult = Field(
        description="changed; unchanged (already there, or already final); unknown (no such job); "
        "retry (changed concurrently: send it again)"
    )
    state: JobState | None = Field(description="the job's state after the request (None: unknown)")
    detail: str


class BatchReportsOut(BaseModel):
    changed: int
    unchanged: int
    unknown: int
    retry: int
    jobs: list[BatchReportOut]
    rejected: list[RejectedItem] = Field(default=[], description="invalid reports, left out")
