"""Which schedds hold this factory's pilots: what it submitted where, in ``<stateDir>/schedds.json``.

The census must count every pilot this factory still has in the batch system, also in a schedd
no label uses any more (a queue moved to another ``condorSchedd`` while its pilots still wait in
the old one). The configuration alone cannot say where those are, so the factory remembers,
per schedd, the labels it submitted there (with the time of the last submission) and the job
ids of its submissions of the last few cycles:

* before a submission to a schedd/label not yet remembered, the pair is written (atomically);
  if that fails, nothing is submitted, so a pilot is never queued where a later census would
  not look;
* the ids condor_submit returned are added after it (a failure to save them is a warning:
  they only serve the plausibility check);
* the census asks every remembered schedd too and counts what it finds against the labels and
  the factory caps; a schedd no label uses is forgotten once it holds none of this factory's
  pilots, or :data:`KEEP_SECONDS` after the last submission to it (with a warning);
* the recent ids make the plausibility check possible: pilots submitted in the last few cycles
  that are in neither condor_q nor condor_history mean the census of that schedd cannot be
  trusted (see :meth:`CondorBackend.census <autopyfactory.condor.backend.CondorBackend.census>`).

A missing file is an empty memory; an unreadable one is logged and replaced by the next write.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopyfactory.batch.condor.command import Schedd
from autopyfactory.edges.files import atomic_write_text

log = logging.getLogger(__name__)

MEMORY_FILE = "schedds.json"
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
        record = self._records.setdefault(schedd, ScheddRecord())
        if now - record.labels.get(label, float("-inf")) < self.recent_window:
            return
        previous = record.labels.get(label)
        record.labels[label] = now
        try:
            self._save()
        except OSError:
            if previous is None:
                del record.labels[label]
            else:
                record.labels[label] = previous
            raise

    def note_submitted(self, schedd: Schedd, job_ids: tuple[str, ...]) -> None:
        """Remember the ids of a submission (a failure to save them is only a warning)."""
        record = self._records.setdefault(schedd, ScheddRecord())
        record.recent.append((self._clock(), job_ids))
        self._prune_recent(record)
        self._save_or_warn()

    def tidy(self, in_use: set[Schedd]) -> None:
        """Forget recent ids older than the window and schedds not in ``in_use`` whose last
        submission is older than KEEP_SECONDS (they are no longer asked)."""
        changed = False
        for schedd, record in list(self._records.items()):
            changed |= self._prune_recent(record)
            idle_for = self._clock() - record.last_submission()
            if schedd not in in_use and idle_for > KEEP_SECONDS:
                log.warning(
                    "no longer asking schedd %s for this factory's pilots: no submission to it for %.0f days",
                    schedd,
                    idle_for / 86400,
                )
                del self._records[schedd]
                changed = True
        if changed:
            self._save_or_warn()

    def forget(self, schedd: Schedd) -> None:
        """A schedd no label uses that holds none of this factory's pilots: stop asking it."""
        if self._records.pop(schedd, None) is not None:
            log.info("schedd %s holds no more pilots of this factory; no longer asked", schedd)
            self._save_or_warn()

    def _prune_recent(self, record: ScheddRecord) -> bool:
        since = self._clock() - self.recent_window
        kept = [(when, ids) for when, ids in record.recent if when >= since]
        changed = len(kept) != len(record.recent)
        record.recent = kept
        return changed

    def _save(self) -> None:
        if self._read_only:
            return
        data = {
            "format": FORMAT,
            "schedds": [
                {
                    "name": schedd.name,
                    "pool": schedd.pool,
                    "labels": record.labels,
                    "recent": [{"time": when, "ids": list(ids)} for when, ids in record.recent],
                }
                for schedd, record in self._records.items()
            ],
        }
        atomic_write_text(self.path, json.dumps(data, indent=1) + "\n", mode=0o600)

    def _save_or_warn(self) -> None:
        try:
            self._save()
        except OSError as exc:
            log.warning("cannot save %s: %s", self.path, exc)


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
