"""The pilot announcements the monitor has not yet been sent, on disk, oldest first.

A pilot the monitor never hears of is a pilot whose reports it turns away, so an announcement is
written to disk before the cycle goes on: ``<stateDir>/outbox/<sequence>-<tag>.json``, one segment
per call of :meth:`PilotOutbox.add` (cut into several of at most :data:`SEGMENT_ITEMS`
announcements and ``max_bytes`` each), written atomically and fsync'd. The sequence number rises;
the tag is the writer's own, so an outbox still closing and its successor never touch each other's
files. The sending thread reads them back oldest first and deletes a segment once all of it was
sent; a segment partly sent when the factory stopped is sent again whole after the restart (a
repeated announcement changes nothing on the monitor). So a SIGKILL, a SIGTERM with the monitor
down, a restart or a reload loses none of them.

The segments together take at most ``max_bytes``. When a new segment would not fit, the oldest
segments go first, and their announcements are counted as dropped: the newest pilots are the ones
whose reports are still to come, the oldest have most likely reported (and been turned away)
already. A segment is checked against the limit before anything goes for it, so even an
announcement that could never fit drops only itself. Without a directory (tests, a factory without
a state dir) the segments are kept in memory under the same bound.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from autopyfactory.edges.files import atomic_write_text

log = logging.getLogger(__name__)

#: At most this many announcements per segment file.
SEGMENT_ITEMS = 1000
_SUFFIX = ".json"
#: A temporary file older than this was left by an interrupted write (a write takes milliseconds).
STALE_TEMPORARY_SECONDS = 60.0

Item = dict[str, str]


@dataclass
class _Segment:
    name: str  # the file's name: <sequence>-<tag>.json
    items: list[Item]
    size: int  # bytes on disk (or would be)
    sent: int = 0  # items of it already sent (in memory only: a restart sends it again whole)


class PilotOutbox:
    """Announcements kept until sent; see the module docstring. Not thread-safe: the monitor
    observer calls it under its lock."""

    def __init__(
        self, directory: Path | None, max_bytes: int, dropped: Callable[[int], None] = lambda _n: None
    ) -> None:
        """``dropped(n)``: told when ``n`` announcements are dropped at the disk limit."""
        self._directory, self._max_bytes, self._dropped = directory, max_bytes, dropped
        self._segments: deque[_Segment] = deque()
        self._bytes = 0
        self._next = 1
        self._tag = secrets.token_hex(4)
        if directory is not None:
            self._load(directory)
        if self._segments:
            log.info(
                "monitor outbox: %d pilot announcements waiting in %s (from before this start or reload),"
                " sending them first",
                len(self),
                directory,
            )

    def __len__(self) -> int:
        return sum(len(segment.items) - segment.sent for segment in self._segments)

    @property
    def bytes(self) -> int:
        return self._bytes

    def add(self, items: Sequence[Item]) -> None:
        """Keep ``items`` (on disk before this returns); raises OSError when they cannot be."""
        for segment in _fitting(items, self._max_bytes):
            self._add_segment(segment)

    def peek(self, n: int) -> list[Item]:
        """The oldest ``n`` unsent announcements (fewer when there are fewer)."""
        found: list[Item] = []
        for segment in self._segments:
            found.extend(segment.items[segment.sent : segment.sent + n - len(found)])
            if len(found) >= n:
                break
        return found

    def sent(self, items: Sequence[Item]) -> None:
        """These announcements, the oldest as :meth:`peek` gave them, were sent (or refused for
        good). Those dropped at the size limit meanwhile are no longer here and are skipped."""
        for item in items:
            if not self._segments:
                return
            head = self._segments[0]
            if head.items[head.sent] is not item:
                continue
            head.sent += 1
            if head.sent >= len(head.items):
                self._remove_head()

    def take_over(self, old: PilotOutbox) -> None:
        """Keep what ``old`` (an outbox whose writer has stopped) has not sent. In the same
        directory the disk says it all: this outbox, which read the directory when it was made,
        forgets the segments ``old`` has sent and deleted since and reads those it wrote since.
        Elsewhere (another state dir, or none) its unsent announcements are added here and
        ``old`` lets them go."""
        if self._directory is not None and self._directory == old._directory:
            self._forget_deleted()
            self._load(self._directory)
            return
        unsent = old.peek(len(old))
        if unsent:
            self.add(unsent)
            old.sent(unsent)

    def _forget_deleted(self) -> None:
        assert self._directory is not None
        for segment in [s for s in self._segments if not (self._directory / s.name).exists()]:
            self._segments.remove(segment)
            self._bytes -= segment.size

    # -- segments --

    def _add_segment(self, items: list[Item]) -> None:
        text = json.dumps(items, separators=(",", ":"))
        size = len(text.encode())
        if size > self._max_bytes:  # one announcement larger than the limit: it alone goes
            self._dropped(len(items))
            return
        while self._segments and self._bytes + size > self._max_bytes:
            head = self._segments[0]
            unsent = len(head.items) - head.sent
            self._remove_head()
            self._dropped(unsent)
        segment = _Segment(f"{self._next:012d}-{self._tag}{_SUFFIX}", items, size)
        if self._directory is not None:
            atomic_write_text(self._directory / segment.name, text, mode=0o600)
        self._next += 1
        self._segments.append(segment)
        self._bytes += size

    def _remove_head(self) -> None:
        segment = self._segments.popleft()
        self._bytes -= segment.size
        if self._directory is not None:
            try:
                (self._directory / segment.name).unlink(missing_ok=True)
            except OSError as exc:  # sent again after a restart, which changes nothing
                log.warning("monitor outbox: cannot delete a sent segment: %s", exc)

    def _load(self, directory: Path) -> None:
        """The segments a previous run left, oldest first; an unreadable one is set aside, one
        gone meanwhile (sent and deleted by an outbox still closing) is skipped, and the
        temporary files of a write a SIGKILL interrupted are removed."""
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            paths = sorted(directory.glob(f"*{_SUFFIX}"), key=_sequence)
        except OSError as exc:  # every add() will fail and say so; the cycle keeps labels unsettled
            log.error("monitor outbox: cannot read %s: %s", directory, exc)
            return
        _remove_stale_temporaries(directory)
        known = {segment.name for segment in self._segments}
        for path in (path for path in paths if path.name not in known):
            read = _read_segment(path)
            if read is None:
                continue
            items, size = read
            self._segments.append(_Segment(path.name, items, size))
            self._bytes += size
            self._next = max(self._next, _sequence(path) + 1)


def _sequence(path: Path) -> int:
    """A segment's sequence number (0 for a name that has none: read first, set aside if bad)."""
    head = path.stem.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def _fitting(items: Sequence[Item], max_bytes: int) -> list[list[Item]]:
    """``items`` in order, cut into segments of at most :data:`SEGMENT_ITEMS` announcements and
    ``max_bytes`` each (as :meth:`PilotOutbox._add_segment` writes them): a large call then
    drops only its own oldest announcements at the limit, never all of it with every older one."""
    segments: list[list[Item]] = []
    current: list[Item] = []
    size = len("[]")
    for item in items:
        item_size = len(json.dumps(item, separators=(",", ":")).encode())
        if current and (len(current) >= SEGMENT_ITEMS or size + len(",") + item_size > max_bytes):
            segments.append(current)
            current, size = [], len("[]")
        size += item_size + (len(",") if current else 0)
        current.append(item)
    if current:
        segments.append(current)
    return segments


def _remove_stale_temporaries(directory: Path) -> None:
    """Remove the temporary files (edges/files.py names them ``.<segment>.<random>.tmp``) of
    writes a SIGKILL interrupted. Only old ones: during a reload the outbox still closing may be
    writing one right now."""
    horizon = time.time() - STALE_TEMPORARY_SECONDS
    for path in directory.glob(f".*{_SUFFIX}.*.tmp"):
        try:
            if path.stat().st_mtime < horizon:
                path.unlink()
                log.info("monitor outbox: removed %s, left by an interrupted write", path.name)
        except FileNotFoundError:  # its writer renamed or removed it meanwhile
            continue
        except OSError as exc:
            log.warning("monitor outbox: cannot remove %s: %s", path, exc)


def _read_segment(path: Path) -> tuple[list[Item], int] | None:
    """A segment's announcements and its size in bytes; None when it is gone (sent and deleted
    by another outbox meanwhile) or unreadable (then set aside as ``.bad``, and said)."""
    try:
        text = path.read_text(encoding="utf-8")
        items = json.loads(text)
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise ValueError("not a list of announcements")
        return items, len(text.encode())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.error("monitor outbox: %s is unreadable, set aside as .bad: %s", path, exc)
        try:
            os.replace(path, path.with_suffix(".bad"))
        except OSError as error:
            log.error("monitor outbox: cannot set %s aside: %s", path, error)
        return None
