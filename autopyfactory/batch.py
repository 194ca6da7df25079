"""The batch side of the factory, behind one small interface.

A backend (HTCondor, local processes) answers two questions per cycle: how many pilots of each
label are there (:meth:`Backend.census`), and please start N more (:meth:`Backend.submit`). It can
also remove and release pilots. The cycle only talks to this interface, so a new backend slots in
without touching it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from autopyfactory.labels import Label
from autopyfactory.model import Pilot, Supply


class BatchError(Exception):
    """A batch command failed; the message says which and why."""


@dataclass(frozen=True)
class Census:
    """This factory's pilots as the batch system sees them this cycle.

    ``supply`` has an entry for every label asked about: a Supply, or None when the label's
    schedd could not be asked (the policy then submits nothing for it). ``total`` counts all of
    this factory's pilots, also of labels no longer configured; None if any query failed.
    ``pilots`` lists the pilots themselves by label (for housekeeping and log cleanup).
    """

    supply: Mapping[str, Supply | None]
    total: int | None
    problems: tuple[str, ...] = ()
    pilots: Mapping[str, tuple[Pilot, ...]] = field(default_factory=dict)  # by label, where known


@dataclass(frozen=True)
class SubmitContext:
    """What a submission needs besides the label: factory identity, URLs and where logs go."""

    factory_id: str
    pandaserver: str
    base_log_dir: str
    base_log_dir_url: str
    monitor_url: str
    date: str  # YYYY-MM-DD, from the cycle's clock: logs go to <baseLogDir>/<date>/<label>/
    dry_run: bool = False


@dataclass(frozen=True)
class SubmitOutcome:
    """Job ids submitted (``cluster.proc``), the submit file written, or the error."""

    job_ids: tuple[str, ...] = ()
    submit_file: str = ""
    error: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)


#: What one cycle asks a backend to submit: (label, number of pilots), each label once.
SubmitRequests = Sequence[tuple[Label, int]]


class Backend(Protocol):
    name: str

    def census(self, labels: Sequence[Label]) -> Census: ...

    def submit(self, label: Label, n: int, context: SubmitContext) -> SubmitOutcome: ...

    def submit_batch(self, requests: SubmitRequests, context: SubmitContext) -> dict[str, SubmitOutcome]:
        """All of a cycle's submissions at once; an outcome for every label asked, by name."""
        ...

    def remove(self, label: Label, job_ids: Sequence[str]) -> None: ...

    def release(self, label: Label, job_ids: Sequence[str]) -> None: ...


class _Submits(Protocol):
    def submit(self, label: Label, n: int, context: SubmitContext) -> SubmitOutcome: ...


def submit_each(
    backend: _Submits, requests: SubmitRequests, context: SubmitContext
) -> dict[str, SubmitOutcome]:
    """The batch interface for a backend that submits label by label (one failure stays local)."""
    outcomes: dict[str, SubmitOutcome] = {}
    for label, n in requests:
        try:
            outcomes[label.name] = backend.submit(label, n, context)
        except Exception as exc:
            outcomes[label.name] = SubmitOutcome(error=f"{type(exc).__name__}: {exc}")
    return outcomes
