"""What a cycle did: each label's plan and outcome, the problems at the edges, one summary.

The observers (state file, metrics, monitor client) and the log read a cycle through these types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol, runtime_checkable

from autopyfactory.batch.interface import SubmitOutcome
from autopyfactory.domain.credentials import CredentialCheck
from autopyfactory.domain.demand import PandaReading
from autopyfactory.domain.label import Label
from autopyfactory.domain.model import EdgeKind, plural
from autopyfactory.domain.planning import LabelPlan


@dataclass(frozen=True)
class LabelResult:
    plan: LabelPlan
    outcome: SubmitOutcome
    housekeeping: str = ""  # "released 2, removed 1", or an error

    @property
    def submitted(self) -> int:
        return len(self.outcome.job_ids)

    def line(self) -> str:
        """The one concise log line per label and cycle (also the monitor's label message);
        built once, as the log and the monitor both use it."""
        return self._line

    @cached_property
    def _line(self) -> str:
        p, s = self.plan, self.plan.supply
        pilots = (
            f"idle={s.idle} running={s.running} held={s.held} started={s.started}" if s else "pilots=unknown"
        )
        activated = "unknown(no PanDA data)" if p.pq_activated is None else str(p.pq_activated)
        share = "" if p.demand is None else f" share={p.demand.activated}"
        result = f"submitted={self.submitted}"
        if self.outcome.job_ids:
            result += f" ids={self.outcome.job_ids[0]}..{self.outcome.job_ids[-1]}"
        if self.outcome.error:
            result += f" error={self.outcome.error!r}"
        if self.outcome.submit_file and not self.outcome.job_ids and not self.outcome.error:
            result += f" file={self.outcome.submit_file}"
        if self.housekeeping:
            result += f" housekeeping: {self.housekeeping}"
        return (
            f"{p.label.name} pq={p.label.pq}{_restriction(p.label)} activated={activated}{share} {pilots} "
            f"decision={p.decision.n} {result} | {p.decision.explain()}"
        )


def _restriction(label: Label) -> str:
    """`` rt=MCORE jobs=managed`` for a label counting only some jobs."""
    rt = f" rt={label.resource_type}" if label.resource_type else ""
    return rt + (f" jobs={','.join(label.job_labels)}" if label.job_labels else "")


@dataclass(frozen=True)
class Problem:
    """Something that went wrong at an edge this cycle, and which edge."""

    kind: EdgeKind
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class CycleReport:
    cycle: int
    started: float
    duration: float
    results: tuple[LabelResult, ...]
    problems: tuple[Problem, ...]
    skipped_queues: tuple[str, ...] = field(default=())
    credentials: tuple[CredentialCheck, ...] = field(default=())
    panda: PandaReading | None = None  # this cycle's PanDA answer (None: not asked)
    control: tuple[str, ...] = field(default=())  # disabled queues, pilot removals (domain/control.py)

    def ok(self, kind: EdgeKind) -> bool:
        """Whether the edge ``kind`` answered well this cycle."""
        return not any(p.kind == kind for p in self.problems)

    @property
    def submitted(self) -> int:
        return sum(r.submitted for r in self.results)

    def summary(self) -> str:
        errors = sum(1 for r in self.results if r.outcome.error)
        wanted = sum(r.plan.decision.n for r in self.results)
        panda = ""
        if self.panda is not None:
            panda = (
                f"PanDA answer {self.panda.asked - self.started:.0f} s into the cycle"
                if self.panda.ok
                else self.panda.describe(self.started + self.duration).split(":", 1)[0]
            ) + ", "
        return (
            f"cycle {self.cycle}: {plural(len(self.results), 'label')}, decided {wanted},"
            f" submitted {self.submitted}, {panda}{plural(errors, 'submit error')},"
            f" {plural(len(self.problems), 'problem')},"
            f" {plural(len(self.skipped_queues), 'queue')} skipped, {self.duration:.1f} s"
        )


class CycleObserver(Protocol):
    """Who hears about each cycle (state file, metrics, monitor client); must never block. One
    that raises is logged and counted, and the others are still told."""

    def cycle_done(self, report: CycleReport, labels: Sequence[Label]) -> None: ...


@runtime_checkable
class PilotListener(Protocol):
    """An observer that is told of pilots as soon as they are known to be queued (the monitor
    client), not at the end of the cycle: a pilot may report a few seconds after its submission."""

    def pilots_created(
        self, label: str, job_ids: Sequence[str], key_digests: Mapping[str, str] | None = None
    ) -> None:
        """Keep these pilots of ``label`` to announce, with the digests of the keys of those that
        have one (by job id); never blocks on the network. Raises when
        it could not keep them: the cycle then keeps the label unsettled and announces its
        pilots again after a good census."""
        ...
