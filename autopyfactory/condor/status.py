"""This factory's pilots as HTCondor sees them: one ``condor_q -json`` per schedd per cycle.

The query is constrained to ``FactoryId == "<id>"`` (ClassAd-quoted) and projects only the
attributes the factory uses. ``condor_q -json`` prints nothing at all when no job matches; that
is zero pilots, not an error. Output that is not a JSON list of job ads is an error: the census
of that schedd is unknown and nothing is submitted to it this cycle.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field

import classad2

from autopyfactory.batch import BatchError
from autopyfactory.condor.command import Schedd, run_condor
from autopyfactory.model import JobStatus, Pilot, Supply

ATTRIBUTES = (
    "ClusterId", "ProcId", "JobStatus", "GridJobStatus", "EnteredCurrentStatus", "MATCH_APF_QUEUE",
    "JobRunCount", "HoldReason", "HoldReasonCode", "QDate", "NumHolds",
)  # fmt: skip


#: What the cycle's census reads: counts, housekeeping of held (and stuck idle) pilots, log dirs.
CENSUS_ATTRIBUTES = (
    "ClusterId", "ProcId", "JobStatus", "MATCH_APF_QUEUE", "QDate", "EnteredCurrentStatus",
    "HoldReason", "HoldReasonCode", "NumHolds",
)  # fmt: skip
#: Pilots queued this long before the newest one count as *recent* (see :class:`ScheddCensus`).
RECENT_SECONDS = 3600
_STATUSES = range(1, 8)


@dataclass
class ScheddCensus:
    """One schedd's answer, read in one pass without an object per job.

    ``pilots``: Pilot objects only for held pilots and for idle ones of the labels in
    ``keep_idle`` (what housekeeping acts on). ``queued``: per label the QDates, floored to the
    hour (enough for the log directories' dates; 0 = unknown). ``recent``: per label the ids of
    pilots queued at most RECENT_SECONDS before the newest pilot of the schedd (no clock needed),
    so that pilots the monitor never heard of can be announced (issue 13.3).
    """

    supply: dict[str, Supply] = field(default_factory=dict)
    total: int = 0
    pilots: dict[str, list[Pilot]] = field(default_factory=dict)
    queued: dict[str, set[int]] = field(default_factory=dict)
    recent: dict[str, list[str]] = field(default_factory=dict)


def census_query(schedd: Schedd, factory_id: str, timeout: float, keep_idle: Container[str]) -> ScheddCensus:
    """This factory's pilots in one schedd, counted. Raises BatchError when the answer is unusable."""
    args = [
        "-constraint",
        factory_constraint(factory_id),
        "-json",
        "-attributes",
        ",".join(CENSUS_ATTRIBUTES),
    ]
    return read_census(run_condor("condor_q", schedd, args, timeout), f"condor_q ({schedd})", keep_idle)


def read_census(text: str, origin: str, keep_idle: Container[str] = ()) -> ScheddCensus:
    """Count ``condor_q -json`` output per label and state in one pass (see :class:`ScheddCensus`)."""
    if not text.strip():
        return ScheddCensus()
    try:
        ads = json.loads(text)
    except ValueError as exc:
        raise BatchError(f"{origin}: unparsable output ({exc}): {text[:80]!r}") from None
    if not isinstance(ads, list):
        raise BatchError(f"{origin}: expected a JSON list of job ads, got {type(ads).__name__}")
    tallies: dict[str, list[int]] = {}
    result = ScheddCensus()
    newest, candidates = 0, []
    for ad in ads:
        if type(ad) is not dict:
            raise BatchError(f"{origin}: a job ad is a {type(ad).__name__}, not an object")
        status, label, qdate = ad.get("JobStatus"), ad.get("MATCH_APF_QUEUE", ""), ad.get("QDate", 0)
        if type(status) is not int or status not in _STATUSES or type(qdate) is not int:
            raise BatchError(f"{origin}: bad job ad {json.dumps(ad)[:120]}: JobStatus or QDate")
        label = label if type(label) is str else str(label)
        tally = tallies.get(label)
        if tally is None:
            tally = tallies[label] = [0] * 8
            result.queued[label] = set()
        tally[status] += 1
        result.queued[label].add(qdate - qdate % 3600 if qdate > 0 else 0)
        if status == 5 or (status == 1 and label in keep_idle):
            result.pilots.setdefault(label, []).append(_pilot(ad, origin))
        if qdate >= newest - RECENT_SECONDS:
            newest = max(newest, qdate)
            candidates.append((qdate, label, ad))
    try:
        for qdate, label, ad in candidates:
            if qdate >= newest - RECENT_SECONDS:
                result.recent.setdefault(label, []).append(f"{_int(ad, 'ClusterId')}.{_int(ad, 'ProcId')}")
    except ValueError as exc:
        raise BatchError(f"{origin}: bad job ad: {exc}") from None
    result.supply = {label: _tally_supply(t) for label, t in tallies.items()}
    result.total = sum(s.all for s in result.supply.values())
    return result


def _tally_supply(t: list[int]) -> Supply:
    idle, running, held = t[JobStatus.IDLE], t[JobStatus.RUNNING], t[JobStatus.HELD]
    other = t[JobStatus.TRANSFERRING_OUTPUT] + t[JobStatus.SUSPENDED]
    return Supply(idle=idle, running=running, held=held, total=idle + running + held + other)


def factory_constraint(factory_id: str) -> str:
    return f"FactoryId == {classad2.quote(factory_id)}"


def query_pilots(schedd: Schedd, factory_id: str, timeout: float) -> list[Pilot]:
    """This factory's pilots in one schedd. Raises BatchError when the answer is unusable."""
    args = ["-constraint", factory_constraint(factory_id), "-json", "-attributes", ",".join(ATTRIBUTES)]
    return parse_ads(run_condor("condor_q", schedd, args, timeout), f"condor_q ({schedd})")


def parse_ads(text: str, origin: str) -> list[Pilot]:
    if not text.strip():
        return []
    try:
        ads = json.loads(text)
    except ValueError as exc:
        raise BatchError(f"{origin}: unparsable output ({exc}): {text[:80]!r}") from None
    if not isinstance(ads, list):
        raise BatchError(f"{origin}: expected a JSON list of job ads, got {type(ads).__name__}")
    return [_pilot(ad, origin) for ad in ads]


def _pilot(ad: object, origin: str) -> Pilot:
    if not isinstance(ad, dict):
        raise BatchError(f"{origin}: a job ad is a {type(ad).__name__}, not an object")
    try:
        status = JobStatus(_int(ad, "JobStatus"))
        return Pilot(
            job_id=f"{_int(ad, 'ClusterId')}.{_int(ad, 'ProcId')}",
            label=str(ad.get("MATCH_APF_QUEUE", "")),
            status=status,
            entered_status=_int(ad, "EnteredCurrentStatus", 0),
            queued=_int(ad, "QDate", 0),
            run_count=_int(ad, "JobRunCount", 0),
            hold_reason=str(ad.get("HoldReason", "")),
            hold_reason_code=_int(ad, "HoldReasonCode", None) if "HoldReasonCode" in ad else None,
            num_holds=_int(ad, "NumHolds", 0),
            grid_status=str(ad.get("GridJobStatus", "")),
        )
    except (ValueError, TypeError) as exc:
        raise BatchError(f"{origin}: bad job ad {json.dumps(ad)[:120]}: {exc}") from None


_MISSING = object()


def _int(ad: Mapping[str, object], key: str, default: object = _MISSING) -> int:
    value = ad.get(key, default)
    if value is _MISSING:
        raise ValueError(f"no {key}")
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key}={value!r} is not an integer")
    return value


def count_by_label(pilots: Iterable[Pilot]) -> dict[str, Supply]:
    """Idle, running, held and total per label. Removed/completed jobs still listed are leaving
    the queue and are not counted; transferring-output and suspended ones count in the total."""
    tally: dict[str, Counter[JobStatus]] = {}
    for pilot in pilots:
        tally.setdefault(pilot.label, Counter())[pilot.status] += 1
    return {label: _supply(counts) for label, counts in tally.items()}


def _supply(counts: Counter[JobStatus]) -> Supply:
    idle, running, held = counts[JobStatus.IDLE], counts[JobStatus.RUNNING], counts[JobStatus.HELD]
    other = counts[JobStatus.TRANSFERRING_OUTPUT] + counts[JobStatus.SUSPENDED]
    return Supply(idle=idle, running=running, held=held, total=idle + running + held + other)
