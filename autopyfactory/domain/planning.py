"""The decision for every label of a cycle: its share of PanDA's jobs, the policy, the caps.

A pure function of numbers and configuration (no network, subprocess or clock): :func:`plan`
joins the policy (policy.py) with the PanDA shares, the PQs' CRIC caps and the factory-wide caps
(sharing.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from autopyfactory.domain.demand import JobStats, PandaError
from autopyfactory.domain.label import Label
from autopyfactory.domain.model import Census, Decision, Demand, Step, Supply, plural
from autopyfactory.domain.policy import Situation, decide
from autopyfactory.domain.sharing import (
    FactoryCaps,
    GroupCap,
    apply_factory_caps,
    apply_group_caps,
    share_jobs,
)


@dataclass(frozen=True)
class LabelPlan:
    """One label's inputs and decision for this cycle."""

    label: Label
    pq_activated: int | None  # the whole PQ's activated jobs (None = unknown)
    demand: Demand | None  # this label's share
    supply: Supply | None
    decision: Decision


def plan(
    labels: Sequence[Label],
    stats: JobStats | None,
    census: Census,
    num_factories: int,
    caps: FactoryCaps,
    cycle: int,
    blocked: Mapping[str, str] | None = None,
    disabled: Mapping[str, str] | None = None,
) -> list[LabelPlan]:
    """Every label's decision for this cycle, with PanDA shares and factory-wide caps applied.

    ``blocked`` maps labels that must get nothing (a credential about to expire) to the reason,
    ``disabled`` those an operator disabled (``autopyfactory queue disable``); both drop out
    before the factory-wide caps are shared.
    """
    shares = _with_idle_pilot(labels, _shares(labels, stats, census, num_factories, cycle), census, cycle)
    plans: dict[str, LabelPlan] = {}
    for label in labels:
        demand = shares.get(label.name)
        supply = census.supply.get(label.name)
        decision = decide(label.policy, Situation(label.status, demand, supply, cycle))
        if disabled and label.name in disabled:
            decision = decision.then(Step("Disabled", decision.n, 0, disabled[label.name]))
        if blocked and label.name in blocked:
            decision = decision.then(Step("Credentials", decision.n, 0, blocked[label.name]))
        pq_activated = None if stats is None else _activated(stats, label.pq)
        plans[label.name] = LabelPlan(label, pq_activated, demand, supply, decision)
    limited = apply_group_caps(
        {name: p.decision for name, p in plans.items()}, queue_caps(labels, census), cycle
    )
    capped = apply_factory_caps(limited, caps, cycle)
    return [LabelPlan(p.label, p.pq_activated, p.demand, p.supply, capped[name]) for name, p in plans.items()]


def _activated(stats: JobStats, pq: str) -> int:
    site = stats.get(pq)
    return site.activated if site else 0  # PanDA lists only sites with jobs: absent means none


def _shares(
    labels: Sequence[Label], stats: JobStats | None, census: Census, num_factories: int, cycle: int
) -> dict[str, Demand]:
    """Each label's share of its demand: the activated jobs of its (PQ, resource type, job labels),
    this factory's part of them (``// num_factories``) shared between the labels counting the same
    jobs so that their pilots add up to the jobs (:func:`~autopyfactory.domain.sharing.share_jobs`)."""
    if stats is None:
        return {}
    groups: dict[tuple[str, str | None, tuple[str, ...]], list[str]] = {}
    for label in labels:
        groups.setdefault((label.pq, label.resource_type, label.job_labels), []).append(label.name)
    shares: dict[str, Demand] = {}
    for (pq, rt, job_labels), names in groups.items():
        site = stats.get(pq)
        try:
            jobs = site.count("activated", rt, job_labels) if site else 0
        except PandaError:  # restricted counts without the detailed answer: no data, no pilots
            continue
        part = jobs // num_factories
        covering = {name: _covering(census.supply.get(name)) for name in names}
        activated = share_jobs(part, covering, cycle)
        transferring = site.transferring if site else 0  # a PQ-wide limit: every label sees the whole count
        shares.update({name: Demand(n, transferring) for name, n in activated.items()})
    return shares


#: Resource types from the smallest pilot up: a queue's idle pilot is one of its smallest.
_TYPE_ORDER = (None, "SCORE", "SCORE_HIMEM", "MCORE", "MCORE_HIMEM")


def _with_idle_pilot(
    labels: Sequence[Label], shares: Mapping[str, Demand], census: Census, cycle: int
) -> dict[str, Demand]:
    """The shares, each with who keeps its queue's idle pilot (``Demand.idle_elsewhere``).

    A queue (the labels of one PQ asking for the same jobs: its CEs and resource types) keeps one
    idle pilot while it has no jobs, not one per label: each one that starts finds no job. It is
    kept by one label of the smallest resource type, in turn by cycle, and only while no other
    label of the queue has a pilot pending (or an unknown count). While the queue has jobs, none.
    """
    queues: dict[tuple[str, tuple[str, ...]], list[Label]] = {}
    for label in labels:
        if label.name in shares:
            queues.setdefault((label.pq, label.job_labels), []).append(label)
    out = dict(shares)
    for members in queues.values():
        why = _idle_elsewhere(members, shares, census, cycle)
        out.update({name: replace(shares[name], idle_elsewhere=text) for name, text in why.items()})
    return out


def _idle_elsewhere(
    members: Sequence[Label], shares: Mapping[str, Demand], census: Census, cycle: int
) -> dict[str, str]:
    jobs = sum(shares[label.name].activated for label in members)
    if jobs:
        return {label.name: f"the queue has {plural(jobs, 'job')} (other labels' share)" for label in members}
    rank = {label.name: _rank(label.resource_type) for label in members}
    turn = sorted(name for name in rank if rank[name] == min(rank.values()))
    keeper = turn[cycle % len(turn)]
    why = {label.name: f"the queue's idle pilot is {keeper}'s turn" for label in members}
    pending = [name for name in rank if name != keeper and _may_be_pending(census.supply.get(name))]
    why[keeper] = f"the queue's idle pilot is queued at {pending[0]}" if pending else ""
    return why


def _rank(resource_type: str | None) -> int:
    return _TYPE_ORDER.index(resource_type) if resource_type in _TYPE_ORDER else len(_TYPE_ORDER)


def _may_be_pending(supply: Supply | None) -> bool:
    return supply is None or supply.pending > 0


def _covering(supply: Supply | None) -> int | None:
    return None if supply is None else supply.covering


def queue_caps(labels: Sequence[Label], census: Census) -> list[GroupCap]:
    """The PQs' CRIC caps (QueueLimits) as group caps over their labels, with current counts."""
    by_pq: dict[str, list[Label]] = {}
    for label in labels:
        by_pq.setdefault(label.pq, []).append(label)
    caps: list[GroupCap] = []
    for pq, members in sorted(by_pq.items()):
        limits = members[0].limits
        for rt, limit in sorted(limits.resource_type_limits.items()):
            typed = tuple(label.name for label in members if label.resource_type == rt)
            if typed:
                pilots = _sum_supply(typed, census, lambda s: s.all)
                capacity = None if pilots is None else limit - pilots
                caps.append(
                    GroupCap(
                        "ResourceTypeLimit",
                        typed,
                        capacity,
                        f"{pq} {rt} limit={limit} pilots={_shown(pilots)}",
                    )
                )
        names = tuple(label.name for label in members)
        if limits.queue_limit is not None:
            pending = _sum_supply(names, census, lambda s: s.pending)
            capacity = None if pending is None else limits.queue_limit - pending
            caps.append(
                GroupCap(
                    "QueueLimitWorker",
                    names,
                    capacity,
                    f"{pq} nQueueLimitWorker={limits.queue_limit} pending={_shown(pending)}",
                )
            )
        if limits.max_new_per_cycle is not None:
            caps.append(
                GroupCap(
                    "MaxNewWorkersPerCycle",
                    names,
                    limits.max_new_per_cycle,
                    f"{pq} maxNewWorkersPerCycle={limits.max_new_per_cycle}",
                )
            )
    return caps


def _shown(count: int | None) -> str:
    return "unknown" if count is None else str(count)


def _sum_supply(names: Sequence[str], census: Census, count: Callable[[Supply], int]) -> int | None:
    total = 0
    for name in names:
        supply = census.supply.get(name)
        if supply is None:
            return None
        total += count(supply)
    return total
