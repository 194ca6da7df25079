"""Sharing between labels: a PQ's activated jobs among its labels and the factories, and the
factory-wide caps, fairly and explained."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from autopyfactory.domain.model import Decision, Step
from autopyfactory.domain.sharing import (
    FactoryCaps,
    apply_factory_caps,
    fair_share,
    share_jobs,
    split_activated,
)

# --- sharing activated jobs between labels and factories -----------------------------------------


def test_one_activated_job_yields_one_pilot_not_one_per_ce():
    shares = split_activated(1, [f"CE{i}" for i in range(13)], 1, cycle=0)
    assert sum(shares.values()) == 1


def test_remainder_rotates_with_the_cycle():
    labels = ["a", "b", "c"]
    assert split_activated(7, labels, 1, cycle=0) == {"a": 3, "b": 2, "c": 2}
    assert split_activated(7, labels, 1, cycle=1) == {"a": 2, "b": 3, "c": 2}
    assert split_activated(8, labels, 1, cycle=2) == {"a": 3, "b": 2, "c": 3}


def test_factories_divide_before_labels():
    assert split_activated(100, ["a", "b"], 3, cycle=0) == {"a": 17, "b": 16}


@given(
    activated=st.integers(0, 10**6),
    n_labels=st.integers(1, 50),
    factories=st.integers(1, 10),
    cycle=st.integers(0, 10**4),
)
def test_shares_add_up_and_differ_by_at_most_one(activated, n_labels, factories, cycle):
    labels = [f"L{i}" for i in range(n_labels)]
    shares = split_activated(activated, labels, factories, cycle)
    assert sum(shares.values()) == activated // factories
    assert max(shares.values()) - min(shares.values()) <= 1


def test_shares_credit_each_label_with_the_jobs_its_pilots_stand_for():
    # 21 jobs, 2 CEs: 11 + 10 pilots in the first cycle, none more in the next (was 10 + 11 more)
    assert share_jobs(21, {"a": 0, "b": 0}, cycle=0) == {"a": 11, "b": 10}
    assert share_jobs(21, {"a": 11, "b": 10}, cycle=1) == {"a": 11, "b": 10}
    # 2 jobs, 3 CEs: the uncovered job goes to the CEs in turn
    assert share_jobs(2, {"a": 1, "b": 0, "c": 0}, cycle=1) == {"a": 1, "b": 1, "c": 0}
    assert share_jobs(2, {"a": 1, "b": 0, "c": 0}, cycle=2) == {"a": 1, "b": 0, "c": 1}
    # more pilots than jobs: the jobs are shared among the pilots, nothing is uncovered
    assert share_jobs(3, {"a": 5, "b": 0}, cycle=0) == {"a": 3, "b": 0}


def test_a_label_with_unknown_pilots_keeps_its_even_share():
    assert share_jobs(10, {"a": None, "b": 2}, cycle=0) == {"a": 5, "b": 5}


@given(
    jobs=st.integers(0, 10**5),
    covering=st.lists(st.none() | st.integers(0, 2000), min_size=1, max_size=20),
    cycle=st.integers(0, 10**4),
)
def test_shares_add_up_and_the_uncovered_jobs_are_split_evenly(jobs, covering, cycle):
    labels = {f"L{i:02}": n for i, n in enumerate(covering)}
    shares = share_jobs(jobs, labels, cycle)
    assert sum(shares.values()) == jobs
    even = split_activated(jobs, list(labels), 1, cycle)
    known = {name: n for name, n in labels.items() if n is not None}
    available = jobs - sum(even[name] for name in labels if labels[name] is None)
    assert all(shares[name] == even[name] for name in labels if labels[name] is None)
    # the pilots Ready would add for the known labels: exactly the jobs no pilot stands for
    new = {name: max(0, shares[name] - n) for name, n in known.items()}
    assert sum(new.values()) == max(0, available - sum(known.values()))
    if new:  # split evenly, the remainder one each
        assert max(new.values()) - min(new.values()) <= 1


# --- factory-wide caps -------------------------------------------------------------------------


def decisions(**wanted: int) -> dict[str, Decision]:
    return {label: Decision(n, (Step("Fixed", 0, n, ""),)) for label, n in wanted.items()}


def test_max_per_cycle_is_shared_fairly_and_explained():
    capped = apply_factory_caps(decisions(a=2, b=50, c=50), FactoryCaps(max_per_cycle=30), cycle=0)
    assert {k: d.n for k, d in capped.items()} == {"a": 2, "b": 14, "c": 14}
    assert capped["b"].steps[-1].render() == "FactoryMaxPerCycle: in=50 requested=102 maxPerCycle=30 -> 14"


def test_max_pilots_counts_what_is_already_there():
    capped = apply_factory_caps(
        decisions(a=10, b=10), FactoryCaps(max_pilots=100, current_pilots=95), cycle=0
    )
    assert sum(d.n for d in capped.values()) == 5


def test_max_pilots_with_unknown_current_total_submits_nothing():
    capped = apply_factory_caps(decisions(a=10), FactoryCaps(max_pilots=100, current_pilots=None), cycle=0)
    assert capped["a"].n == 0
    assert "current=unknown" in capped["a"].steps[-1].reason


def test_no_caps_configured_changes_nothing():
    original = decisions(a=10, b=3)
    assert apply_factory_caps(original, FactoryCaps(), cycle=0) == original


@given(
    wanted=st.dictionaries(st.text("abcdef", min_size=1, max_size=3), st.integers(0, 1000), max_size=30),
    capacity=st.integers(0, 5000),
    cycle=st.integers(0, 100),
)
def test_fair_share_properties(wanted, capacity, cycle):
    granted = fair_share(wanted, capacity, cycle)
    assert set(granted) == set(wanted)
    assert sum(granted.values()) == min(capacity, sum(wanted.values()))
    for label, n in granted.items():
        assert 0 <= n <= wanted[label]
    # max-min fairness: a label that got less than it wanted got at least as much as any other, minus one
    for label, n in granted.items():
        if n < wanted[label]:
            assert all(n >= other - 1 for other in granted.values())
