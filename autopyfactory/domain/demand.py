"""Demand as PanDA states it: job counts per PanDA queue, and one cycle's reading of them.

Plain data; the HTTP client that fills it in is ``edges/panda.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class PandaError(Exception):
    """No usable statistics from PanDA this time."""


#: resource type -> job label (prodsourcelabel) -> status -> count
Detail = Mapping[str, Mapping[str, Mapping[str, int]]]


@dataclass(frozen=True)
class SiteJobs:
    """Job counts of one PanDA queue (computingSite) by status; ``detail`` when asked for."""

    counts: Mapping[str, int]
    detail: Detail | None = None

    def count(
        self, status: str, resource_type: str | None = None, job_labels: tuple[str, ...] | None = None
    ) -> int:
        """Jobs in ``status`` of one resource type (None: any) and some job labels (None: any;
        empty: none, so 0).

        Restricted counts need the detailed answer; without it they raise PandaError.
        """
        if job_labels is not None and not job_labels:
            return 0
        if resource_type is None and job_labels is None:
            return self.counts.get(status, 0)
        if self.detail is None:
            raise PandaError("counts per resource type or job label need the detailed statistics")
        return sum(
            by_status.get(status, 0)
            for rt, by_label in self.detail.items()
            if resource_type is None or rt == resource_type
            for label, by_status in by_label.items()
            if job_labels is None or label in job_labels
        )

    @property
    def activated(self) -> int:
        return self.counts.get("activated", 0)

    @property
    def transferring(self) -> int:
        return self.counts.get("transferring", 0)


JobStats = Mapping[str, SiteJobs]


@dataclass(frozen=True)
class PandaReading:
    """This cycle's answer from PanDA: the statistics, or why there are none.

    ``last_good`` is when the last good answer arrived (this one's time when it is good, an
    earlier one's when not, None when there never was one); it is only ever reported, never used.
    """

    stats: JobStats | None
    asked: float
    problem: str = ""
    last_good: float | None = None

    @property
    def ok(self) -> bool:
        return self.stats is not None

    def describe(self, now: float) -> str:
        """One line for reports: ``PanDA ok, answer 3 s old`` or ``no PanDA data: ...``."""
        if self.ok:
            return f"PanDA ok, answer {max(0.0, now - self.asked):.0f} s old (its counts lag 1-2 min more)"
        if self.last_good is None:
            since = "no good answer since start"
        else:
            since = f"last good answer {max(0.0, now - self.last_good):.0f} s old, not used"
        return f"no PanDA data ({since}), nothing submitted: {self.problem}"
