"""Held and stuck pilots: which to release, which to remove. A pure planner.

A held pilot whose hold reason is listed as recoverable (``holdRecoverableCodes`` or a
``holdRecoverableReasons`` substring) is released, at most ``holdMaxReleases`` times, each time
after a pause that doubles (``holdReleaseBackoff``, 2x, 4x, ...). HTCondor counts the holds itself
(``NumHolds``), so the factory keeps no state for this and a restart changes nothing. Every other
held pilot is removed once it has been held ``holdTimeout`` seconds, and a pilot idle longer than
``idleTimeout`` (0 = never) is removed too. At most ``maxActionsPerCycle`` actions per label and
cycle, the oldest first, so a broken CE cannot make the factory hammer the schedd.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from autopyfactory.domain.model import JobStatus, Pilot


@dataclass(frozen=True)
class HousekeepingSettings:
    recoverable_codes: frozenset[int] = frozenset()
    recoverable_reasons: tuple[str, ...] = ()
    max_releases: int = 3
    release_backoff: int = 600
    hold_timeout: int = 3600
    idle_timeout: int = 0
    max_actions: int = 50


class ActionKind(enum.StrEnum):
    RELEASE = "release"
    REMOVE = "remove"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    job_id: str
    reason: str
    since: int  # EnteredCurrentStatus: the oldest go first
    #: Why, without this pilot's own numbers: condor_rm's ``-reason`` (one call per cause), which
    #: the job keeps as ``RemoveReason`` and the monitor shows.
    cause: str = ""


def recoverable(pilot: Pilot, cfg: HousekeepingSettings) -> bool:
    if pilot.hold_reason_code is not None and pilot.hold_reason_code in cfg.recoverable_codes:
        return True
    reason = pilot.hold_reason.lower()
    return any(fragment.lower() in reason for fragment in cfg.recoverable_reasons if fragment)


def plan_actions(pilots: Iterable[Pilot], cfg: HousekeepingSettings, now: float) -> list[Action]:
    """What to do with one label's pilots now; at most ``cfg.max_actions``, oldest first."""
    actions = [a for a in (_action(p, cfg, now) for p in pilots) if a is not None]
    actions.sort(key=lambda a: (a.since, a.job_id))
    return actions[: cfg.max_actions]


def _action(pilot: Pilot, cfg: HousekeepingSettings, now: float) -> Action | None:
    age = int(now - pilot.entered_status)
    if pilot.status is JobStatus.HELD:
        return _held(pilot, cfg, age)
    if pilot.status is JobStatus.IDLE and cfg.idle_timeout and age > cfg.idle_timeout:
        return Action(
            ActionKind.REMOVE,
            pilot.job_id,
            f"idle {age} s > idleTimeout {cfg.idle_timeout}",
            pilot.entered_status,
            f"idle longer than idleTimeout ({cfg.idle_timeout} s)",
        )
    return None


def _held(pilot: Pilot, cfg: HousekeepingSettings, age: int) -> Action | None:
    holds = max(1, pilot.num_holds)
    if recoverable(pilot, cfg) and holds <= cfg.max_releases:
        wait = cfg.release_backoff * 2 ** (holds - 1)
        if age >= wait:
            return Action(
                ActionKind.RELEASE,
                pilot.job_id,
                f"recoverable hold #{holds} after {age} s",
                pilot.entered_status,
            )
        return None
    if age >= cfg.hold_timeout:
        why = "released too often" if recoverable(pilot, cfg) else "not recoverable"
        cause = f"held longer than holdTimeout ({cfg.hold_timeout} s), {why}"
        return Action(
            ActionKind.REMOVE,
            pilot.job_id,
            f"held {age} s ({why}): {pilot.hold_reason[:80]}",
            pilot.entered_status,
            cause,
        )
    return None


def removals_by_cause(actions: Iterable[Action]) -> dict[str, list[str]]:
    """The pilots to remove, grouped by cause: one condor_rm ``-reason`` per group."""
    groups: dict[str, list[str]] = {}
    for action in actions:
        if action.kind is ActionKind.REMOVE:
            groups.setdefault(action.cause, []).append(action.job_id)
    return groups


def summarize(actions: Sequence[Action]) -> str:
    """``released 2, removed 1`` for the label message; empty when nothing was done."""
    released = sum(1 for a in actions if a.kind is ActionKind.RELEASE)
    removed = len(actions) - released
    parts = [f"released {released}"] if released else []
    return ", ".join(parts + ([f"removed {removed}"] if removed else []))
