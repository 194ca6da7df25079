"""Pilot log directories: delete by age and by free space, compress old days.

Layout: ``<baseLogDir>/<YYYY-MM-DD>/<label>/<cluster>.<proc>.{out,err,log}`` plus submit files,
the date being the UTC date of the cycle that submitted the pilots. Entries of the base
directory not named like a date are never touched (logged and skipped); so are symbolic links.

Three stages, planned by the pure :func:`plan_cleanup` from a :func:`scan` of the tree:

* **age**: a label directory older than its keep days (``logKeepDays``, overridable per label;
  0 = no age limit) is deleted;
* **space**: while the free space is below ``logMinFreeGB``, the oldest remaining days' label
  directories are deleted, oldest day first (labels in name order), until the projected free
  space suffices; :func:`apply` re-probes the real free space before each of these deletions
  and stops early when it already suffices;
* **compression** (``logCompressDays``, 0 = off): every file of a label directory of a day older
  than that is gzipped in place, ``name.out`` -> ``name.out.gz``, atomically.

A directory that still holds logs of pilots in the queue is *in use* and never deleted nor
compressed, whatever its age and however short the space: :func:`dirs_in_use` derives those
from the pilots' QDate and label. Today's directory is never deleted either (pilots are being
submitted into it). When the census of pilots is unknown, nothing at all is deleted.

Run the cleanup after the cycle's census and *before* its submissions, with that census: pilots
submitted later in the cycle are then not missing from it. :class:`CleanupSchedule` keeps it to
at most once an hour.

About compressed logs: web servers can serve ``x.out.gz`` to browsers as text (Apache:
``AddEncoding gzip .gz`` with ``ForceType text/plain`` for ``*.out.gz``/``*.err.gz``/``*.log.gz``;
nginx: ``gzip_static`` or ``add_header Content-Encoding gzip`` with ``default_type text/plain``).
Links built from the original names (pilot GTAG, monitor) then need the ``.gz`` suffix, or a
rewrite rule that tries ``$uri.gz``: compressing changes the names under which logs are served.
"""

from __future__ import annotations

import enum
import gzip
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

log = logging.getLogger(__name__)

GB = 10**9
#: In :func:`dirs_in_use` results: every day of that label is in use (its QDate is unknown).
ANY_DAY = "*"
_DAY_NAME = re.compile(r"\d{4}-\d{2}-\d{2}")
_COMPRESSED = (".gz", ".gz.tmp")

#: Free bytes of the filesystem holding a path (the seam tests fake).
FreeSpaceProbe = Callable[[Path], int]


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


# ---- what the tree holds --------------------------------------------------------------------


@dataclass(frozen=True)
class LabelDir:
    """One ``<day>/<label>`` directory: bytes on disk and how many of its files are not gzipped."""

    label: str
    size: int
    files: int = 0
    uncompressed: int = 0


@dataclass(frozen=True)
class DayDir:
    """One ``<YYYY-MM-DD>`` directory. ``other`` counts entries that are not label directories
    (stray files, symlinks): the day directory itself then stays."""

    day: date
    labels: tuple[LabelDir, ...]
    other: int = 0

    @property
    def name(self) -> str:
        return self.day.isoformat()


# ---- settings and the plan ------------------------------------------------------------------


@dataclass(frozen=True)
class CleanupPolicy:
    """``keep_days``: factory default, 0 = no age limit; ``keep_days_by_label`` overrides it;
    ``min_free_bytes``: 0 = no space limit; ``compress_days``: 0 = no compression."""

    keep_days: int = 30
    keep_days_by_label: Mapping[str, int] = field(default_factory=dict)
    min_free_bytes: int = 0
    compress_days: int = 0

    def __post_init__(self) -> None:
        overrides = ((f"keep_days[{label}]", n) for label, n in self.keep_days_by_label.items())
        values = [
            ("keep_days", self.keep_days),
            ("min_free_bytes", self.min_free_bytes),
            ("compress_days", self.compress_days),
            *overrides,
        ]
        negative = [f"{name}={value}" for name, value in values if value < 0]
        if negative:
            raise ValueError(f"must not be negative: {', '.join(negative)}")

    def keep_days_for(self, label: str) -> int:
        return self.keep_days_by_label.get(label, self.keep_days)


class Why(enum.Enum):
    AGE = "age"
    SPACE = "space"
    EMPTY = "empty"  # a day directory with nothing left in it


@dataclass(frozen=True)
class Deletion:
    """Delete ``<day>/<label>`` (or the day directory itself, once empty, when label is None)."""

    day: str
    label: str | None
    size: int
    why: Why
    reason: str

    @property
    def relpath(self) -> str:
        return self.day if self.label is None else f"{self.day}/{self.label}"


@dataclass(frozen=True)
class Kept:
    """A label directory that would have been deleted or compressed, and why it was not."""

    day: str
    label: str
    wanted: str  # the deletion or compression reason it escaped
    reason: str


@dataclass(frozen=True)
class Compression:
    day: str
    label: str
    files: int
    reason: str

    @property
    def relpath(self) -> str:
        return f"{self.day}/{self.label}"


@dataclass(frozen=True)
class CleanupPlan:
    deletions: tuple[Deletion, ...] = ()
    kept: tuple[Kept, ...] = ()
    compressions: tuple[Compression, ...] = ()
    min_free_bytes: int = 0
    notes: tuple[str, ...] = ()  # why a stage did not run or could not do enough


# ---- in use ---------------------------------------------------------------------------------


def dirs_in_use(
    pilots: Iterable[tuple[int, str]], unknown_labels: Iterable[str] = (), margin: int = 3600
) -> set[tuple[str, str]]:
    """``(YYYY-MM-DD, label)`` of the directories holding logs of pilots in the queue.

    ``pilots`` are (QDate epoch seconds, MATCH_APF_QUEUE). The directory date is the UTC date
    of the cycle's *start*, a little before condor's QDate, so the date ``margin`` seconds
    before QDate is in use too (a pilot queued just after midnight). A pilot without QDate, and
    every label whose census is unknown, protects all of its label's days (:data:`ANY_DAY`).
    """
    used = {(ANY_DAY, label) for label in unknown_labels}
    for qdate, label in pilots:
        if qdate <= 0:
            used.add((ANY_DAY, label))
            continue
        for moment in (qdate, qdate - margin):
            used.add((datetime.fromtimestamp(moment, UTC).date().isoformat(), label))
    return used


def _in_use(in_use: AbstractSet[tuple[str, str]], day: str, label: str) -> bool:
    return (day, label) in in_use or (ANY_DAY, label) in in_use


# ---- the pure planner -----------------------------------------------------------------------


IN_USE = "in use by pilots in the queue"


@dataclass
class _Draft:
    """The planner's scratch pad (local to one plan_cleanup call)."""

    deletions: list[Deletion] = field(default_factory=list)
    kept: dict[tuple[str, str], Kept] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def deleted(self) -> set[tuple[str, str | None]]:
        return {(d.day, d.label) for d in self.deletions}

    def keep(self, day: str, label: str, wanted: str) -> None:
        self.kept.setdefault((day, label), Kept(day, label, wanted, IN_USE))


def plan_cleanup(
    days: Iterable[DayDir],
    today: date,
    policy: CleanupPolicy,
    free_bytes: int | None,
    in_use: AbstractSet[tuple[str, str]] | None,
) -> CleanupPlan:
    """What to delete and compress, in order, each with its reason; what was spared and why.

    ``free_bytes`` None (unknown) skips the space stage; ``in_use`` None (the census of pilots is
    unknown) plans nothing at all, since any deletion could hit a running pilot's logs.
    """
    if in_use is None:
        return CleanupPlan(notes=("census of pilots unknown: nothing deleted or compressed",))
    past = sorted((d for d in days if d.day < today), key=lambda d: d.day)
    draft = _Draft()
    _age_stage(past, today, policy, in_use, draft)
    _space_stage(past, policy.min_free_bytes, free_bytes, in_use, draft)
    _empty_days(past, draft)
    compressions = _compress_stage(past, today, policy.compress_days, in_use, draft)
    return CleanupPlan(
        tuple(draft.deletions),
        tuple(draft.kept.values()),
        compressions,
        policy.min_free_bytes,
        tuple(draft.notes),
    )


def _age_stage(
    days: list[DayDir],
    today: date,
    policy: CleanupPolicy,
    in_use: AbstractSet[tuple[str, str]],
    draft: _Draft,
) -> None:
    for day in days:
        age = (today - day.day).days
        for label_dir in sorted(day.labels, key=lambda lbl: lbl.label):
            keep = policy.keep_days_for(label_dir.label)
            if keep <= 0 or age <= keep:
                continue
            reason = f"age: {day.name} older than {keep} days"
            if _in_use(in_use, day.name, label_dir.label):
                draft.keep(day.name, label_dir.label, reason)
            else:
                draft.deletions.append(Deletion(day.name, label_dir.label, label_dir.size, Why.AGE, reason))


def _space_stage(
    days: list[DayDir],
    min_free: int,
    free: int | None,
    in_use: AbstractSet[tuple[str, str]],
    draft: _Draft,
) -> None:
    if min_free <= 0:
        return
    if free is None:
        draft.notes.append("free space unknown: no cleanup by space")
        return
    projected = free + sum(d.size for d in draft.deletions)
    deleted = draft.deleted()
    for day in days:
        for label_dir in sorted(day.labels, key=lambda lbl: lbl.label):
            if projected >= min_free:
                return
            if (day.name, label_dir.label) in deleted:
                continue
            reason = f"space: free {format_bytes(projected)} < {format_bytes(min_free)}"
            if _in_use(in_use, day.name, label_dir.label):
                draft.keep(day.name, label_dir.label, reason)
                continue
            draft.deletions.append(Deletion(day.name, label_dir.label, label_dir.size, Why.SPACE, reason))
            projected += label_dir.size
    if projected < min_free:
        draft.notes.append(
            f"space: free {format_bytes(projected)} < {format_bytes(min_free)} even after deleting "
            "every past log directory not in use"
        )


def _empty_days(days: list[DayDir], draft: _Draft) -> None:
    """Day directories left with nothing in them go too (``rmdir``: never with content)."""
    deleted = draft.deleted()
    for day in days:
        if day.other == 0 and all((day.name, lbl.label) in deleted for lbl in day.labels):
            reason = "empty after cleanup" if day.labels else "empty"
            draft.deletions.append(Deletion(day.name, None, 0, Why.EMPTY, reason))


def _compress_stage(
    days: list[DayDir],
    today: date,
    compress_days: int,
    in_use: AbstractSet[tuple[str, str]],
    draft: _Draft,
) -> tuple[Compression, ...]:
    if compress_days <= 0:
        return ()
    deleted = draft.deleted()
    planned: list[Compression] = []
    for day in days:
        if (today - day.day).days <= compress_days:
            continue
        for label_dir in sorted(day.labels, key=lambda lbl: lbl.label):
            if label_dir.uncompressed == 0 or (day.name, label_dir.label) in deleted:
                continue
            reason = f"compress: {day.name} older than {compress_days} days"
            if _in_use(in_use, day.name, label_dir.label):
                draft.keep(day.name, label_dir.label, reason)
            else:
                planned.append(Compression(day.name, label_dir.label, label_dir.uncompressed, reason))
    return tuple(planned)


def format_bytes(n: float) -> str:
    """Decimal units, as in ``logMinFreeGB``: ``3.1 GB``, ``10 GB``, ``512 kB``, ``0 B``."""
    for unit, size in (("TB", 10**12), ("GB", GB), ("MB", 10**6), ("kB", 10**3)):
        if abs(n) >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{int(n)} B"


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
