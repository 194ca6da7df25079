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

And the job dispatcher's side (:class:`JobTable`): getJob hands a pilot an activated job of its
site whose job label matches what the pilot asked for and whose resource type is the one it asked
for (any, if it asked none), and the job leaves ``activated`` at once in the live table (the
statistics see it only at the next refresh). Which labels match an ask is :func:`getjob_labels`,
written from the server's code, not from the factory's (the factory's own rule is tested against it).
"""

from __future__ import annotations

import json
from collections import Counter
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


def getjob_labels(asked: str | None, queue_status: str = "online") -> frozenset[str]:
    """The job labels of the jobs a getJob request for ``asked`` can be given at a queue in
    ``queue_status``: ``acquire_jobs`` (pandaserver/api/v1/pilot_api.py) asks for ``test`` instead
    of user, managed and unified at a queue in test; ``construct_where_clause``
    (pandaserver/taskbuffer/db_proxy_mods/job_complex_module.py) then matches the labels (a
    ``test`` ask with a computingElement, which pilot 3 always sends; its gangarobot processing
    type is not modelled here)."""
    if queue_status == "test" and asked in ("user", "managed", "unified"):
        asked = "test"
    if asked == "user":
        return frozenset({"user", "panda", "install"})
    production = frozenset({"managed", "test", "prod_test", "install"})
    if asked in (None, "", "managed"):
        return production
    if asked == "test":
        return frozenset({"prod_test", "install", "test"})
    if asked == "unified":
        return production | {"user", "panda"}
    return frozenset({asked})


#: A job kind in the table: (site, resource type, job label).
JobKind = tuple[str, str, str]


class JobTable:
    """PanDA's live jobs: activated ones wait for a pilot, getJob turns one into running, a
    finished one leaves. :meth:`jobs` is the table as the statistics count it (see :class:`Lag`)."""

    def __init__(self) -> None:
        self.activated: Counter[JobKind] = Counter()
        self.running: Counter[JobKind] = Counter()

    def add(self, site: str, n: int, resource_type: str = "SCORE", label: str = "managed") -> None:
        self.activated[(site, resource_type, label)] += n

    def get_job(
        self, site: str, asked: str | None, resource_type: str | None = None, queue_status: str = "online"
    ) -> JobKind | None:
        """One activated job for a pilot of ``site`` asking ``asked`` (and ``resource_type``,
        None = any), now running; None when none matches (getJob's "no job")."""
        labels = getjob_labels(asked, queue_status)
        for kind in sorted(self.activated):
            job_site, rt, label = kind
            if (
                job_site == site
                and label in labels
                and resource_type in (None, rt)
                and self.activated[kind] > 0
            ):
                self.activated[kind] -= 1
                self.running[kind] += 1
                return kind
        return None

    def finish(self, kind: JobKind) -> None:
        if self.running[kind] > 0:
            self.running[kind] -= 1

    def jobs(self) -> dict[JobKey, int]:
        """The table by (site, resource type, job label, status), as the statistics read it."""
        counts: dict[JobKey, int] = {}
        for status, table in (("activated", self.activated), ("running", self.running)):
            for (site, rt, label), n in table.items():
                counts[(site, rt, label, status)] = n
        return counts
