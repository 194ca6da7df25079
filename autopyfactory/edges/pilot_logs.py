"""The pilot log tree on disk: scanning it, and carrying out the plan of ``domain/log_retention.py``.

Entries of the base directory not named like a date are never touched (logged and skipped); so
are symbolic links. :func:`run_cleanup` scans, plans, logs what is spared and why, and applies;
:class:`PilotLogCleanup` is the cycle's log cleanup port, at most once per ``logCleanupInterval``
(:class:`CleanupSchedule`). It is an edge because it reads and changes files; the cycle gives it
the census's directories in use, and runs it after the census and *before* its submissions, so
that pilots submitted later in the cycle are not missing from that census.

About compressed logs: web servers can serve ``x.out.gz`` to browsers as text (Apache:
``AddEncoding gzip .gz`` with ``ForceType text/plain`` for ``*.out.gz``/``*.err.gz``/``*.log.gz``;
nginx: ``gzip_static`` or ``add_header Content-Encoding gzip`` with ``default_type text/plain``).
Links built from the original names (pilot GTAG, monitor) then need the ``.gz`` suffix, or a
rewrite rule that tries ``$uri.gz``: compressing changes the names under which logs are served.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from autopyfactory.domain.log_retention import (
    CleanupPlan,
    CleanupPolicy,
    DayDir,
    Deletion,
    LabelDir,
    Why,
    format_bytes,
    plan_cleanup,
)

log = logging.getLogger(__name__)

_DAY_NAME = re.compile(r"\d{4}-\d{2}-\d{2}")
_COMPRESSED = (".gz", ".gz.tmp")

#: Free bytes of the filesystem holding a path (the seam tests fake).
FreeSpaceProbe = Callable[[Path], int]


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


# ---- scanning (the edge that reads) ---------------------------------------------------------


def scan(base_log_dir: Path) -> list[DayDir]:
    """The day directories under ``base_log_dir`` with their label directories' sizes.

    Robust to a live tree: entries that vanish while being scanned are simply not counted.
    Entries not named ``YYYY-MM-DD`` (a valid date) are logged and left alone.
    """
    days: list[DayDir] = []
    for entry in _entries(base_log_dir):
        day = _day_of(entry.name)
        if day is None or not _is_dir(entry):
            log.info(
                "log cleanup: leaving %s alone (not a YYYY-MM-DD directory; links are not followed)",
                entry.path,
            )
            continue
        found = _scan_day(Path(entry.path), day)
        if found is not None:
            days.append(found)
    return sorted(days, key=lambda d: d.day)


def _day_of(name: str) -> date | None:
    if not _DAY_NAME.fullmatch(name):
        return None
    try:
        return date.fromisoformat(name)
    except ValueError:
        return None


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _entries(path: Path) -> list[os.DirEntry[str]]:
    """The entries of a directory; none if it vanished; logged if it cannot be read."""
    try:
        with os.scandir(path) as listing:
            return sorted(listing, key=lambda e: e.name)
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("log cleanup: cannot list %s: %s", path, exc.strerror or exc)
        return []


def _scan_day(path: Path, day: date) -> DayDir | None:
    if not path.is_dir():
        return None  # vanished meanwhile
    labels: list[LabelDir] = []
    other = 0
    for entry in _entries(path):
        if _is_dir(entry):
            size, files, uncompressed = _usage(Path(entry.path))
            labels.append(LabelDir(entry.name, size, files, uncompressed))
        else:
            other += 1
    return DayDir(day, tuple(labels), other)


def _usage(path: Path) -> tuple[int, int, int]:
    """Bytes on disk (allocated blocks: many small logs use more than their length), files,
    and files not yet gzipped, below ``path``; symlinks are not followed."""
    size = files = uncompressed = 0
    for entry in _walk(path):
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:  # vanished or unreadable: nothing to count
            continue
        size += getattr(st, "st_blocks", 0) * 512 or st.st_size
        files += 1
        uncompressed += not entry.name.endswith(_COMPRESSED)
    return size, files, uncompressed


def _walk(path: Path) -> Iterator[os.DirEntry[str]]:
    """Every non-directory entry below ``path`` (no symlinked directories followed)."""
    for entry in _entries(path):
        if _is_dir(entry):
            yield from _walk(Path(entry.path))
        else:
            yield entry


# ---- applying (the edge that writes) --------------------------------------------------------


@dataclass(frozen=True)
class CleanupSummary:
    deleted: tuple[str, ...] = ()  # relative paths
    bytes_freed: int = 0  # as scanned, of the directories deleted without error
    compressed_files: int = 0
    skipped: tuple[str, ...] = ()  # planned but not needed or not possible (with why)
    errors: tuple[str, ...] = ()
    free_before: int | None = None
    free_after: int | None = None

    def line(self) -> str:
        """One line for the log and the monitor."""
        free = "" if self.free_after is None else f", free {format_bytes(self.free_after)}"
        return (
            f"log cleanup: deleted {len(self.deleted)} dirs ({format_bytes(self.bytes_freed)}), "
            f"compressed {self.compressed_files} files, {len(self.errors)} errors{free}"
        )


@dataclass
class _Tally:
    deleted: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    compressed: int = 0
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def apply(
    base_log_dir: Path, plan: CleanupPlan, free_space_probe: FreeSpaceProbe = disk_free
) -> CleanupSummary:
    """Carry out ``plan`` under ``base_log_dir``. Never raises: every error is logged and counted.

    Before each space deletion the real free space is probed again: once it reaches the plan's
    minimum, the remaining space deletions are skipped (scanned sizes are estimates; a file held
    open by a process frees nothing when deleted).
    """
    tally = _Tally()
    free_before = _probe(free_space_probe, base_log_dir, tally)
    for deletion in plan.deletions:
        _delete(base_log_dir, deletion, plan.min_free_bytes, free_space_probe, tally)
    for compression in plan.compressions:
        _compress_dir(base_log_dir / compression.day / compression.label, tally)
    free_after = _probe(free_space_probe, base_log_dir, tally)
    return CleanupSummary(
        tuple(tally.deleted),
        tally.bytes_freed,
        tally.compressed,
        tuple(tally.skipped),
        tuple(tally.errors),
        free_before,
        free_after,
    )


def _probe(probe: FreeSpaceProbe, path: Path, tally: _Tally) -> int | None:
    try:
        return probe(path)
    except OSError as exc:
        _error(tally, f"free space of {path}: {exc.strerror or exc}")
        return None


def _error(tally: _Tally, message: str) -> None:
    log.error("log cleanup: %s", message)
    tally.errors.append(message)


def _delete(base: Path, deletion: Deletion, min_free: int, probe: FreeSpaceProbe, tally: _Tally) -> None:
    path = base / deletion.relpath
    if deletion.why is Why.SPACE:
        free = _probe(probe, base, tally)
        if free is not None and free >= min_free:
            tally.skipped.append(f"{deletion.relpath}: free {format_bytes(free)} is enough already")
            return
    if deletion.label is None:
        _rmdir(path, deletion, tally)
        return
    errors_before = len(tally.errors)
    _rmtree(path, tally)
    if len(tally.errors) > errors_before:
        return  # partly deleted: the errors say what is left
    log.info("log cleanup: deleted %s (%s)", path, deletion.reason)
    tally.deleted.append(deletion.relpath)
    tally.bytes_freed += deletion.size


def _rmdir(path: Path, deletion: Deletion, tally: _Tally) -> None:
    """A day directory goes only if empty: a label directory kept or created meanwhile stays."""
    try:
        path.rmdir()
    except FileNotFoundError:
        return
    except OSError as exc:
        tally.skipped.append(f"{deletion.relpath}: not removed ({exc.strerror or exc})")
        return
    log.info("log cleanup: deleted %s (%s)", path, deletion.reason)
    tally.deleted.append(deletion.relpath)


def _rmtree(path: Path, tally: _Tally) -> None:
    """``shutil.rmtree`` that records every failure and carries on with the rest of the tree."""

    def record(_function: object, failed: str, exc: BaseException) -> None:
        if not isinstance(exc, FileNotFoundError):  # vanished meanwhile: fine
            _error(tally, f"cannot delete {failed}: {getattr(exc, 'strerror', None) or exc}")

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=record)
    else:
        shutil.rmtree(path, onerror=lambda function, failed, info: record(function, failed, info[1]))


def _compress_dir(path: Path, tally: _Tally) -> None:
    for entry in _walk(path):
        name = entry.name
        if name.endswith(".gz.tmp") and not os.path.lexists(entry.path.removesuffix(".gz.tmp")):
            Path(entry.path).unlink(missing_ok=True)  # left by a crash; its original is gone
            continue
        if name.endswith(_COMPRESSED) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            if _gzip_file(Path(entry.path)):
                tally.compressed += 1
        except OSError as exc:
            _error(tally, f"cannot compress {entry.path}: {exc.strerror or exc}")


def _gzip_file(source: Path) -> bool:
    """``x.out`` -> ``x.out.gz``: write ``x.out.gz.tmp``, fsync, rename, then unlink the original.

    A crash leaves the original (and maybe a stale ``.tmp``, overwritten next time), or both
    the original and the complete ``.gz`` (compressed again next time): never a truncated log.
    Mode and times are copied so the web server can read it and its age stays. False if the
    source vanished meanwhile.
    """
    target = source.with_name(source.name + ".gz")
    temporary = source.with_name(source.name + ".gz.tmp")
    try:
        with open(source, "rb") as plain:
            mtime = int(os.fstat(plain.fileno()).st_mtime)
            with open(temporary, "wb") as raw:
                with gzip.GzipFile(source.name, "wb", fileobj=raw, mtime=mtime) as packed:
                    shutil.copyfileobj(plain, packed, 1 << 20)
                raw.flush()
                os.fsync(raw.fileno())
        shutil.copystat(source, temporary)
        os.replace(temporary, target)
    except FileNotFoundError:
        temporary.unlink(missing_ok=True)
        return False
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    source.unlink(missing_ok=True)
    return True


# ---- the whole run and its schedule ---------------------------------------------------------


def run_cleanup(
    base_log_dir: Path,
    today: date,
    policy: CleanupPolicy,
    in_use: AbstractSet[tuple[str, str]] | None,
    free_space_probe: FreeSpaceProbe = disk_free,
) -> tuple[CleanupPlan, CleanupSummary]:
    """Scan, plan, log what is spared and why, apply. Never raises for trouble in the tree.

    ``today`` is the UTC date of the cycle, the same clock that names the submissions' day
    directories; ``in_use`` comes from :func:`dirs_in_use` (None when the census is unknown).
    """
    if not base_log_dir.is_dir():
        log.info("log cleanup: %s does not exist (yet): nothing to do", base_log_dir)
        return CleanupPlan(), CleanupSummary()
    free: int | None
    try:
        free = free_space_probe(base_log_dir)
    except OSError as exc:
        log.error("log cleanup: free space of %s: %s", base_log_dir, exc.strerror or exc)
        free = None
    plan = plan_cleanup(scan(base_log_dir), today, policy, free, in_use)
    for kept in plan.kept:
        log.info("log cleanup: kept %s/%s, %s (%s)", kept.day, kept.label, kept.reason, kept.wanted)
    for note in plan.notes:
        log.warning("log cleanup: %s", note)
    summary = apply(base_log_dir, plan, free_space_probe)
    log.log(logging.WARNING if summary.errors else logging.INFO, "%s", summary.line())
    return plan, summary


class CleanupSchedule:
    """At most one cleanup per ``interval`` seconds, by an injected monotonic clock.

    The first cleanup is due at once. :meth:`claim` both answers and books the slot, so a
    cleanup that fails is not retried every cycle.
    """

    def __init__(self, interval: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        if interval < 0:
            raise ValueError(f"interval must not be negative, got {interval}")
        self._interval = interval
        self._clock = clock
        self._last: float | None = None

    def due(self) -> bool:
        return self._last is None or self._clock() - self._last >= self._interval

    def claim(self) -> bool:
        """True (and the next one is an interval away) if a cleanup is due now."""
        if not self.due():
            return False
        self._last = self._clock()
        return True


class PilotLogCleanup:
    """The cycle's log cleanup: the factory-wide settings, the schedule and the tree under
    ``baseLogDir``; the cycle adds each label's keep days and the directories in use."""

    def __init__(
        self,
        base_log_dir: Path,
        schedule: CleanupSchedule,
        default_keep_days: int,
        min_free_bytes: int,
        compress_days: int,
    ) -> None:
        """``default_keep_days`` ([QueueDefaults] logKeepDays) holds for labels no longer configured."""
        self._base, self._schedule = base_log_dir, schedule
        self._default_keep_days = default_keep_days
        self._min_free_bytes, self._compress_days = min_free_bytes, compress_days

    def claim(self) -> bool:
        """True (and the next one is an interval away) if a cleanup is due now."""
        return self._schedule.claim()

    def clean(
        self,
        keep_days_by_label: Mapping[str, int],
        in_use: AbstractSet[tuple[str, str]] | None,
        today: date,
    ) -> None:
        """One cleanup; ``in_use`` None (the census is unknown) deletes nothing."""
        policy = CleanupPolicy(
            keep_days=self._default_keep_days,
            keep_days_by_label=keep_days_by_label,
            min_free_bytes=self._min_free_bytes,
            compress_days=self._compress_days,
        )
        run_cleanup(self._base, today, policy, in_use)
