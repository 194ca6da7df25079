"""The batch side of the factory, behind one small interface.

A backend (HTCondor, local processes) answers two questions per cycle: how many pilots of each
label are there (:meth:`Backend.census`), and please start N more (:meth:`Backend.submit`). It can
also remove and release pilots. The cycle only talks to this interface, so a new backend slots in
without touching it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from autopyfactory.domain.label import Label
from autopyfactory.domain.model import Census


class BatchError(Exception):
    """A batch command failed; the message says which and why."""


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


@dataclass(frozen=True)
class Tidy:
    """One label's housekeeping in a cycle: the pilots to release, and those to remove by reason
    (the reason becomes the jobs' ``RemoveReason``)."""

    label: Label
    release: tuple[str, ...] = ()
    remove: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def census(self, labels: Sequence[Label], keep: Collection[str] = ()) -> Census:
        """The pilots of ``labels``; ``pilots`` lists every pilot of the labels in ``keep`` (and
        at least those housekeeping acts on)."""
        ...

    def submit(self, label: Label, n: int, context: SubmitContext) -> SubmitOutcome: ...

    def submit_batch(self, requests: SubmitRequests, context: SubmitContext) -> dict[str, SubmitOutcome]:
        """All of a cycle's submissions at once; an outcome for every label asked, by name."""
        ...

    def remove(self, label: Label, job_ids: Sequence[str], reason: str = "") -> None: ...

    def release(self, label: Label, job_ids: Sequence[str]) -> None: ...

    def tidy(self, work: Sequence[Tidy]) -> dict[str, str]:
        """A cycle's releases and removals for all labels at once, in as few calls as the backend
        can; the error of each label (by name) whose pilots were not all acted on."""
        ...


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


class _RemovesReleases(Protocol):
    def remove(self, label: Label, job_ids: Sequence[str], reason: str = "") -> None: ...

    def release(self, label: Label, job_ids: Sequence[str]) -> None: ...


def tidy_each(backend: _RemovesReleases, work: Sequence[Tidy]) -> dict[str, str]:
    """The housekeeping interface for a backend that acts label by label (a failure stays local)."""
    failed: dict[str, str] = {}
    for item in work:
        try:
            if item.release:
                backend.release(item.label, item.release)
            for reason, job_ids in item.remove.items():
                backend.remove(item.label, job_ids, reason)
        except BatchError as exc:
            failed[item.label.name] = str(exc)
    return failed
