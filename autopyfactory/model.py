"""The factory's vocabulary: a label has demand, supply, a queue status and a decision.

A *label* is one PanDA queue (PQ) x one CE queue. Its *demand* is its share of the PQ's activated
jobs; its *supply* is its pilots in the batch system; the *decision* is a number of pilots plus one
step per policy plugin that explains how the number came about. These types carry no behaviour
beyond validation and rendering, so every other module can share them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


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
    """Jobs waiting for pilots, as PanDA counts them (already this label's share)."""

    activated: int
    transferring: int = 0

    def __post_init__(self) -> None:
        _require_non_negative(activated=self.activated, transferring=self.transferring)


@dataclass(frozen=True)
class Supply:
    """A label's pilots in the batch system. ``total`` also counts states that are neither
    idle, running nor held (transferring output, suspended); it defaults to their sum."""

    idle: int = 0
    running: int = 0
    held: int = 0
    total: int | None = None

    def __post_init__(self) -> None:
        _require_non_negative(idle=self.idle, running=self.running, held=self.held)
        counted = self.idle + self.running + self.held
        if self.total is None:
            object.__setattr__(self, "total", counted)
        elif self.total < counted:
            raise ValueError(f"total={self.total} is less than idle+running+held={counted}")

    @property
    def pending(self) -> int:
        """Pilots not yet running: idle + held (APF's meaning of *pending*)."""
        return self.idle + self.held

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
    run_count: int = 0
    hold_reason: str = ""
    hold_reason_code: int | None = None
    num_holds: int = 0  # NumHolds: how often it was held so far
    grid_status: str = ""
