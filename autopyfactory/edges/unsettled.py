"""``<stateDir>/unsettled.json``: the labels whose last submission's pilots are not all known.

A label is recorded before its submission starts and settled once every pilot it queued was
announced to the monitor: right after a submission that gave all its ids, or when a later good
census lists the label's pilots. A file, not memory, so that a SIGKILL during the submission, a
restart, a reload or failed censuses in a row cannot make the factory forget to look. Only the
daemon writes it (atomically, see edges/files.py); the cycle reaches it through its port.
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
        """The labels recorded; an unreadable file is set aside (and said), so it cannot block
        every later submission."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            labels = data["labels"]
            if not isinstance(labels, dict):
                raise ValueError("labels is not an object")
            return {str(name): float(since) for name, since in labels.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("%s is unreadable, set aside as .bad: %s", self.path, exc)
            os.replace(self.path, self.path.with_suffix(".bad"))
            return {}

    def mark(self, names: Collection[str], now: float) -> None:
        """Record ``names`` as unsettled (those already recorded keep their time); raises OSError."""
        labels = self.labels()
        new = {name: now for name in names if name not in labels}
        if new:
            self._write(labels | new)

    def settle(self, names: Collection[str]) -> None:
        """Forget ``names``; raises OSError."""
        labels = self.labels()
        kept = {name: since for name, since in labels.items() if name not in names}
        if len(kept) != len(labels):
            self._write(kept)

    def _write(self, labels: dict[str, float]) -> None:
        text = json.dumps({"labels": labels}, indent=1, sort_keys=True) + "\n"
        atomic_write_text(self.path, text)
