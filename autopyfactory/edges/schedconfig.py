"""Schedconfig: the CRIC panda-queue dump ``{PQ: record}``, with a last-good copy on disk.

The dump comes from an http(s) URL, a ``file://`` URL or a plain path (sites mirror it from
CVMFS). It is downloaded no more often than ``schedconfigRefresh``; a good download is written
atomically to ``schedconfigCache``. When the source fails or returns garbage, the previous good
copy (in memory, else on disk) is used and the failure is logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import unquote, urlparse

import requests

from autopyfactory.edges.files import atomic_write_text

log = logging.getLogger(__name__)

Record = Mapping[str, Any]
Dump = Mapping[str, Record]


class SchedconfigError(Exception):
    """Schedconfig could not be had: neither the source nor a last-good copy."""


def parse_dump(text: str, origin: str) -> dict[str, Record]:
    """Check and return a dump. A single bare record (as CRIC serves per queue) is accepted too."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SchedconfigError(f"{origin}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not data:
        got = "an empty object" if isinstance(data, dict) else type(data).__name__
        raise SchedconfigError(f"{origin}: expected a JSON object {{PQ: record}}, got {got}")
    if isinstance(data.get("queues"), list) and isinstance(data.get("nickname"), str):
        return {data["nickname"]: data}
    bad = [name for name, record in data.items() if not isinstance(record, dict)]
    if bad:
        raise SchedconfigError(f"{origin}: record {bad[0]!r} is not an object")
    return data


def read_source(location: str, session: requests.Session, timeout: float) -> str:
    """The text behind an http(s) URL, a file:// URL or a path."""
    scheme = urlparse(location).scheme
    if scheme in ("http", "https"):
        try:
            answer = session.get(location, timeout=timeout, headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise SchedconfigError(f"{location}: {exc}") from None
        if answer.status_code != 200:
            raise SchedconfigError(f"{location}: HTTP {answer.status_code}")
        try:  # JSON is UTF-8 whatever the Content-Type header says
            return answer.content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SchedconfigError(f"{location}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    path = Path(unquote(urlparse(location).path)) if scheme == "file" else Path(location)
    return _read_file(path)


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchedconfigError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SchedconfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


class SchedconfigSource:
    """Hands out the current dump, refreshing it when due and falling back to the last good one."""

    def __init__(
        self,
        location: str,
        cache: Path,
        refresh: float,
        session: requests.Session,
        timeout: float,
        clock: Callable[[], float],
        keep_copy: bool = True,
    ) -> None:
        self._location, self._cache, self._refresh = location, cache, refresh
        self._keep_copy = keep_copy  # False for read-only use (autopyfactory check)
        self._session, self._timeout, self._clock = session, timeout, clock
        self._current: Snapshot[dict[str, Record]] | None = None
        self._last_attempt: float | None = None

    def carry_over(self, previous: SchedconfigSource) -> None:
        """Start from ``previous``'s dump (a reload's new source) when both read the same
        location: a reload then neither downloads nor parses the whole dump again before its
        refresh is due (each parse of a dump of many MB left the process larger)."""
        if previous._location == self._location and previous._current is not None:
            self._current, self._last_attempt = previous._current, previous._last_attempt

    def get(self) -> Snapshot[dict[str, Record]]:
        """The dump to use now. Raises SchedconfigError only when no good copy exists at all."""
        now = self._clock()
        if self._last_attempt is not None and now - self._last_attempt < self._refresh and self._current:
            return self._current
        self._last_attempt = now
        try:
            text = read_source(self._location, self._session, self._timeout)
            dump = parse_dump(text, self._location)
        except SchedconfigError as exc:
            return self._fallback(str(exc))
        if self._keep_copy:
            try:
                atomic_write_text(self._cache, text)
            except OSError as exc:  # the fresh dump is still good; only the copy is missing
                log.warning("schedconfig: cannot write the last-good copy %s: %s", self._cache, exc)
        self._current = Snapshot(dump, self._location)
        log.info("schedconfig: %d queues from %s", len(dump), self._location)
        return self._current

    def _fallback(self, problem: str) -> Snapshot[dict[str, Record]]:
        if self._current is not None:
            log.warning("schedconfig: %s; keeping the copy from %s", problem, self._current.source)
            return self._current
        try:
            dump = parse_dump(_read_file(self._cache), str(self._cache))
        except SchedconfigError as exc:
            raise SchedconfigError(f"{problem}; no last-good copy either ({exc})") from None
        log.warning("schedconfig: %s; using the last-good copy %s", problem, self._cache)
        self._current = Snapshot(dump, f"last-good copy {self._cache}")
        return self._current


T = TypeVar("T")


@dataclass(frozen=True)
class Snapshot(Generic[T]):
    data: T
    source: str  # where it came from, for logs ("https://...", "last-good copy /var/lib/...")
