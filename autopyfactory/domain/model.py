"""The factory's vocabulary: a label has demand, supply, a queue status and a decision.

A *label* is one PanDA queue (PQ) x one CE queue. Its *demand* is its share of the PQ's activated
jobs; its *supply* is its pilots in the batch system; the *decision* is a number of pilots plus one
step per policy plugin that explains how the number came about. These types carry no behaviour
beyond validation and rendering, so every other module can share them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class QueueStatus(enum.StrEnum):
    """PanDA queue status as the factory acts on it (CRIC ``status``)."""

    ONLINE = "online"
    BROKEROFF = "brokeroff"  # no new brokerage, but activated jobs still need pilots
    TEST = "test"
    OFFLINE = "offline"

    @classmethod
    def from_schedconfig(cls, value: str) -> QueueStatus:
        """Map a CRIC status; ``standby`` and ``maintenance`` count as offline, unknown is an error."""
        lowered = value.strip().lower()
        if lowered in ("standby", "maintenance"):
            return cls.OFFLINE
        try:
            return cls(lowered)
        except ValueError:
            known = ", ".join(s.value for s in cls)
            raise ValueError(
                f"unknown queue status {value!r} (known: {known}, standby, maintenance)"
            ) from None


class EdgeKind(enum.StrEnum):
    """The edges a cycle reports about: a problem names its edge, the state file records whether
    each answered well, the metrics count errors by it. The values are what status.json and the
    metrics spell."""

    SCHEDCONFIG = "schedconfig"
    PANDA = "panda"
    BATCH = "batch"
    CONTROL = "control"
    STATE = "state"  # the state dir's own files (the unsettled labels)


class JobStatus(enum.IntEnum):
    """HTCondor's JobStatus attribute."""

    IDLE = 1
    RUNNING = 2
    REMOVED = 3
    COMPLETED = 4
    HELD = 5
    TRANSFERRING_OUTPUT = 6
    SUSPENDED = 7


def _require_non_negative(**values: int) -> None:
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")


@dataclass(frozen=True)
class Demand:
    """Jobs waiting for pilots, as PanDA counts them (already this label's share).

    ``idle_elsewhere``: why this label sends no idle pilot when it has no jobs ("" when it may):
    a queue keeps one idle pilot, not one per CE and resource type, and none while any of its
    labels has jobs (planning.py decides which label keeps it).
    """

    activated: int
    transferring: int = 0
    idle_elsewhere: str = ""

    def __post_init__(self) -> None:
        _require_non_negative(activated=self.activated, transferring=self.transferring)


@dataclass(frozen=True)
class Supply:
    """A label's pilots in the batch system. ``total`` also counts states that are neither
    idle, running nor held (transferring output, suspended); it defaults to their sum.

    ``started``: the running pilots that started within the last ``pandaLag`` seconds (and those
    whose start time the batch system does not tell). PanDA's ``activated`` count is a snapshot
    refreshed every one or two minutes, so the jobs these pilots just took are still in it: they
    count against the demand like pending pilots (:attr:`covering`).
    """

    idle: int = 0
    running: int = 0
    held: int = 0
    total: int | None = None
    started: int = 0

    def __post_init__(self) -> None:
        _require_non_negative(idle=self.idle, running=self.running, held=self.held, started=self.started)
        counted = self.idle + self.running + self.held
        if self.total is None:
            object.__setattr__(self, "total", counted)
        elif self.total < counted:
            raise ValueError(f"total={self.total} is less than idle+running+held={counted}")
        if self.started > self.running:
            raise ValueError(f"started={self.started} is more than running={self.running}")

    @property
    def pending(self) -> int:
        """Pilots not yet running: idle + held (APF's meaning of *pending*)."""
        return self.idle + self.held

    @property
    def covering(self) -> int:
        """Pilots that stand for jobs PanDA still counts as activated: pending + started."""
        return self.pending + self.started

    @property
    def all(self) -> int:
        """``total`` with its default resolved (never None after construction)."""
        assert self.total is not None
        return self.total


@dataclass(frozen=True)
class Step:
    """One policy step: what came in, what went out, and why."""

    plugin: str
    inp: int
    out: int
    reason: str

    def render(self) -> str:
        """``MaxPending: in=43 pending=10 max=25 -> 15``."""
        middle = f" {self.reason}" if self.reason else ""
        return f"{self.plugin}: in={self.inp}{middle} -> {self.out}"


@dataclass(frozen=True)
class Decision:
    """How many pilots to submit for a label, and the steps that led there."""

    n: int
    steps: tuple[Step, ...]

    def then(self, step: Step) -> Decision:
        """This decision followed by one more step (whose ``out`` becomes the new ``n``)."""
        return Decision(step.out, (*self.steps, step))

    def explain(self) -> str:
        """One line for logs, the monitor and ``status``."""
        return "; ".join(step.render() for step in self.steps)


@dataclass(frozen=True)
class Pilot:
    """One pilot as the batch system reports it: the part of its job ad the factory acts on."""

    job_id: str  # cluster.proc
    label: str  # MATCH_APF_QUEUE; "" if missing
    status: JobStatus
    entered_status: int  # EnteredCurrentStatus, epoch seconds
    queued: int  # QDate, epoch seconds
    hold_reason: str = ""
    hold_reason_code: int | None = None
    num_holds: int = 0  # NumHolds: how often it was held so far


@dataclass(frozen=True)
class Census:
    """This factory's pilots as the batch system sees them this cycle.

    ``supply`` has an entry for every label asked about: a Supply, or None when the label's
    schedd could not be asked (the policy then submits nothing for it). ``total`` counts all of
    this factory's pilots, also of labels no longer configured; None if any query failed.
    ``pilots`` lists pilots by label: all of them, or (HTCondor) only those housekeeping acts on;
    ``queued`` then has the QDates (epoch seconds, maybe floored to the hour) of a label's pilots
    for log cleanup.
    """

    supply: Mapping[str, Supply | None]
    total: int | None
    problems: tuple[str, ...] = ()
    pilots: Mapping[str, tuple[Pilot, ...]] = field(default_factory=dict)  # by label, where known
    queued: Mapping[str, frozenset[int]] | None = None  # None: take the QDates from ``pilots``

    def queued_by_label(self) -> dict[str, frozenset[int]]:
        """The QDates of each label's pilots (from ``queued``, else from ``pilots``)."""
        if self.queued is not None:
            return dict(self.queued)
        return {label: frozenset(p.queued for p in found) for label, found in self.pilots.items()}

    def queue_dates(self) -> list[tuple[int, str]]:
        """(QDate, label) for every pilot's log directory, for log cleanup."""
        return [(qdate, label) for label, dates in self.queued_by_label().items() for qdate in dates]

    @classmethod
    def merge(cls, censuses: Iterable[Census]) -> Census:
        """Several censuses as one: of several backends (each with its own labels) or of several
        schedds (a label's pilots in more than one). Per label the supplies add up, and a label
        unknown in any of them is unknown; the total is unknown if any is; the problems, pilots
        and QDates are all kept."""
        supply: dict[str, Supply | None] = {}
        total: int | None = 0
        problems: list[str] = []
        pilots: dict[str, tuple[Pilot, ...]] = {}
        queued: dict[str, frozenset[int]] = {}
        for census in censuses:
            for name, found in census.supply.items():
                supply[name] = _added(supply[name], found) if name in supply else found
            total = None if total is None or census.total is None else total + census.total
            problems.extend(census.problems)
            for name, listed in census.pilots.items():
                pilots[name] = (*pilots.get(name, ()), *listed)
            for name, dates in census.queued_by_label().items():
                queued[name] = queued.get(name, frozenset()) | dates
        return cls(supply, total, tuple(problems), pilots, queued)


def _added(a: Supply | None, b: Supply | None) -> Supply | None:
    """Two counts of one label's pilots, summed; unknown if either is."""
    if a is None or b is None:
        return None
    idle, running, held = a.idle + b.idle, a.running + b.running, a.held + b.held
    return Supply(idle, running, held, a.all + b.all, a.started + b.started)


def plural(n: int, noun: str, many: str = "") -> str:
    """``1 pilot``, ``2 pilots``, ``0 pilots``; ``many`` for irregular nouns (``1 query, 2 queries``)."""
    return f"{n} {noun}" if n == 1 else f"{n} {many or noun + 's'}"
