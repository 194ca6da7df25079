"""``<stateDir>/unsettled.json``: the labels whose last submission's pilots are not all known.

A label is recorded before its submission starts and settled once every pilot it queued was
announced to the monitor: right after a submission that gave all its ids, or when a later good
census lists the label's pilots. A file, not memory, so that a SIGKILL during the submission, a
restart, a reload or failed censuses in a row cannot make the factory forget to look. Only the
daemon writes it (atomically, see edges/files.py); the cycle reaches it through its port.

A file that cannot be parsed is set aside as ``unsettled.bad`` (and said), so it cannot block
every later submission. A file that cannot be read (EACCES, EIO) is not: it may be whole, and its
labels are not known, so every method raises OSError. The cycle then reports the problem, settles
nothing and submits nothing, as when the file cannot be written: a submission that cannot be
recorded could lose its pilots to the monitor.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection
from pathlib import Path

from autopyfactory.edges.files import atomic_write_text

log = logging.getLogger(__name__)

UNSETTLED_FILE = "unsettled.json"


class UnsettledFile:
    """The recorded labels, each with the time (epoch seconds) its submission was recorded."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / UNSETTLED_FILE

    def labels(self) -> dict[str, float]:
        """The labels recorded; a file that cannot be parsed is set aside (and said) and counts
        as none; raises OSError when the file cannot be read."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            labels = json.loads(data.decode("utf-8"))["labels"]
            if not isinstance(labels, dict):
                raise ValueError("labels is not an object")
            return {str(name): float(since) for name, since in labels.items()}
        except (ValueError, KeyError, TypeError) as exc:
            self._set_aside(exc)
            return {}

    def _set_aside(self, exc: Exception) -> None:
        log.error("%s is unreadable, set aside as .bad: %s", self.path, exc)
        try:
            os.replace(self.path, self.path.with_suffix(".bad"))
        except OSError as error:  # the next write replaces it (or fails and says so)
            log.error("cannot set %s aside: %s", self.path, error)

    def mark(self, names: Collection[str], now: float) -> None:
        """Record ``names`` as unsettled (those already recorded keep their time); raises OSError,
        also when the file cannot be read."""
        labels = self.labels()
        new = {name: now for name in names if name not in labels}
        if new:
            self._write(labels | new)

    def settle(self, names: Collection[str]) -> None:
        """Forget ``names``; raises OSError, also when the file cannot be read."""
        labels = self.labels()
        kept = {name: since for name, since in labels.items() if name not in names}
        if len(kept) != len(labels):
            self._write(kept)

    def _write(self, labels: dict[str, float]) -> None:
        text = json.dumps({"labels": labels}, indent=1, sort_keys=True) + "\n"
        atomic_write_text(self.path, text)
