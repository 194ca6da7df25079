"""Which pilot log directories to delete and compress, and why: a pure planner.

Layout: ``<baseLogDir>/<YYYY-MM-DD>/<label>/<cluster>.<proc>.{out,err,log}`` plus submit files,
the date being the UTC date of the cycle that submitted the pilots. :func:`plan_cleanup` plans
three stages from a scan of the tree (``edges/pilot_logs.py`` scans it and carries the plan out):

* **age**: a label directory older than its keep days (``logKeepDays``, overridable per label;
  0 = no age limit) is deleted;
* **space**: while the free space is below ``logMinFreeGB``, the oldest remaining days' label
  directories are deleted, oldest day first (labels in name order), until the projected free
  space suffices (the edge re-probes the real free space before each of these deletions and
  stops early when it already suffices);
* **compression** (``logCompressDays``, 0 = off): every file of a label directory of a day older
  than that is gzipped in place, ``name.out`` -> ``name.out.gz``, atomically.

A directory that still holds logs of pilots in the queue is *in use* and never deleted nor
compressed, whatever its age and however short the space: :func:`dirs_in_use` derives those
from the pilots' QDate and label. Today's directory is never deleted either (pilots are being
submitted into it). When the census of pilots is unknown, nothing at all is deleted.

The rules are the domain's because they decide from the census which pilots' logs must stay;
reading and changing the tree is the edge's.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

GB = 10**9
#: In :func:`dirs_in_use` results: every day of that label is in use (its QDate is unknown).
ANY_DAY = "*"

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
