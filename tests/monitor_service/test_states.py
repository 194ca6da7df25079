"""The pure state machine: the full table of moves, and properties over random report sequences."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autopyfactory.monitor_service.states import (
    FINAL_STATES,
    JobState,
    Verdict,
    decide,
    is_legal,
    legacy_exit_target,
)

C, R, E, D, F = JobState.CREATED, JobState.RUNNING, JobState.EXITING, JobState.DONE, JobState.FAULT
X = JobState.REMOVED  # an operator's removal: from every active state, final

LEGAL = {
    (C, R),
    (R, E),
    (E, D),
    (C, F),
    (R, F),
    (E, F),
    (C, E),
    (C, X),
    (R, X),
    (E, X),
}  # C -> E: running lost


@pytest.mark.parametrize("current", list(JobState))
@pytest.mark.parametrize("target", list(JobState))
def test_every_pair(current: JobState, target: JobState) -> None:
    decision = decide(current, target)
    if current is target:
        assert decision.verdict is Verdict.REPLAY
    elif (current, target) in LEGAL:
        assert decision.verdict is Verdict.APPLY
        assert is_legal(current, target)
    else:
        assert decision.verdict is Verdict.ILLEGAL
        assert not is_legal(current, target)
        assert decision.reason.startswith(f"illegal transition {current} -> {target}")


@given(st.lists(st.sampled_from(list(JobState)), max_size=12))
def test_applying_decisions_never_leaves_a_final_state(requests: list[JobState]) -> None:
    state = C
    for target in requests:
        decision = decide(state, target)
        before = state
        if decision.verdict is Verdict.APPLY:
            state = target
        if before in FINAL_STATES:
            assert state is before
    assert state in JobState


@pytest.mark.parametrize(
    ("current", "rc", "target"),
    [(C, 116, F), (C, 0, E), (R, 0, E), (R, 1, E), (E, 0, E)],
)
def test_legacy_exit(current: JobState, rc: int, target: JobState) -> None:
    assert legacy_exit_target(current, rc) is target
