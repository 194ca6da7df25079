"""What the cycle asks of the world around it, and the little of the configuration it needs.

The cycle (``factory.py``) imports only the domain and the batch interface; every other edge
reaches it through one of these ports, built by the composition root (``runtime/service.py``):

* :class:`LabelSource`: this cycle's labels (factory.conf's queues filled in from schedconfig,
  ``config/schedconfig_labels.py``);
* :class:`PandaSource`: PanDA's answer (``edges/panda.py``);
* :class:`CredentialGate`: the credentials the labels' pilots carry (``edges/credentials.py``);
* :class:`RuntimeControl`: disabled queues and removal requests (``edges/control.py``);
* :class:`LogCleanup`: the pilot log tree (``edges/pilot_logs.py``);
* :class:`UnsettledLabels`: the labels whose last submission's pilots are not all known
  (``edges/unsettled.py``).

The batch backends are the batch interface's :class:`~autopyfactory.batch.interface.Backend`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from autopyfactory.domain.control import Controls
from autopyfactory.domain.credentials import CredentialVerdicts
from autopyfactory.domain.demand import PandaReading
from autopyfactory.domain.label import Label, LabelReading


@dataclass(frozen=True)
class CycleSettings:
    """The configuration a cycle needs: who submits, where logs go, and the factory-wide caps."""

    factory_id: str
    pandaserver: str
    base_log_dir: str
    base_log_dir_url: str
    monitor_url: str
    num_factories: int = 1
    max_per_cycle: int | None = None
    max_pilots: int | None = None
    dry_run: bool = False  # read everything, submit, remove and clean up nothing
    #: seconds a running pilot counts as standing for a job PanDA still counts activated (pandaLag)
    panda_lag: float = 120.0


class LabelSource(Protocol):
    def read(self) -> LabelReading:
        """The labels to serve this cycle; a schedconfig failure is reported, not raised."""
        ...


class PandaSource(Protocol):
    def update(self, detailed: bool = False) -> PandaReading:
        """Ask PanDA now; ``detailed``: the counts per resource type and job label too."""
        ...


class CredentialGate(Protocol):
    def check_labels(self, labels: Sequence[Label], now: float) -> CredentialVerdicts:
        """Each credential the labels' pilots carry, checked once this cycle; the labels it blocks."""
        ...


class RuntimeControl(Protocol):
    def read_or_hold(self) -> Controls:
        """The operator's requests; an unreadable store is a problem that holds every queue back."""
        ...

    def update(self, change: Callable[[Controls], Controls]) -> Controls:
        """Apply ``change`` atomically; raises ControlError or OSError when it cannot."""
        ...


class LogCleanup(Protocol):
    def claim(self) -> bool:
        """True if a cleanup is due now (and the next one is booked an interval later)."""
        ...

    def clean(
        self,
        keep_days_by_label: Mapping[str, int],
        in_use: AbstractSet[tuple[str, str]] | None,
        today: date,
    ) -> None:
        """Clean the pilot logs; ``in_use`` None (the census is unknown) deletes nothing."""
        ...


class UnsettledLabels(Protocol):
    """The labels whose submission may have queued pilots the monitor was not told of: recorded
    before a submission, settled once all its pilots were announced. Kept in the state dir, so
    that neither a restart, a reload nor failed censuses lose one."""

    def labels(self) -> Mapping[str, float]:
        """The labels recorded, each with when (epoch seconds); raises OSError when they cannot
        be read (then :meth:`mark` and :meth:`settle` raise it too)."""
        ...

    def mark(self, names: Collection[str], now: float) -> None:
        """Record ``names`` before their submission starts; raises OSError when it cannot."""
        ...

    def settle(self, names: Collection[str]) -> None:
        """Forget ``names``: all their pilots were announced; raises OSError when it cannot."""
        ...
