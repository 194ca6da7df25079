"""The client of the monitoring webservice (apfmon API v2), for the factory and the cron helpers.

One place knows the API's URLs, how a name goes into one (:func:`path_part`: the same rule for
every factory id and label, whoever asks), the token and the timeouts. The factory's observer
(observers/monitor.py) sends its requests through :meth:`MonitorClient.request` from a background
thread and decides itself what to retry; the cron helpers use the typed calls, where every failure
is a :class:`MonitorError`.

Requests (below the API root, e.g. ``http://apfmon.example.org/api``)::

    PUT  /factories/<factory>             heartbeat (log URL, owner, version)
    PUT  /labels                          the factory's labels
    PUT  /jobs                            pilots created (each with its key's digest, if any)
    POST /factories/<factory>/messages    the labels' one-line cycle messages (bulk)
    POST /labels/<factory>:<label>        one label's message (a monitor without the bulk call)
    GET  /factories/<factory>/labels      labels with their job counts per state
    GET  /labels/<factory>:<label>/jobs   a label's jobs in one state, a page at a time
    POST /factories/<factory>/jobs        the batch system's view of finished or stale pilots
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests

#: Jobs asked for per page of a label's jobs.
PAGE = 1000


class MonitorError(Exception):
    """A monitor call failed (unreachable, refused, or an answer that is not JSON)."""


def path_part(name: str) -> str:
    """A factory id or label name as one part of a URL path. Both are made of letters, digits and
    ``_.-`` (label names also ``+@=``), which all stand as they are; anything else is escaped."""
    return quote(name, safe="+@=")


@dataclass(frozen=True)
class MonitoredJob:
    """A pilot as the monitor has it."""

    cid: str
    label: str
    created_at: float  # epoch seconds


def pilot_item(cid: str, label: str, factory: str, key_sha256: str = "") -> dict[str, str]:
    """One pilot of a ``PUT /jobs`` announcement; ``key_sha256``: the SHA-256 digest of the
    pilot's key, left out when the pilot has none (never the key itself)."""
    item = {"cid": cid, "label": label, "factory": factory}
    return item | {"key_sha256": key_sha256} if key_sha256 else item


class MonitorClient:
    """The API's URLs and calls for one factory (see the module docstring)."""

    def __init__(
        self, url: str, token: str, factory_id: str, session: requests.Session, timeout: float = 10.0
    ) -> None:
        """``url``: the API root; ``timeout``: seconds per request unless the call says otherwise."""
        self.url, self.factory_id, self.timeout = url.rstrip("/"), factory_id, timeout
        self._token, self._session = token, session

    def close(self) -> None:
        """Close the session's connections (a replaced client leaves none behind)."""
        self._session.close()

    # -- URLs --

    def factory_path(self) -> str:
        return f"/factories/{path_part(self.factory_id)}"

    def label_path(self, label: str) -> str:
        return f"/labels/{path_part(self.factory_id)}:{path_part(label)}"

    # -- HTTP --

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        params: Mapping[str, str | int] | None = None,
        timeout: float | None = None,
    ) -> requests.Response:
        """One request with the factory's token; raises ``requests.RequestException`` when there
        is no answer. Any answer is returned, whatever its status."""
        return self._session.request(
            method,
            self.url + path,
            json=body,
            params=params,
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=self.timeout if timeout is None else timeout,
        )

    def call(
        self, method: str, path: str, body: object = None, params: Mapping[str, str | int] | None = None
    ) -> Any:
        """The JSON answer of one request; MonitorError when there is none, it is an HTTP error,
        or it is not JSON."""
        try:
            answer = self.request(method, path, body, params)
        except requests.RequestException as exc:
            raise MonitorError(f"monitor {self.url} unreachable: {exc}") from None
        if answer.status_code >= 400:
            raise MonitorError(f"monitor {method} {path}: HTTP {answer.status_code} {answer.text[:200]}")
        try:
            return answer.json()
        except ValueError:
            raise MonitorError(f"monitor {method} {path}: the answer is not JSON") from None

    # -- what the cron helpers ask --

    def label_counts(self) -> dict[str, Mapping[str, int]]:
        """This factory's labels at the monitor, each with its number of jobs per state."""
        labels = self.call("GET", f"{self.factory_path()}/labels")
        return {label["name"]: label["counts"] for label in labels}

    def jobs(self, label: str, state: str) -> Iterator[MonitoredJob]:
        """The label's jobs in ``state``, a page at a time."""
        offset = 0
        while True:
            params: dict[str, str | int] = {"state": state, "limit": PAGE, "offset": offset}
            page = self.call("GET", f"{self.label_path(label)}/jobs", params=params)
            for job in page["jobs"]:
                yield MonitoredJob(job["cid"], label, datetime.fromisoformat(job["created_at"]).timestamp())
            offset += len(page["jobs"])
            if not page["jobs"] or offset >= page["total"]:
                return

    def report_jobs(self, reports: Sequence[Mapping[str, object]]) -> Any:
        """What the batch system says about these pilots (``cid``, ``state``, ``rc``, ``reason``);
        the monitor's answer: counts (changed, unchanged, unknown), ``jobs`` with each result and
        ``rejected`` items."""
        return self.call("POST", f"{self.factory_path()}/jobs", list(reports))
