"""The pilot (job) state machine of apfmon, as pure functions.

A job is created by its factory (``CREATED``); its wrapper reports ``running`` and then
``exiting`` with the pilot's return code; the server's expiry turns a job that stayed in
``EXITING`` long enough into ``DONE``. ``FAULT`` is reachable from every state that is not final,
and so is ``REMOVED``: an operator removed the pilot on purpose (``autopyfactory pilots remove``,
reported by the factory's ``mon-exiting``), which is neither a success nor a fault, so a drained
queue's fault rate stays what its pilots' health makes it.
``CREATED -> EXITING`` is legal too: a pilot whose ``running`` report was lost (a monitor outage,
or a report sent before the factory announced the pilot) still ends with its rc and PanDA ids.
A report that asks for the state the job is already in is a *replay* (a wrapper retrying after a
lost answer) and changes nothing; any other move that is not listed here is *illegal*.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class JobState(enum.StrEnum):
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    EXITING = "EXITING"
    DONE = "DONE"
    FAULT = "FAULT"
    REMOVED = "REMOVED"  # removed by an operator's request: final, not a fault

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.DONE, JobState.FAULT, JobState.REMOVED})
ACTIVE_STATES = frozenset(JobState) - FINAL_STATES

_FORWARD = {
    (JobState.CREATED, JobState.RUNNING),
    (JobState.CREATED, JobState.EXITING),  # the running report was lost
    (JobState.RUNNING, JobState.EXITING),
    (JobState.EXITING, JobState.DONE),
}


class Verdict(enum.Enum):
    APPLY = "apply"  # a legal move: change the state
    REPLAY = "replay"  # already there: nothing to do, not an error
    ILLEGAL = "illegal"  # refused (409), recorded in the job's event log


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    current: JobState
    target: JobState
    reason: str


def is_legal(current: JobState, target: JobState) -> bool:
    """True when ``current -> target`` is one of the machine's moves."""
    if current.final:
        return False
    return target in (JobState.FAULT, JobState.REMOVED) or (current, target) in _FORWARD


def decide(current: JobState, target: JobState) -> Decision:
    """Judge a request to move a job from ``current`` to ``target``."""
    if current is target:
        return Decision(Verdict.REPLAY, current, target, f"already {current}")
    if is_legal(current, target):
        return Decision(Verdict.APPLY, current, target, f"{current} -> {target}")
    why = f"{current} is final" if current.final else f"{target} is not reachable from {current}"
    return Decision(Verdict.ILLEGAL, current, target, f"illegal transition {current} -> {target}: {why}")


PILOT_REPORTS = {"running": JobState.RUNNING, "exiting": JobState.EXITING, "fault": JobState.FAULT}
"""What a wrapper may report (API v2 ``state=`` values) and the state each one asks for."""


def legacy_exit_target(current: JobState, rc: int) -> JobState:
    """The target of a v1 ``/mon/ex/{fid}/{cid}/{rc}/`` call.

    API v1 has no fault state: a wrapper that fails before its pilot runs reports ``ex`` with its
    own non-zero code while the job is still ``CREATED``. That is read as a fault; every other
    ``ex`` is the normal ``exiting``.
    """
    if current is JobState.CREATED and rc != 0:
        return JobState.FAULT
    return JobState.EXITING
