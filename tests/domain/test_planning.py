"""The cycle's pure part: PanDA shares, census and factory caps joined with the policy."""

from __future__ import annotations

import pytest

from autopyfactory.domain.demand import SiteJobs
from autopyfactory.domain.model import Census, Supply
from autopyfactory.domain.planning import plan
from autopyfactory.domain.sharing import FactoryCaps
from tests.support.cycle_data import planning_labels


@pytest.fixture
def labels(tmp_path):
    return planning_labels(tmp_path)


def census_of(labels, **overrides):
    supply = {label.name: Supply() for label in labels}
    supply.update(overrides)
    return Census(supply, total=0)


def by_name(plans):
    return {p.label.name: p for p in plans}


def test_no_panda_data_means_nothing_anywhere(labels):
    plans = plan(labels, None, census_of(labels), 1, FactoryCaps(), cycle=0)
    assert len(plans) == 15
    assert all(p.decision.n == 0 and p.decision.steps[0].plugin == "NoData" for p in plans)
    assert all(p.pq_activated is None and p.demand is None for p in plans)


def test_unknown_census_blocks_only_that_label(labels):
    blocked = "NDGF-T1-arc01.ndgf.org-atlas"
    stats = {"NDGF-T1": SiteJobs({"activated": 10})}
    plans = by_name(plan(labels, stats, census_of(labels, **{blocked: None}), 1, FactoryCaps(), cycle=0))
    assert plans[blocked].decision.n == 0
    assert plans[blocked].decision.steps[0].reason == "pilot counts unknown or stale"
    assert plans["NDGF-T1-arc02.ndgf.org-atlas"].decision.n == 5  # Ready: its share 5, MaxPending 8


def test_activated_jobs_are_shared_between_the_ces_of_a_pq(labels):
    stats = {"CERN": SiteJobs({"activated": 27}), "NDGF-T1": SiteJobs({"activated": 3})}
    plans = plan(labels, stats, census_of(labels), 1, FactoryCaps(), cycle=4)
    cern = [p for p in plans if p.label.pq == "CERN"]
    assert sum(p.demand.activated for p in cern) == 27
    assert {p.demand.activated for p in cern} == {2, 3}
    assert all(p.pq_activated == 27 for p in cern)
    ndgf = [p for p in plans if p.label.pq == "NDGF-T1"]
    assert sorted(p.decision.n for p in ndgf) == [1, 2]  # Ready on shares 1 and 2


def test_a_pq_absent_from_panda_has_no_activated_jobs(labels):
    plans = plan(labels, {}, census_of(labels), 1, FactoryCaps(), cycle=0)
    cern = [p for p in plans if p.label.pq == "CERN"]
    assert all(p.pq_activated == 0 for p in cern)
    assert all(p.decision.n == 1 for p in cern)  # Classic: the idle pilot


def test_factory_caps_apply_after_the_labels(labels):
    stats = {"CERN": SiteJobs({"activated": 1000})}
    plans = plan(labels, stats, census_of(labels), 1, FactoryCaps(max_per_cycle=26), cycle=0)
    cern = [p for p in plans if p.label.pq == "CERN"]
    assert sum(p.decision.n for p in cern) == 26
    assert all(p.decision.steps[-1].plugin == "FactoryMaxPerCycle" for p in cern)


def test_num_factories_divides_the_demand(labels):
    stats = {"NDGF-T1": SiteJobs({"activated": 9})}
    plans = plan(labels, stats, census_of(labels), 3, FactoryCaps(), cycle=0)
    assert sum(p.demand.activated for p in plans if p.label.pq == "NDGF-T1") == 3
