"""What a real PanDA server answers for job statistics: the demo's stand-in and the tests use this.

Measured on a real panda-server 1.0.4 and read in its source (``pandaserver/api/v1/
statistics_api.py``, ``DBProxy.getJobStatistics`` / ``getDetailedJobStatistics``,
``pandaserver/server/panda.py``):

* ``success = data != {}``: when no job is left at all the answer is ``success: false`` with
  ``data: {}`` and the message of a database failure;
* only sites with jobs are listed (one row per GROUP BY group); jobs without a site come under
  ``"null"`` (a SQL NULL as a JSON key); every listed site (in the detailed answer: every listed
  site/resource type/job label) has ``activated``, ``assigned`` and ``running``, zero-filled;
  ``merging`` is dropped;
* JSON only for ``Accept`` (or ``Content-Type``) exactly ``application/json``; otherwise
  ``str()`` of the answer, a Python repr. The Content-Type of the answer is ``text/plain`` either way;
* activated/running/starting/holding/transferring come from a summary table refreshed about once
  a minute; ``assigned`` (and ``defined``, from another table) is live. :class:`Lag` reproduces it.

Counts are kept as ``{(site, resource_type, prodsourcelabel, status): n}`` with ``None`` for a
missing site, resource type or job label, as in the database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

JobKey = tuple[str | None, str | None, str | None, str]
Jobs = Mapping[JobKey, int]

ZERO_FILLED = ("assigned", "activated", "running")
DROPPED = frozenset({"merging"})
#: statuses counted from PanDA's summary table (refreshed once a minute); the others are live
SUMMARISED = frozenset({"activated", "running", "starting", "holding", "transferring", "sent"})
MESSAGE = "Database failure getting the job statistics"
DETAILED_MESSAGE = MESSAGE + " with resource_type and prodsourcelabel"


def from_sites(
    sites: Mapping[str | None, Mapping[str, int]], resource_type: str | None = "SCORE", label: str = "managed"
) -> dict[JobKey, int]:
    """``{site: {status: n}}`` as jobs of one resource type and job label."""
    return {
        (site, resource_type, label, status): n
        for site, counts in sites.items()
        for status, n in counts.items()
    }


def _key(value: str | None) -> str:
    return "null" if value is None else value  # what json.dumps makes of a None key


def job_stats(jobs: Jobs) -> dict[str, dict[str, int]]:
    """The ``data`` of ``active_job_stats_by_site``: site -> status -> count."""
    out: dict[str, dict[str, int]] = {}
    for (site, _rt, _label, status), n in jobs.items():
        if n > 0 and status not in DROPPED:
            counts = out.setdefault(_key(site), {})
            counts[status] = counts.get(status, 0) + n
    for counts in out.values():
        for status in ZERO_FILLED:
            counts.setdefault(status, 0)
    return out


def detailed_job_stats(jobs: Jobs) -> dict[str, dict[str, dict[str, dict[str, int]]]]:
    """The ``data`` of ``active_job_detailed_stats_by_site``: site -> resource type -> job label -> status."""
    out: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
    for (site, rt, label, status), n in jobs.items():
        if n > 0 and status not in DROPPED:
            counts = out.setdefault(_key(site), {}).setdefault(_key(rt), {}).setdefault(_key(label), {})
            counts[status] = counts.get(status, 0) + n
    for by_rt in out.values():
        for by_label in by_rt.values():
            for counts in by_label.values():
                for status in ZERO_FILLED:
                    counts.setdefault(status, 0)
    return out


def envelope(data: Mapping[str, Any], detailed: bool = False) -> dict[str, Any]:
    """The server's answer around ``data``: an empty one is a failure (``success = data != {}``)."""
    success = data != {}
    message = "" if success else (DETAILED_MESSAGE if detailed else MESSAGE)
    return {"success": success, "message": message, "data": dict(data)}


def render(payload: object, accept: str | None, content_type: str | None = None) -> bytes:
    """JSON only when ``Accept`` or ``Content-Type`` is exactly ``application/json``, else a repr."""
    if "application/json" in (accept, content_type):
        return json.dumps(payload).encode()
    return str(payload).encode()


class Lag:
    """PanDA's summary table: summarised statuses are as they were at the last refresh.

    ``period`` seconds between refreshes (PanDA: 60); 0 means no lag. The clock is injected.
    """

    def __init__(self, period: float, clock: Callable[[], float]) -> None:
        self._period, self._clock = period, clock
        self._snapshot: dict[JobKey, int] = {}
        self._taken: float | None = None

    def view(self, live: Jobs) -> dict[JobKey, int]:
        """The counts a client sees now: summarised ones from the snapshot, the others live."""
        if self._period <= 0:
            return dict(live)
        now = self._clock()
        if self._taken is None or now - self._taken >= self._period:
            self._snapshot = {k: n for k, n in live.items() if k[3] in SUMMARISED}
            self._taken = now
        seen = {k: n for k, n in live.items() if k[3] not in SUMMARISED}
        seen.update(self._snapshot)
        return seen
