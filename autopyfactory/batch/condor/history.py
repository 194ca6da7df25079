"""``condor_history``: the job ads of this factory's pilots that left the queue, and what they
mean for the cron helpers (Completed: done with its exit code; Removed: fault with the reason)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from autopyfactory.batch.condor.census import factory_constraint
from autopyfactory.batch.condor.command import Schedd, run_condor
from autopyfactory.batch.interface import BatchError, End, EndedPilot, removed_pilot
from autopyfactory.domain.model import JobStatus

#: What the cron helpers read of a finished pilot.
HISTORY_ATTRIBUTES = (
    "ClusterId", "ProcId", "JobStatus", "EnteredCurrentStatus", "ExitCode", "ExitBySignal", "ExitSignal",
    "RemoveReason",
)  # fmt: skip


def history_ads(schedd: Schedd, args: Sequence[str], timeout: float) -> list[dict[str, Any]]:
    """The ads ``condor_history -json <args>`` prints for ``schedd`` (empty output: none).

    Raises BatchError when the tool fails or its output is not a JSON list; entries that are not
    objects are dropped.
    """
    text = run_condor("condor_history", schedd, [*args, "-json"], timeout)
    try:
        ads = json.loads(text) if text.strip() else []
    except ValueError as exc:
        raise BatchError(f"condor_history ({schedd}): unparsable output ({exc}): {text[:80]!r}") from None
    if not isinstance(ads, list):
        raise BatchError(f"condor_history ({schedd}): expected a JSON list of job ads")
    return [ad for ad in ads if isinstance(ad, dict)]


def ids_constraint(factory_id: str, job_ids: Sequence[str]) -> str:
    """This factory's jobs among ``job_ids`` (``cluster.proc``)."""
    pairs = (job_id.split(".") for job_id in job_ids)
    ids = " || ".join(f"(ClusterId == {int(c)} && ProcId == {int(p)})" for c, p in pairs)
    return f"{factory_constraint(factory_id)} && ({ids})"


def history_ids(schedd: Schedd, factory_id: str, job_ids: Sequence[str], timeout: float) -> set[str]:
    """Which of ``job_ids`` (this factory's) ``condor_history`` knows in ``schedd``."""
    args = [
        "-constraint", ids_constraint(factory_id, job_ids),
        "-attributes", "ClusterId,ProcId", "-limit", str(len(job_ids)),
    ]  # fmt: skip
    return {f"{ad.get('ClusterId')}.{ad.get('ProcId')}" for ad in history_ads(schedd, args, timeout)}


def ended_pilot(ad: Mapping[str, Any]) -> EndedPilot | None:
    """Completed: with its exit code; Removed (withdrawn, when an operator's request removed it):
    with the remove reason; None for anything else."""
    cid = f"{ad.get('ClusterId')}.{ad.get('ProcId')}"
    status = ad.get("JobStatus")
    if status == JobStatus.REMOVED:
        return removed_pilot(cid, str(ad.get("RemoveReason") or ""))
    if status != JobStatus.COMPLETED:
        return None
    if ad.get("ExitBySignal"):
        return EndedPilot(cid, End.COMPLETED, None, f"Completed, killed by signal {ad.get('ExitSignal')}")
    code = ad.get("ExitCode")
    rc = code if isinstance(code, int) and 0 <= code <= 255 else None
    return EndedPilot(cid, End.COMPLETED, rc, f"Completed, exit code {code}")


def read_history(
    schedd: Schedd, constraint: str, timeout: float, since: float | None = None
) -> list[EndedPilot]:
    """The pilots in one schedd's history that match ``constraint`` (and ended after ``since``)."""
    args = ["-constraint", constraint, "-attributes", ",".join(HISTORY_ATTRIBUTES)]
    if since is not None:
        args[2:2] = ["-since", f"EnteredCurrentStatus < {int(since)}"]
    return [pilot for ad in history_ads(schedd, args, timeout) if (pilot := ended_pilot(ad)) is not None]
