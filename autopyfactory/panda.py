"""PanDA job statistics: how many jobs are activated per PanDA queue.

One ``GET {pandaserver}/api/v1/statistics/active_job_stats_by_site`` per cycle, for all sites,
with ``Accept: application/json`` (without it the server answers a Python repr). The answer is
``{"success": true, "message": "", "data": {SITE: {STATUS: COUNT}}}``. Anything else (HTTP errors,
``success: false``, non-JSON, wrong types, negative counts) means *no data*: the whole answer is
rejected, never half-used. :class:`PandaView` keeps the last good answer with its time; older than
``pandaMaxAge`` it counts as no data too, and the policy submits nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

from autopyfactory.snapshot import Snapshot

log = logging.getLogger(__name__)

STATS_PATH = "/api/v1/statistics/active_job_stats_by_site"
#: Keys under which PanDA lists jobs without a site; not a queue.
NO_SITE_KEYS = frozenset({"null", "None", ""})


class PandaError(Exception):
    """No usable statistics from PanDA this time."""


@dataclass(frozen=True)
class SiteJobs:
    """Job counts of one PanDA queue (computingSite) by status."""

    counts: Mapping[str, int]

    @property
    def activated(self) -> int:
        return self.counts.get("activated", 0)

    @property
    def transferring(self) -> int:
        return self.counts.get("transferring", 0)


JobStats = Mapping[str, SiteJobs]


def parse_stats(payload: object) -> dict[str, SiteJobs]:
    """Check the envelope and every number; raise PandaError on the first problem."""
    if not isinstance(payload, dict):
        raise PandaError(f"answer is a {type(payload).__name__}, not an object")
    if payload.get("success") is not True:
        raise PandaError(f"success={payload.get('success')!r}: {str(payload.get('message', ''))[:200]}")
    data = payload.get("data")
    if not isinstance(data, dict):
        raise PandaError(f"'data' is a {type(data).__name__}, not an object")
    return {site: _site_jobs(site, counts) for site, counts in data.items() if site not in NO_SITE_KEYS}


def _site_jobs(site: str, counts: object) -> SiteJobs:
    if not isinstance(counts, dict):
        raise PandaError(f"site {site!r}: counts are a {type(counts).__name__}, not an object")
    for status, n in counts.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise PandaError(f"site {site!r}: {status}={n!r} is not a count")
    return SiteJobs(dict(counts))


class PandaClient:
    """Fetches the statistics once; credentials are optional (X.509 via the session, a token file)."""

    def __init__(
        self, base_url: str, session: requests.Session, timeout: float, token_file: str = "", vo: str = ""
    ) -> None:
        self.url = base_url.rstrip("/") + STATS_PATH
        self._session, self._timeout = session, timeout
        self._token_file, self._vo = token_file, vo

    def fetch(self) -> dict[str, SiteJobs]:
        try:
            answer = self._session.get(self.url, headers=self._headers(), timeout=self._timeout)
        except requests.RequestException as exc:
            raise PandaError(f"{self.url}: {exc}") from None
        if answer.status_code != 200:
            raise PandaError(f"{self.url}: HTTP {answer.status_code}")
        try:
            payload = answer.json()
        except ValueError:
            raise PandaError(f"{self.url}: not JSON: {answer.text[:100]!r}") from None
        return parse_stats(payload)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._token_file:
            try:
                token = Path(self._token_file).read_text().strip()
            except OSError as exc:
                raise PandaError(f"token file {self._token_file}: {exc.strerror or exc}") from None
            headers["Authorization"] = f"Bearer {token}"
            if self._vo:
                headers["Origin"] = self._vo
        return headers


class PandaView:
    """The last good statistics and their age."""

    def __init__(self, client: PandaClient, max_age: float, clock: Callable[[], float]) -> None:
        self._client, self._max_age, self._clock = client, max_age, clock
        self._last: Snapshot[dict[str, SiteJobs]] | None = None

    @property
    def last(self) -> Snapshot[dict[str, SiteJobs]] | None:
        return self._last

    def update(self) -> tuple[JobStats | None, str]:
        """Fetch now; return usable statistics (or None) and, when there are none, why."""
        now = self._clock()
        try:
            self._last = Snapshot(self._client.fetch(), now, self._client.url)
        except PandaError as exc:
            problem = f"PanDA: {exc}"
            if self._last is None:
                return None, f"{problem}; no earlier statistics"
            age = self._last.age(now)
            if not self._last.fresh(now, self._max_age):
                return (
                    None,
                    f"{problem}; last good statistics are {age:.0f} s old (pandaMaxAge {self._max_age:g})",
                )
            log.warning("%s; using statistics from %.0f s ago", problem, age)
        return self._last.data, ""
