"""PanDA job statistics: how many jobs are activated per PanDA queue.

One ``GET {pandaserver}/api/v1/statistics/active_job_stats_by_site`` per cycle, for all sites,
with ``Accept: application/json`` (without it the server answers a Python repr). The answer is
``{"success": true, "message": "", "data": {SITE: {STATUS: COUNT}}}``. Anything else (HTTP errors,
``success: false``, non-JSON, wrong types, negative counts) means *no data*: the whole answer is
rejected, never half-used.

A cycle whose answer is not a good one has **no PanDA data at all**: an earlier answer is never
reused. The real server answers ``success: false`` with ``data: {}`` both when its database fails
and when no job is left anywhere (its code is ``success = data != {}``), so numbers from before a
failure may describe jobs that no longer exist; submitting on them is what over-submits a queue
running dry. :class:`PandaView` still remembers when the last good answer came, so that reports can
say how old the last numbers PanDA confirmed are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import requests

from autopyfactory.domain.demand import PandaError, PandaReading, SiteJobs

log = logging.getLogger(__name__)

STATS_PATH = "/api/v1/statistics/active_job_stats_by_site"
#: site -> resource type -> prodsourcelabel -> status -> count (panda-server >= 0.7.0); asked for
#: instead of STATS_PATH when a label counts only some resource types or job labels.
DETAILED_PATH = "/api/v1/statistics/active_job_detailed_stats_by_site"
#: Keys under which PanDA lists jobs without a site; not a queue.
NO_SITE_KEYS = frozenset({"null", "None", ""})


#: How much of an HTTP error body goes into the message (its first line, at most this long).
REASON_CHARS = 200


def first_line(text: str, limit: int = REASON_CHARS) -> str:
    """The first non-empty line of ``text``, at most ``limit`` characters (the server's reason)."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def parse_stats(payload: object) -> dict[str, SiteJobs]:
    """Check the envelope and every number; raise PandaError on the first problem."""
    return {
        site: _site_jobs(site, counts) for site, counts in _data(payload).items() if site not in NO_SITE_KEYS
    }


class EmptyStatistics(PandaError):
    """``success: false`` without data: what a real server answers when it has no job at all, and
    also when its database fails (see the module doc). No data for a cycle; ``check`` says "no jobs"."""


def _data(payload: object) -> dict[str, object]:
    if not isinstance(payload, dict):
        raise PandaError(f"answer is a {type(payload).__name__}, not an object")
    if payload.get("success") is not True:
        problem = f"success={payload.get('success')!r}: {str(payload.get('message', ''))[:200]}"
        raise EmptyStatistics(problem) if payload.get("data") == {} else PandaError(problem)
    data = payload.get("data")
    if not isinstance(data, dict):
        raise PandaError(f"'data' is a {type(data).__name__}, not an object")
    return data


def _site_jobs(site: str, counts: object) -> SiteJobs:
    return SiteJobs(_counts(f"site {site!r}", counts))


def _counts(where: str, counts: object) -> dict[str, int]:
    if not isinstance(counts, dict):
        raise PandaError(f"{where}: counts are a {type(counts).__name__}, not an object")
    for status, n in counts.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise PandaError(f"{where}: {status}={n!r} is not a count")
    return dict(counts)


def parse_detailed_stats(payload: object) -> dict[str, SiteJobs]:
    """The detailed answer: same envelope and checks; each site's totals are the sums of its detail."""
    sites: dict[str, SiteJobs] = {}
    for site, by_rt in _data(payload).items():
        if site in NO_SITE_KEYS:
            continue
        detail = {
            rt: {
                label: _counts(f"site {site!r} {rt}/{label}", c)
                for label, c in _object(site, by_label).items()
            }
            for rt, by_label in _object(site, by_rt).items()
        }
        totals: dict[str, int] = {}
        for by_label in detail.values():
            for by_status in by_label.values():
                for status, n in by_status.items():
                    totals[status] = totals.get(status, 0) + n
        sites[site] = SiteJobs(totals, detail)
    return sites


def _object(site: str, value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise PandaError(f"site {site!r}: {type(value).__name__} where an object belongs")
    return value


class PandaClient:
    """Fetches the statistics once; credentials are optional (X.509 via the session, a token file)."""

    def __init__(
        self, base_url: str, session: requests.Session, timeout: float, token_file: str = "", vo: str = ""
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + STATS_PATH
        self._session, self._timeout = session, timeout
        self._token_file, self._vo = token_file, vo

    def fetch(self, detailed: bool = False) -> dict[str, SiteJobs]:
        """One request: the per-site answer, or with ``detailed`` the one per resource type and job label."""
        url = self.base_url + (DETAILED_PATH if detailed else STATS_PATH)
        try:
            answer = self._session.get(url, headers=self._headers(), timeout=self._timeout)
        except requests.RequestException as exc:
            raise PandaError(f"{url}: {exc}") from None
        if answer.status_code != 200:
            reason = first_line(answer.text)
            raise PandaError(f"{url}: HTTP {answer.status_code}" + (f": {reason}" if reason else ""))
        try:
            payload = answer.json()
        except ValueError:
            raise PandaError(f"{url}: not JSON: {first_line(answer.text, 100)!r}") from None
        return parse_detailed_stats(payload) if detailed else parse_stats(payload)

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
    """Asks PanDA once per cycle and remembers when it last answered well."""

    def __init__(self, client: PandaClient, clock: Callable[[], float]) -> None:
        self._client, self._clock = client, clock
        self._last_good: float | None = None

    @property
    def last_good(self) -> float | None:
        """When the last good answer arrived (None: never)."""
        return self._last_good

    def update(self, detailed: bool = False) -> PandaReading:
        """Fetch now. A failure is no data: never the last good answer again (see the module doc)."""
        now = self._clock()
        try:
            stats = self._client.fetch(detailed)
        except PandaError as exc:
            return PandaReading(None, now, f"PanDA: {exc}", self._last_good)
        self._last_good = now
        return PandaReading(stats, now, "", now)
