"""What the labels of a cycle share: a PQ's activated jobs, and the caps that hold across labels.

* :func:`split_activated` shares a PQ's activated jobs between its labels and the factories that
  serve it, so one activated job yields one pilot, not one per CE; :func:`share_jobs` does so
  for the jobs no pilot stands for yet, so that the labels' pilots add up to the jobs;
* :func:`apply_group_caps` cuts a group of labels (a PQ's CRIC limits) to its cap, and
  :func:`apply_factory_caps` all labels to the factory-wide caps, both fairly (:func:`fair_share`),
  each cut a visible step of the labels' decisions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from autopyfactory.domain.model import Decision, Step

# --- sharing demand ----------------------------------------------------------------------------


def split_activated(activated: int, labels: Sequence[str], num_factories: int, cycle: int) -> dict[str, int]:
    """Share one PQ's activated jobs between its labels and the factories serving it.

    The factory's part is ``activated // num_factories`` (rounded down: of two factories serving one
    job, neither sends a job pilot for it, and both still idle with one pilot). That part is split
    evenly between the labels, sorted by name; the remainder goes one job each to consecutive
    labels starting at ``cycle % len(labels)``, so every CE gets it in turn.
    """
    if activated < 0 or num_factories < 1:
        raise ValueError(f"activated={activated} num_factories={num_factories}")
    ordered = sorted(labels)
    if not ordered:
        return {}
    part = activated // num_factories
    base, remainder = divmod(part, len(ordered))
    start = cycle % len(ordered)
    favoured = {ordered[(start + i) % len(ordered)] for i in range(remainder)}
    return {label: base + (1 if label in favoured else 0) for label in ordered}


def share_jobs(jobs: int, covering: Mapping[str, int | None], cycle: int) -> dict[str, int]:
    """This factory's ``jobs`` of a group of labels (a PQ's CEs counting the same jobs) as each
    label's share, such that the pilots decided for the group never outnumber its jobs.

    ``covering`` has each label's pilots that already stand for jobs (pending, and started within
    pandaLag), None when unknown. Each label first keeps the jobs its own pilots stand for (all of
    them if there are enough jobs, else a max-min fair part); the jobs left, which no pilot stands
    for, are split evenly and the remainder goes one job each to consecutive labels starting at
    ``cycle % labels`` (:func:`split_activated`). So a label's share minus its own pilots is its
    part of the uncovered jobs, and those parts add up to ``jobs`` minus the group's pilots: the
    remainder goes to the CEs in turn over cycles, never on top of what the others have.

    A label whose pilots are unknown (its schedd did not answer; it gets no pilots this cycle)
    keeps the even share it would have without pilots, so the others do not take its jobs.
    """
    if jobs < 0:
        raise ValueError(f"jobs={jobs}")
    even = split_activated(jobs, list(covering), 1, cycle)
    unknown = {name: even[name] for name, n in covering.items() if n is None}
    known = {name: n for name, n in covering.items() if n is not None}
    available = jobs - sum(unknown.values())
    own = fair_share(known, available, cycle)
    uncovered = split_activated(available - sum(own.values()), list(known), 1, cycle)
    return unknown | {name: own[name] + uncovered[name] for name in known}


# --- factory-wide caps -------------------------------------------------------------------------


@dataclass(frozen=True)
class FactoryCaps:
    """Factory-wide caps; ``current_pilots`` None means some schedd's count is unknown."""

    max_per_cycle: int | None = None
    max_pilots: int | None = None
    current_pilots: int | None = 0


def apply_factory_caps(
    decisions: Mapping[str, Decision], caps: FactoryCaps, cycle: int
) -> dict[str, Decision]:
    """Cut the labels' requests to the factory-wide caps, fairly (max-min) across labels."""
    result = dict(decisions)
    if caps.max_pilots is not None:
        if caps.current_pilots is None:
            limit, why = 0, f"maxPilots={caps.max_pilots} current=unknown"
        else:
            limit = max(0, caps.max_pilots - caps.current_pilots)
            why = f"maxPilots={caps.max_pilots} current={caps.current_pilots}"
        result = _cap(result, "FactoryMaxPilots", limit, why, cycle)
    if caps.max_per_cycle is not None:
        result = _cap(
            result, "FactoryMaxPerCycle", caps.max_per_cycle, f"maxPerCycle={caps.max_per_cycle}", cycle
        )
    return result


@dataclass(frozen=True)
class GroupCap:
    """A cap shared by some labels (a PQ's CRIC limits): at most ``capacity`` more pilots among
    them this cycle; ``None`` means a count it depends on is unknown, so none."""

    step: str
    labels: tuple[str, ...]
    capacity: int | None
    why: str


def apply_group_caps(
    decisions: Mapping[str, Decision], caps: Sequence[GroupCap], cycle: int
) -> dict[str, Decision]:
    """Cut each group's labels to its cap, fairly (max-min); a step only where a number changes."""
    result = dict(decisions)
    for cap in caps:
        members = [label for label in sorted(set(cap.labels)) if label in result]
        limit = 0 if cap.capacity is None else max(0, cap.capacity)
        wanted = {label: result[label].n for label in members}
        granted = fair_share(wanted, limit, cycle)
        why = f"requested={sum(wanted.values())} {cap.why}"
        for label in members:
            if granted[label] != wanted[label]:
                result[label] = result[label].then(Step(cap.step, wanted[label], granted[label], why))
    return result


def _cap(decisions: dict[str, Decision], name: str, limit: int, why: str, cycle: int) -> dict[str, Decision]:
    wanted = {label: d.n for label, d in decisions.items()}
    granted = fair_share(wanted, limit, cycle)
    requested = sum(wanted.values())
    reason = f"requested={requested} {why}"
    return {label: d.then(Step(name, d.n, granted[label], reason)) for label, d in decisions.items()}


def fair_share(wanted: Mapping[str, int], capacity: int, cycle: int) -> dict[str, int]:
    """Max-min fair split of ``capacity``: no label gets more than it wants, small requests are met
    first, and what cannot be split evenly goes one each to labels in an order rotating with
    ``cycle``."""
    granted = dict.fromkeys(wanted, 0)
    left = max(0, capacity)
    hungry = sorted(label for label, n in wanted.items() if n > 0)
    while left > 0 and hungry:
        each = left // len(hungry)
        if each == 0:
            start = cycle % len(hungry)
            for label in (hungry[start:] + hungry[:start])[:left]:
                granted[label] += 1
            break
        for label in hungry:
            give = min(each, wanted[label] - granted[label])
            granted[label] += give
            left -= give
        hungry = [label for label in hungry if granted[label] < wanted[label]]
    return granted
