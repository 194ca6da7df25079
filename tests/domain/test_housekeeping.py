"""Held and stuck pilots: the pure planner."""

from __future__ import annotations

import pytest

from autopyfactory.domain.housekeeping import (
    Action,
    ActionKind,
    HousekeepingSettings,
    plan_actions,
    removals_by_cause,
    summarize,
)
from autopyfactory.domain.model import JobStatus, Pilot

NOW = 1_700_000_000
CFG = HousekeepingSettings(
    recoverable_codes=frozenset({12}),
    recoverable_reasons=("Connection refused",),
    max_releases=3,
    release_backoff=600,
    hold_timeout=3600,
    idle_timeout=7200,
    max_actions=5,
)


def held(job_id="1.0", age=0, code=None, reason="", holds=1):
    return Pilot(
        job_id,
        "L",
        JobStatus.HELD,
        NOW - age,
        NOW - age - 10,
        hold_reason=reason,
        hold_reason_code=code,
        num_holds=holds,
    )


def idle(job_id="2.0", age=0):
    return Pilot(job_id, "L", JobStatus.IDLE, NOW - age, NOW - age)


@pytest.mark.parametrize(
    ("pilot", "expected"),
    [
        (held(code=12, age=599), None),  # recoverable, first backoff not over
        (held(code=12, age=600), ActionKind.RELEASE),
        (
            held(reason="CE said: connection REFUSED", age=600),
            ActionKind.RELEASE,
        ),  # case-insensitive substring
        (held(code=12, age=1199, holds=2), None),  # second hold waits twice as long
        (held(code=12, age=1200, holds=2), ActionKind.RELEASE),
        (held(code=12, age=2400, holds=3), ActionKind.RELEASE),
        (held(code=12, age=3599, holds=4), None),  # released too often: removed after holdTimeout
        (held(code=12, age=3600, holds=4), ActionKind.REMOVE),
        (held(code=3, reason="PeriodicHold", age=3599), None),  # not recoverable, not yet timed out
        (held(code=3, reason="PeriodicHold", age=3600), ActionKind.REMOVE),
        (held(code=12, age=600, holds=0), ActionKind.RELEASE),  # NumHolds missing counts as the first hold
        (idle(age=7200), None),
        (idle(age=7201), ActionKind.REMOVE),
        (Pilot("3.0", "L", JobStatus.RUNNING, NOW - 10**6, NOW - 10**6), None),
    ],
)
def test_one_pilot(pilot, expected):
    actions = plan_actions([pilot], CFG, NOW)
    assert [a.kind for a in actions] == ([expected] if expected else [])


def test_idle_timeout_zero_never_removes():
    cfg = HousekeepingSettings(idle_timeout=0)
    assert plan_actions([idle(age=10**7)], cfg, NOW) == []


def test_rate_limited_oldest_first():
    pilots = [held(f"{i}.0", age=4000 + i, code=3) for i in range(10)]
    actions = plan_actions(pilots, CFG, NOW)
    assert [a.job_id for a in actions] == ["9.0", "8.0", "7.0", "6.0", "5.0"]
    assert all(a.kind is ActionKind.REMOVE for a in actions)


def test_reasons_explain_the_action():
    [release] = plan_actions([held(code=12, age=700)], CFG, NOW)
    assert release.reason == "recoverable hold #1 after 700 s"
    [remove] = plan_actions([held(code=3, age=4000, reason="PeriodicHold: idle too long")], CFG, NOW)
    assert remove.reason == "held 4000 s (not recoverable): PeriodicHold: idle too long"


def test_removals_are_grouped_by_a_cause_without_the_pilots_numbers():
    """condor_rm -reason is one text per call: pilots removed for the same cause share it."""
    pilots = [
        held("1.0", age=4000, code=3, reason="PeriodicHold"),
        held("1.1", age=5000, code=2, reason="auth failed"),
        held("1.2", age=4000, code=12, holds=4),
        idle("2.0", age=8000),
        held("3.0", age=700, code=12),
    ]
    groups = removals_by_cause(plan_actions(pilots, CFG, NOW))
    assert groups == {
        "held longer than holdTimeout (3600 s), released too often": ["1.2"],
        "held longer than holdTimeout (3600 s), not recoverable": ["1.1", "1.0"],
        "idle longer than idleTimeout (7200 s)": ["2.0"],
    }


def test_summary():
    actions = [
        Action(ActionKind.RELEASE, "1.0", "", 0),
        Action(ActionKind.RELEASE, "1.1", "", 0),
        Action(ActionKind.REMOVE, "2.0", "", 0),
    ]
    assert summarize(actions) == "released 2, removed 1"
    assert summarize([]) == ""
