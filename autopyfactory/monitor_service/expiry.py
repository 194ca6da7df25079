"""Server-side expiry (apfmon's rules) and retention.

Expiry, in this order (thresholds in :class:`ExpiryRules`):

1. EXITING longer than ``exiting`` → DONE (the wrapper said it was exiting; nobody will say more);
2. flagged longer than ``flagged`` and not final → FAULT;
3. CREATED longer than ``created`` → flagged (the pilot never started, or its report was lost);
4. RUNNING longer than ``running`` → flagged.

A pilot's legal report clears the flag. Every change is a job event with source ``expiry``. Jobs
are changed in batches, one short transaction each, so that the wrappers' reports never wait long.
Run by ``autopyfactory-monitor expire`` (its systemd timer) or by :class:`ExpiryThread` inside the service.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, insert, select, update

from autopyfactory.monitor_service.db import Database
from autopyfactory.monitor_service.models import Job, JobEvent
from autopyfactory.monitor_service.settings import Clock, ExpiryRules
from autopyfactory.monitor_service.states import ACTIVE_STATES, FINAL_STATES, JobState
from autopyfactory.monitor_service.store import job_event

log = logging.getLogger(__name__)

SOURCE = "expiry"
_ACTIVE = [state.value for state in ACTIVE_STATES]
_FINAL = [state.value for state in FINAL_STATES]


def span(delta: timedelta) -> str:
    """A threshold as people write it: ``30 min``, ``6 h``, ``90 s``."""
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


@dataclass(frozen=True)
class Step:
    """One expiry rule: which jobs it selects at ``now``, what it sets, and what the event says."""

    name: str
    where: Callable[[datetime], Sequence[ColumnElement[bool]]]
    values: Callable[[datetime], dict[str, Any]]
    new_state: JobState | None  # None: the state stays (flagging)
    text: str


def steps(rules: ExpiryRules) -> list[Step]:
    return [
        Step(
            "done",
            lambda now: [Job.state == JobState.EXITING.value, Job.state_changed_at < now - rules.exiting],
            lambda now: {"state": JobState.DONE.value, "state_changed_at": now},
            JobState.DONE,
            f"expiry: EXITING for more than {span(rules.exiting)}",
        ),
        Step(
            "faulted",
            lambda now: [Job.flagged.is_(True), Job.state.in_(_ACTIVE), Job.flagged_at < now - rules.flagged],
            lambda now: {"state": JobState.FAULT.value, "state_changed_at": now},
            JobState.FAULT,
            f"expiry: flagged for more than {span(rules.flagged)}",
        ),
        _flag_step("flagged_created", JobState.CREATED, rules.created),
        _flag_step("flagged_running", JobState.RUNNING, rules.running),
    ]


def _flag_step(name: str, state: JobState, limit: timedelta) -> Step:
    return Step(
        name,
        lambda now: [Job.state == state.value, Job.flagged.is_(False), Job.state_changed_at < now - limit],
        lambda now: {"flagged": True, "flagged_at": now},
        None,
        f"expiry: flagged, {state} for more than {span(limit)}",
    )


@dataclass(frozen=True)
class ExpiryReport:
    done: int = 0
    faulted: int = 0
    flagged_created: int = 0
    flagged_running: int = 0

    def line(self) -> str:
        return (
            f"expiry: done={self.done} faulted={self.faulted} "
            f"flagged_created={self.flagged_created} flagged_running={self.flagged_running}"
        )


class Expiry:
    def __init__(self, db: Database, clock: Clock, rules: ExpiryRules) -> None:
        self._db = db
        self._clock = clock
        self._rules = rules

    def run(self) -> ExpiryReport:
        now = self._clock()
        counts = {step.name: self._apply(step, now) for step in steps(self._rules)}
        return ExpiryReport(**counts)

    def _apply(self, step: Step, now: datetime) -> int:
        total = 0
        while True:
            changed, selected = self._apply_batch(step, now)
            total += changed
            if selected < self._rules.batch or changed == 0:
                return total

    def _apply_batch(self, step: Step, now: datetime) -> tuple[int, int]:
        """Change one batch; (jobs changed, jobs selected)."""
        where = step.where(now)
        with self._db.write.begin() as session:
            selected = dict(
                session.execute(
                    select(Job.id, Job.state).where(*where).order_by(Job.id).limit(self._rules.batch)
                ).all()
            )
            if not selected:
                return 0, 0
            changed = session.scalars(
                update(Job)
                .where(Job.id.in_(list(selected)), *where)
                .values(**step.values(now))
                .returning(Job.id)
                .execution_options(synchronize_session=False)
            ).all()
            events = [
                job_event(
                    job_id, now, selected[job_id], (step.new_state or selected[job_id]), SOURCE, step.text
                )
                for job_id in changed
            ]
            if events:
                session.execute(insert(JobEvent), events)
        return len(changed), len(selected)

    def clean(self, days: float, batch: int = 1000) -> int:
        """Delete final (DONE/FAULT/REMOVED) jobs (and their events) whose last change is older
        than ``days`` days."""
        cutoff = self._clock() - timedelta(days=days)
        deleted = 0
        while True:
            with self._db.write.begin() as session:
                ids = session.scalars(
                    select(Job.id)
                    .where(Job.state.in_(_FINAL), Job.state_changed_at < cutoff)
                    .order_by(Job.id)
                    .limit(batch)
                ).all()
                if ids:
                    session.execute(delete(JobEvent).where(JobEvent.job_id.in_(ids)))
                    session.execute(
                        delete(Job).where(Job.id.in_(ids)).execution_options(synchronize_session=False)
                    )
            deleted += len(ids)
            if len(ids) < batch:
                return deleted


class ExpiryThread:
    """Runs :meth:`Expiry.run` every ``every`` seconds inside the service, until stopped."""

    def __init__(self, expiry: Expiry, every: float) -> None:
        self._expiry = expiry
        self._every = every
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="monitor-expiry", daemon=True)
        self.runs = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.wait(self._every):
            try:
                report = self._expiry.run()
            except Exception:
                # The database may be away for a while; the next run tries again.
                log.exception("in-process expiry failed")
            else:
                log.info("%s", report.line())
            self.runs += 1
