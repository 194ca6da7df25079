"""The batch side of the factory, behind one small interface.

A backend (HTCondor, local processes) serves two callers. The cycle asks it, for all of the
backend's labels at once: how many pilots of each label are there (:meth:`Backend.census`),
please start these (:meth:`Backend.submit`), release or remove these (:meth:`Backend.tidy`,
:meth:`Backend.remove`). The cron helpers (``mon-exiting``, ``mon-stale``) ask it about pilots
whatever their label: which finished (:meth:`Backend.finished`, :meth:`Backend.trace`) and which
are stale (:meth:`Backend.stale`, :meth:`Backend.remove_stale`). Neither caller knows which
backend it talks to, so a new backend slots in without touching them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from autopyfactory.domain.control import OPERATOR_REMOVAL
from autopyfactory.domain.label import Label
from autopyfactory.domain.model import Census, JobStatus


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
    #: told each label's job ids as soon as its schedd (or the label, locally) answered, before the
    #: whole submission returns: the cycle announces them to the monitor at once. Called from the
    #: backend's submission threads; what it raises is the caller's (it must not raise). Not
    #: compared: contexts that differ only in it describe the same pilots (bulk.py caches each
    #: label's description by its context, and the cycle makes a new callback every time).
    submitted: Callable[[str, SubmitOutcome], None] | None = field(default=None, compare=False)

    def tell_submitted(self, outcomes: Mapping[str, SubmitOutcome]) -> None:
        """Tell :attr:`submitted` of the labels' outcomes in ``outcomes`` (those with job ids)."""
        if self.submitted is None:
            return
        for name, outcome in outcomes.items():
            if outcome.job_ids:
                self.submitted(name, outcome)


@dataclass(frozen=True)
class SubmitOutcome:
    """Job ids submitted (``cluster.proc``), the submit file written, or the error;
    ``key_digests``: the SHA-256 digest of each submitted pilot's key, by job id (pilots that got
    no key are not in it)."""

    job_ids: tuple[str, ...] = ()
    submit_file: str = ""
    error: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)
    key_digests: Mapping[str, str] = field(default_factory=dict)


#: What one cycle asks a backend to submit: (label, number of pilots), each label once.
SubmitRequests = Sequence[tuple[Label, int]]


@dataclass(frozen=True)
class Tidy:
    """One label's housekeeping in a cycle: the pilots to release, and those to remove by reason
    (the reason becomes the jobs' ``RemoveReason``)."""

    label: Label
    release: tuple[str, ...] = ()
    remove: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class End(enum.Enum):
    """How a pilot left the batch system."""

    COMPLETED = "completed"  # it ran and exited
    REMOVED = "removed"  # removed before it finished (by the factory's housekeeping, a policy, by hand)
    WITHDRAWN = "withdrawn"  # removed on an operator's request (autopyfactory pilots remove): no fault
    LOST = "lost"  # the batch system keeps no trace of it


@dataclass(frozen=True)
class EndedPilot:
    """A pilot that left the batch system: ``rc`` its exit code (0-255) when known, ``reason``
    how it ended, for people (``Completed, exit code 3``, ``Removed: <why>``)."""

    job_id: str
    end: End
    rc: int | None = None
    reason: str = ""


def removed_pilot(job_id: str, remove_reason: str) -> EndedPilot:
    """A pilot removed before it finished; WITHDRAWN when an operator's request removed it (its
    RemoveReason starts with the request, see domain/control.py), REMOVED otherwise."""
    reason = f"Removed: {remove_reason}".strip(": ")
    withdrawn = remove_reason.startswith(OPERATOR_REMOVAL)
    return EndedPilot(job_id, End.WITHDRAWN if withdrawn else End.REMOVED, None, reason)


@dataclass(frozen=True)
class Finished:
    """A backend's pilots that ended since the given times, and the ids still queued.

    ``sources`` names the parts of the backend that were read completely (a schedd, the local
    history): only their checkpoints may advance. A part that could not be read is in
    ``problems`` instead, and its pilots are in neither ``pilots`` nor ``queued``.
    """

    pilots: tuple[EndedPilot, ...] = ()
    queued: frozenset[str] = frozenset()
    sources: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class StalePilot:
    """A pilot in one status for longer than allowed; ``source`` is where the backend found it."""

    job_id: str
    status: JobStatus
    age: int  # seconds in ``status``
    source: str

    @property
    def what(self) -> str:
        """``idle for 25.0 h``."""
        return f"{self.status.name.lower()} for {self.age / 3600:.1f} h"


@dataclass(frozen=True)
class Stale:
    pilots: tuple[StalePilot, ...] = ()
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Removal:
    removed: frozenset[str] = frozenset()
    problems: tuple[str, ...] = ()


class Backend(Protocol):
    name: str

    # -- the cycle --

    def census(
        self, labels: Sequence[Label], keep: Collection[str] = (), started_since: float | None = None
    ) -> Census:
        """The pilots of ``labels``; ``pilots`` lists every pilot of the labels in ``keep`` (and
        at least those housekeeping acts on). ``started_since`` (epoch seconds): each Supply's
        ``started`` counts the running pilots that started at or after it, and those whose start
        time the backend cannot tell (the safe side: they may have just taken a job); None: 0."""
        ...

    def submit(self, requests: SubmitRequests, context: SubmitContext) -> dict[str, SubmitOutcome]:
        """All of a cycle's submissions at once; an outcome for every label asked, by name."""
        ...

    def tidy(self, work: Sequence[Tidy]) -> dict[str, str]:
        """A cycle's releases and removals for all labels at once, in as few calls as the backend
        can; the error of each label (by name) whose pilots were not all acted on."""
        ...

    def remove(self, label: Label, job_ids: Sequence[str], reason: str = "") -> None:
        """Remove these pilots of ``label`` (raises BatchError)."""
        ...

    # -- the cron helpers --

    def sources(self) -> tuple[str, ...]:
        """The sources :meth:`finished` reads (the keys of its checkpoints), known without asking
        the batch system."""
        ...

    def finished(self, since: Callable[[str], float]) -> Finished:
        """This factory's pilots that ended since ``since(source)`` (epoch seconds, per source)."""
        ...

    def trace(self, job_ids: Sequence[str]) -> tuple[EndedPilot, ...]:
        """What became of these pilots, in neither :meth:`finished` answer: those found ended,
        however long ago, and those the backend can say are lost; the others it leaves out
        (still queued, or it cannot tell). Raises BatchError."""
        ...

    def stale(self, now: float, older_than: Mapping[JobStatus, int]) -> Stale:
        """This factory's pilots in a status of ``older_than`` for longer than its seconds."""
        ...

    def remove_stale(self, pilots: Sequence[StalePilot], reason: str) -> Removal:
        """Remove these pilots (from :meth:`stale`); ``reason`` as their RemoveReason."""
        ...
