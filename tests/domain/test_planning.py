"""The cycle's pure part: PanDA shares, census and factory caps joined with the policy."""

from __future__ import annotations

import pytest

from autopyfactory.demo import panda_standin as ps
from autopyfactory.domain.model import Census, Supply
from autopyfactory.domain.planning import plan
from autopyfactory.domain.sharing import FactoryCaps
from autopyfactory.edges.panda import parse_detailed_stats
from tests.support.cycle_data import planning_labels
from tests.support.factory_conf import factory_conf, labels_from, write_factory_conf


@pytest.fixture
def labels(tmp_path):
    return planning_labels(tmp_path)


def activated(**sites: int):
    """PanDA's detailed answer with ``n`` activated managed jobs at each site."""
    jobs = {(site, "SCORE", "managed", "activated"): n for site, n in sites.items()}
    return parse_detailed_stats(ps.envelope(ps.detailed_job_stats(jobs), detailed=True))


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
    stats = activated(**{"NDGF-T1": 10})
    plans = by_name(plan(labels, stats, census_of(labels, **{blocked: None}), 1, FactoryCaps(), cycle=0))
    assert plans[blocked].decision.n == 0
    assert plans[blocked].decision.steps[0].reason == "pilot counts unknown or stale"
    assert plans["NDGF-T1-arc02.ndgf.org-atlas"].decision.n == 5  # Ready: its share 5, MaxPending 8


def test_activated_jobs_are_shared_between_the_ces_of_a_pq(labels):
    stats = activated(CERN=27, **{"NDGF-T1": 3})
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
    assert sorted(p.decision.n for p in cern) == [0] * 12 + [1]  # Classic: the queue's one idle pilot


def test_factory_caps_apply_after_the_labels(labels):
    stats = activated(CERN=1000)
    plans = plan(labels, stats, census_of(labels), 1, FactoryCaps(max_per_cycle=26), cycle=0)
    cern = [p for p in plans if p.label.pq == "CERN"]
    assert sum(p.decision.n for p in cern) == 26
    assert all(p.decision.steps[-1].plugin == "FactoryMaxPerCycle" for p in cern)


def test_num_factories_divides_the_demand(labels):
    stats = activated(**{"NDGF-T1": 9})
    plans = plan(labels, stats, census_of(labels), 3, FactoryCaps(), cycle=0)
    assert sum(p.demand.activated for p in plans if p.label.pq == "NDGF-T1") == 3


# --- the pilots of a PQ add up to its jobs -------------------------------------------------------

NDGF = ("NDGF-T1-arc01.ndgf.org-atlas", "NDGF-T1-arc02.ndgf.org-atlas")


def test_pilots_that_started_within_the_lag_stand_for_jobs_still_counted_activated(labels):
    """A burst of 10 jobs taken by 10 pilots that just started: PanDA still says 10 activated."""
    lagging = census_of(labels, **{name: Supply(running=5, started=5) for name in NDGF})
    plans = by_name(plan(labels, activated(**{"NDGF-T1": 10}), lagging, 1, FactoryCaps(), cycle=1))
    assert [plans[name].decision.n for name in NDGF] == [0, 0]
    assert "pending=0 started=5" in plans[NDGF[0]].decision.explain()
    settled = census_of(labels, **{name: Supply(running=5, started=0) for name in NDGF})
    plans = by_name(plan(labels, activated(**{"NDGF-T1": 10}), settled, 1, FactoryCaps(), cycle=1))
    assert sum(plans[name].decision.n for name in NDGF) == 10  # started long ago: new jobs


@pytest.mark.parametrize("chain", ["Ready", "Classic"])
@pytest.mark.parametrize(("pq", "jobs"), [("NDGF-T1", 21), ("CERN", 21), ("CERN", 1), ("CERN", 40)])
def test_a_pq_gets_no_more_pilots_than_jobs_over_cycles(tmp_path, chain, pq, jobs):
    """The jobs stay activated (the pilots wait in the batch queue); cycle after cycle the pilots
    decided for the PQ's CEs add up to its jobs, the remainder going to the CEs in turn."""
    conf = factory_conf(defaults={"nqueue": 5}, queues={pq: {"schedplugin": chain, "nqueue": 50}})
    labels = labels_from(write_factory_conf(tmp_path, conf))
    pending = dict.fromkeys((lb.name for lb in labels), 0)
    for cycle in range(len(labels) + 2):
        census = Census({name: Supply(idle=n) for name, n in pending.items()}, total=sum(pending.values()))
        for p in plan(labels, activated(**{pq: jobs}), census, 1, FactoryCaps(), cycle):
            pending[p.label.name] += p.decision.n
    assert sum(pending.values()) == jobs


# --- the queue's one idle pilot ------------------------------------------------------------------------


def typed_cern(tmp_path):
    conf = factory_conf(defaults={"nqueue": 5, "resourceTypes": "auto"}, queues={"CERN": {}})
    return labels_from(write_factory_conf(tmp_path, conf))


def test_a_queue_without_jobs_keeps_one_idle_pilot_of_its_smallest_type_in_turn(tmp_path):
    labels = typed_cern(tmp_path)  # 13 CEs x 4 types
    idle = census_of(labels)
    for cycle in (0, 1, 14):
        plans = plan(labels, activated(NDGF=1), idle, 1, FactoryCaps(), cycle)
        [kept] = [p for p in plans if p.decision.n]
        assert (kept.decision.n, kept.label.resource_type) == (1, "SCORE")
        scores = sorted(lb.name for lb in labels if lb.resource_type == "SCORE")
        assert kept.label.name == scores[cycle % 13]
    other = next(p for p in plans if p.label.resource_type == "MCORE")
    assert f"the queue's idle pilot is {scores[1]}'s turn" in other.decision.explain()


def test_no_second_idle_pilot_while_one_is_queued_or_the_queue_has_jobs(tmp_path):
    labels = typed_cern(tmp_path)
    queued = census_of(labels, **{labels[5].name: Supply(idle=1)})
    assert sum(p.decision.n for p in plan(labels, activated(NDGF=1), queued, 1, FactoryCaps(), 3)) == 0
    unknown = census_of(labels, **{labels[5].name: None})
    assert sum(p.decision.n for p in plan(labels, activated(NDGF=1), unknown, 1, FactoryCaps(), 3)) == 0
    jobs = {("CERN", "MCORE", "managed", "activated"): 1}
    stats = parse_detailed_stats(ps.envelope(ps.detailed_job_stats(jobs), detailed=True))
    plans = plan(labels, stats, census_of(labels), 1, FactoryCaps(), 0)
    assert [(p.label.resource_type, p.decision.n) for p in plans if p.decision.n] == [("MCORE", 1)]
    score = next(p for p in plans if p.label.resource_type == "SCORE")
    assert "activated=0 pending=0: the queue has 1 job (other labels' share)" in score.decision.explain()
