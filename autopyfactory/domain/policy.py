"""How many pilots to submit: a pure function of numbers and configuration.

No network, subprocess or clock here. :func:`decide` takes a label's policy settings and its
:class:`Situation` and returns a :class:`~autopyfactory.model.Decision` whose steps explain every
number. Around it:

* :func:`split_activated` shares a PQ's activated jobs between its labels and the factories that
  serve it, so one activated job yields one pilot, not one per CE;
* :func:`apply_factory_caps` applies the factory-wide caps fairly across labels.

Two plugin families exist, selected per queue with ``schedplugin`` (applied left to right, each
step gets the previous result): ``Classic`` (APF 1.x) and the APF 2 chain (``Ready``, ``Scale``,
``MaxPerCycle``, ...). Two guards hold whatever the chain says: no data means 0 pilots, and an
offline queue gets 0 pilots unless the chain handles the status itself (``Classic`` or
``StatusOffline``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from autopyfactory.domain.model import Decision, Demand, QueueStatus, Step, Supply


@dataclass(frozen=True)
class PolicySettings:
    """A label's policy configuration; field names follow the config keys (see config_schema)."""

    schedplugin: tuple[str, ...] = ("Classic",)
    # Classic (APF 1.x)
    nqueue: int = 20
    depthboost: int = 2
    idlepilotsuppression: int = 1
    pilotlimit: int | None = None
    transferringlimit: int | None = None
    testpilots: int = 1
    # APF 2 chain
    ready_offset: int = 0
    scale_factor: float = 1.0
    maxpercycle: int | None = None
    minpercycle: int = 0
    maxpending: int | None = None
    minpending: int = 0
    maxtorun: int | None = None
    maxheld: int | None = None
    statustest_pilots: int = 1
    statusoffline_pilots: int = 0
    fixed_pilots: int = 0


@dataclass(frozen=True)
class Situation:
    """What the factory knows about one label this cycle. ``None`` means unknown (failed or stale)."""

    status: QueueStatus
    demand: Demand | None
    supply: Supply | None
    cycle: int = 0

    def __post_init__(self) -> None:
        if self.cycle < 0:
            raise ValueError(f"cycle must not be negative, got {self.cycle}")


@dataclass(frozen=True)
class Known:
    """The situation once the no-data guard has passed: both views are present."""

    status: QueueStatus
    demand: Demand
    supply: Supply
    cycle: int


PluginResult = tuple[int, str]
Plugin = Callable[[int, Known, PolicySettings], PluginResult]


# --- Classic (APF 1.x) -------------------------------------------------------------------------


def classic(_n: int, s: Known, cfg: PolicySettings) -> PluginResult:
    """APF 1.x: keep ``nqueue`` pilots queued while jobs are activated, idle with one otherwise.

    Unlike APF 1.x, ``pilotlimit`` is a cap, not only a stop: the result never takes the total
    above it.
    """
    pending, total = s.supply.pending, s.supply.all
    if s.status is QueueStatus.OFFLINE:
        return 0, "status=offline"
    if cfg.pilotlimit is not None and total >= cfg.pilotlimit:
        return 0, f"total={total} pilotlimit={cfg.pilotlimit}"
    if cfg.transferringlimit is not None and s.demand.transferring >= cfg.transferringlimit:
        return 0, f"transferring={s.demand.transferring} transferringlimit={cfg.transferringlimit}"
    n, why = _classic_wanted(s, cfg, pending, total)
    if cfg.pilotlimit is not None and n > cfg.pilotlimit - total:
        return cfg.pilotlimit - total, f"{why}, capped by pilotlimit={cfg.pilotlimit} total={total}"
    return n, why


def _classic_wanted(s: Known, cfg: PolicySettings, pending: int, total: int) -> PluginResult:
    activated, nqueue = s.demand.activated, cfg.nqueue
    if s.status is QueueStatus.TEST:
        if pending > 0:
            return 0, f"status=test pending={pending}"
        if total > nqueue:
            return 1, f"status=test total={total} nqueue={nqueue}"
        return cfg.testpilots, f"status=test testpilots={cfg.testpilots}"
    if activated > 0:
        facts = f"activated={activated} pending={pending} nqueue={nqueue}"
        if pending < nqueue:
            return nqueue, facts
        if activated > pending and pending < nqueue * cfg.depthboost:
            return nqueue, f"{facts} depthboost={cfg.depthboost}"
        return 0, f"{facts} depthboost={cfg.depthboost}"
    facts = f"activated=0 pending={pending} nqueue={nqueue}"
    suppression = cfg.idlepilotsuppression
    if pending >= nqueue:
        return 0, facts
    if suppression > 1 and s.cycle % suppression != 0:
        return 0, f"{facts} idlepilotsuppression={suppression} cycle={s.cycle}"
    return 1, f"{facts} idle pilot"


# --- the APF 2 chain ---------------------------------------------------------------------------


def ready(_n: int, s: Known, cfg: PolicySettings) -> PluginResult:
    out = max(0, s.demand.activated - cfg.ready_offset - s.supply.pending)
    return out, f"activated={s.demand.activated} offset={cfg.ready_offset} pending={s.supply.pending}"


def scale(n: int, _s: Known, cfg: PolicySettings) -> PluginResult:
    return math.ceil(n * cfg.scale_factor), f"factor={cfg.scale_factor:g}"


def max_per_cycle(n: int, _s: Known, cfg: PolicySettings) -> PluginResult:
    if cfg.maxpercycle is None:
        return n, "max=unset"
    return min(n, cfg.maxpercycle), f"max={cfg.maxpercycle}"


def min_per_cycle(n: int, _s: Known, cfg: PolicySettings) -> PluginResult:
    return max(n, cfg.minpercycle), f"min={cfg.minpercycle}"


def max_pending(n: int, s: Known, cfg: PolicySettings) -> PluginResult:
    """Unlike APF 2, the cap also holds when nothing is pending."""
    if cfg.maxpending is None:
        return n, "max=unset"
    pending = s.supply.pending
    return max(0, min(n, cfg.maxpending - pending)), f"pending={pending} max={cfg.maxpending}"


def min_pending(n: int, s: Known, cfg: PolicySettings) -> PluginResult:
    pending = s.supply.pending
    return max(n, cfg.minpending - pending), f"pending={pending} min={cfg.minpending}"


def max_to_run(n: int, s: Known, cfg: PolicySettings) -> PluginResult:
    if cfg.maxtorun is None:
        return n, "max=unset"
    pending, running = s.supply.pending, s.supply.running
    out = max(0, min(n, cfg.maxtorun - pending - running))
    return out, f"pending={pending} running={running} max={cfg.maxtorun}"


def max_held(n: int, s: Known, cfg: PolicySettings) -> PluginResult:
    if cfg.maxheld is None:
        return n, "max=unset"
    held = s.supply.held
    return (0 if held >= cfg.maxheld else n), f"held={held} max={cfg.maxheld}"


def status_test(n: int, s: Known, cfg: PolicySettings) -> PluginResult:
    if s.status is QueueStatus.TEST:
        return cfg.statustest_pilots, f"status=test pilots={cfg.statustest_pilots}"
    return n, f"status={s.status.value}"


def status_offline(n: int, s: Known, cfg: PolicySettings) -> PluginResult:
    if s.status is QueueStatus.OFFLINE:
        return cfg.statusoffline_pilots, f"status=offline pilots={cfg.statusoffline_pilots}"
    return n, f"status={s.status.value}"


def fixed(_n: int, _s: Known, cfg: PolicySettings) -> PluginResult:
    return cfg.fixed_pilots, f"pilots={cfg.fixed_pilots}"


PLUGINS: Mapping[str, Plugin] = {
    "Classic": classic,
    "Ready": ready,
    "Scale": scale,
    "MaxPerCycle": max_per_cycle,
    "MinPerCycle": min_per_cycle,
    "MaxPending": max_pending,
    "MinPending": min_pending,
    "MaxToRun": max_to_run,
    "MaxHeld": max_held,
    "StatusTest": status_test,
    "StatusOffline": status_offline,
    "Fixed": fixed,
}

#: Plugins that decide for an offline queue themselves; without one, the offline guard applies.
STATUS_AWARE = frozenset({"Classic", "StatusOffline"})


# --- the decision ------------------------------------------------------------------------------


def decide(cfg: PolicySettings, situation: Situation) -> Decision:
    """The number of pilots for one label, with one step per plugin and per guard."""
    unknown = _missing_data(situation)
    if unknown:
        return Decision(0, (Step("NoData", 0, 0, unknown),))
    known = Known(situation.status, situation.demand, situation.supply, situation.cycle)  # type: ignore[arg-type]
    decision = Decision(0, ())
    for name in cfg.schedplugin:
        out, reason = PLUGINS[name](decision.n, known, cfg)
        decision = decision.then(Step(name, decision.n, max(0, out), reason))
    if known.status is QueueStatus.OFFLINE and not STATUS_AWARE.intersection(cfg.schedplugin):
        decision = decision.then(Step("Offline", decision.n, 0, "status=offline"))
    return decision


def _missing_data(s: Situation) -> str:
    missing = []
    if s.demand is None:
        missing.append("no PanDA data this cycle")
    if s.supply is None:
        missing.append("pilot counts unknown or stale")
    return ", ".join(missing)


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


def with_plugins(cfg: PolicySettings, names: Sequence[str]) -> PolicySettings:
    """A copy of ``cfg`` with another plugin chain (used by ``simulate --schedplugin``)."""
    return replace(cfg, schedplugin=tuple(names))
