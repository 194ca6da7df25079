"""This factory's pilots as HTCondor sees them: one ``condor_q -json`` per schedd per cycle.

The query is constrained to ``FactoryId == "<id>"`` (ClassAd-quoted) and projects only the
attributes the factory uses. ``condor_q -json`` prints nothing at all when no job matches; that
is zero pilots, not an error. Output that is not a JSON list of job ads is an error: the census
of that schedd is unknown and nothing is submitted to it this cycle.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping

import classad2

from autopyfactory.batch import BatchError
from autopyfactory.condor.command import Schedd, run_condor
from autopyfactory.model import JobStatus, Pilot, Supply

ATTRIBUTES = (
    "ClusterId", "ProcId", "JobStatus", "GridJobStatus", "EnteredCurrentStatus", "MATCH_APF_QUEUE",
    "JobRunCount", "HoldReason", "HoldReasonCode", "QDate", "NumHolds",
)  # fmt: skip


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
