"""The cycle's labels: factory.conf's queues filled in from the current schedconfig.

Building thousands of labels takes time, so they are rebuilt only when the schedconfig source
hands out another snapshot (a refresh, or the fallback to the last-good copy).
"""

from __future__ import annotations

import logging
from typing import Protocol

from autopyfactory.config.autoconfigure import build_labels
from autopyfactory.config.loader import FactoryConfig
from autopyfactory.domain.label import LabelReading, LabelSet
from autopyfactory.edges.schedconfig import Record, SchedconfigError, Snapshot

log = logging.getLogger(__name__)


class Schedconfig(Protocol):
    def get(self) -> Snapshot[dict[str, Record]]:
        """The dump to use now; raises SchedconfigError when there is none at all."""
        ...


class SchedconfigLabels:
    """The labels of ``config`` with the schedconfig of ``source`` (a SchedconfigSource)."""

    def __init__(self, config: FactoryConfig, source: Schedconfig) -> None:
        self._config, self._source = config, source
        self._built: tuple[object, LabelSet] | None = None  # (snapshot, its labels)

    def read(self) -> LabelReading:
        try:
            snapshot = self._source.get()
        except SchedconfigError as exc:
            return LabelReading(build_labels(self._config, None), f"schedconfig: {exc}")
        if self._built is None or self._built[0] is not snapshot:
            label_set = build_labels(self._config, snapshot.data)
            for warning in label_set.warnings:
                log.info("%s", warning)
            self._built = (snapshot, label_set)
        return LabelReading(self._built[1])
