"""Which schedds hold this factory's pilots: what it submitted where, in ``<stateDir>/schedds.json``.

The census must count every pilot this factory still has in the batch system, also in a schedd
no label uses any more (a queue moved to another ``condorSchedd`` while its pilots still wait in
the old one). The configuration alone cannot say where those are, so the factory remembers,
per schedd, the labels it submitted there (with the time of the last submission) and the job
ids of its submissions of the last few cycles:

* before a submission to a schedd/label not yet remembered, the pair is written (atomically);
  if that fails, nothing is submitted, so a pilot is never queued where a later census would
  not look;
* the ids the submission returned are added after it (a failure to save them is a warning:
  they only serve the plausibility check);
* the census asks every remembered schedd too and counts what it finds against the labels and
  the factory caps; a schedd no label uses is forgotten once it holds none of this factory's
  pilots, or :data:`KEEP_SECONDS` after the last submission to it (with a warning);
* the recent ids make the plausibility check possible: pilots submitted in the last few cycles
  that are in neither condor_q nor condor_history mean the census of that schedd cannot be
  trusted (see :meth:`CondorBackend.census <autopyfactory.condor.backend.CondorBackend.census>`).

While a remembered schedd does not answer, the labels it remembers have unknown pilots and get
nothing (never over-submit); if it is gone for good, ``autopyfactory schedd forget`` drops it
(:func:`forget_schedd`), so that its pilots are no longer counted. Every change is a
read-modify-write under an ``flock`` of ``.schedds.lock`` and the daemon reads the file again at
each census, so a command and the daemon never undo each other's changes.

A missing file is an empty memory; an unreadable one is logged and replaced by the next write.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopyfactory.batch.condor.command import Schedd
from autopyfactory.edges.files import atomic_write_text

log = logging.getLogger(__name__)

MEMORY_FILE = "schedds.json"
LOCK_FILE = ".schedds.lock"
FORMAT = 1
#: How long a schedd no label uses any more is still asked, after the last submission to it.
KEEP_SECONDS = 7 * 86400.0
#: At most this many recent job ids per schedd are remembered (and asked of condor_history).
MAX_RECENT_IDS = 200


@dataclass
class ScheddRecord:
    """What this factory submitted to one schedd."""

    labels: dict[str, float] = field(default_factory=dict)  # label -> time of the last submission
    recent: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)  # (time, job ids)

    def last_submission(self) -> float:
        return max(self.labels.values(), default=0.0)


class SubmissionMemory:
    """The remembered submissions of one factory (see the module docstring)."""

    def __init__(
        self, path: Path, clock: Callable[[], float], recent_window: float, *, read_only: bool = False
    ) -> None:
        self.path, self._clock, self.recent_window = path, clock, recent_window
        self._read_only = read_only  # a dry run or a cron helper: read, never write
        self._records = _load(path)

    def refresh(self) -> None:
        """Read the file again (a command may have changed it: ``schedd forget``)."""
        self._records = _load(self.path)

    def schedds(self) -> list[Schedd]:
        return list(self._records)

    def labels_at(self, schedd: Schedd) -> set[str]:
        record = self._records.get(schedd)
        return set(record.labels) if record else set()

    def recent_ids(self, schedd: Schedd) -> list[str]:
        """Job ids submitted to ``schedd`` within the recent window, oldest first."""
        record = self._records.get(schedd)
        if record is None:
            return []
        since = self._clock() - self.recent_window
        ids = [job_id for when, batch in record.recent if when >= since for job_id in batch]
        return ids[-MAX_RECENT_IDS:]

    def note_intent(self, schedd: Schedd, label: str) -> None:
        """Remember that ``label`` is about to submit to ``schedd``; raises OSError if not saved.

        Written only when the pair is new or its time is older than the recent window, so a
        steady factory does not rewrite the file for it every cycle.
        """
        now = self._clock()
        known = self._records.get(schedd, ScheddRecord()).labels.get(label, float("-inf"))
        if now - known < self.recent_window:
            return

        def change(records: dict[Schedd, ScheddRecord]) -> bool:
            records.setdefault(schedd, ScheddRecord()).labels[label] = now
            return True

        self._change(change)

    def note_submitted(self, schedd: Schedd, job_ids: tuple[str, ...]) -> None:
        """Remember the ids of a submission (a failure to save them is only a warning)."""

        def change(records: dict[Schedd, ScheddRecord]) -> bool:
            record = records.setdefault(schedd, ScheddRecord())
            record.recent.append((self._clock(), job_ids))
            self._prune_recent(record)
            return True

        self._change_or_warn(change)

    def tidy(self, in_use: set[Schedd]) -> None:
        """Forget recent ids older than the window and schedds not in ``in_use`` whose last
        submission is older than KEEP_SECONDS (they are no longer asked)."""

        def change(records: dict[Schedd, ScheddRecord]) -> bool:
            changed = False
            for schedd, record in list(records.items()):
                changed |= self._prune_recent(record)
                idle_for = self._clock() - record.last_submission()
                if schedd not in in_use and idle_for > KEEP_SECONDS:
                    why = "no submission to it for %.0f days"
                    log.warning(
                        "no longer asking schedd %s for this factory's pilots: " + why,
                        schedd,
                        idle_for / 86400,
                    )
                    del records[schedd]
                    changed = True
            return changed

        self._change_or_warn(change)

    def forget(self, schedd: Schedd) -> None:
        """A schedd no label uses that holds none of this factory's pilots: stop asking it."""

        def change(records: dict[Schedd, ScheddRecord]) -> bool:
            return records.pop(schedd, None) is not None

        if schedd in self._records and self._change_or_warn(change):
            log.info("schedd %s holds no more pilots of this factory; no longer asked", schedd)

    def _prune_recent(self, record: ScheddRecord) -> bool:
        since = self._clock() - self.recent_window
        kept = [(when, ids) for when, ids in record.recent if when >= since]
        changed = len(kept) != len(record.recent)
        record.recent = kept
        return changed

    def _change(self, change: Callable[[dict[Schedd, ScheddRecord]], bool]) -> bool:
        """Apply ``change`` to the file's current records under the lock and save them if it
        changed something; raises OSError. A dry run changes its own copy only."""
        if self._read_only:
            return change(self._records)
        with _locked(self.path):
            records = _load(self.path)
            changed = change(records)
            if changed:
                _save(self.path, records)
            self._records = records
        return changed

    def _change_or_warn(self, change: Callable[[dict[Schedd, ScheddRecord]], bool]) -> bool:
        try:
            return self._change(change)
        except OSError as exc:
            log.warning("cannot save %s: %s", self.path, exc)
            return False


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on the memory's lock file (beside it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(LOCK_FILE), os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _save(path: Path, records: dict[Schedd, ScheddRecord]) -> None:
    data = {
        "format": FORMAT,
        "schedds": [
            {
                "name": schedd.name,
                "pool": schedd.pool,
                "labels": record.labels,
                "recent": [{"time": when, "ids": list(ids)} for when, ids in record.recent],
            }
            for schedd, record in records.items()
        ],
    }
    atomic_write_text(path, json.dumps(data, indent=1) + "\n", mode=0o600)


def remembered(state_dir: Path) -> dict[Schedd, ScheddRecord]:
    """The schedds a factory remembers (``<stateDir>/schedds.json``), for the commands."""
    return _load(state_dir / MEMORY_FILE)


def forget_schedd(state_dir: Path, schedd: Schedd) -> ScheddRecord | None:
    """Drop ``schedd`` from the memory in ``state_dir`` (the daemon reads it again at its next
    census): its pilots are no longer counted. The record forgotten, None if it was not there;
    raises OSError."""
    path = state_dir / MEMORY_FILE
    with _locked(path):
        records = _load(path)
        record = records.pop(schedd, None)
        if record is not None:
            _save(path, records)
    return record


def _load(path: Path) -> dict[Schedd, ScheddRecord]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("cannot read %s (%s): schedds used before are not asked", path, exc)
        return {}
    try:
        return _parse(json.loads(text))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("%s is corrupt (%s): schedds used before are not asked until it is rewritten", path, exc)
        return {}


def _parse(data: Any) -> dict[Schedd, ScheddRecord]:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"not a format-{FORMAT} object")
    records: dict[Schedd, ScheddRecord] = {}
    for item in data["schedds"]:
        schedd = Schedd(_text(item["name"]), _text(item["pool"]))
        labels = {_text(label): _number(when) for label, when in item["labels"].items()}
        recent = [
            (_number(batch["time"]), tuple(_text(job_id) for job_id in batch["ids"]))
            for batch in item["recent"]
        ]
        records[schedd] = ScheddRecord(labels, recent)
    return records


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise TypeError(f"{value!r} is not a number")
    return float(value)
