"""How many pilots to submit: a pure function of numbers and configuration.

No network, subprocess or clock here. :func:`decide` takes a label's policy settings and its
:class:`Situation` and returns a :class:`~autopyfactory.domain.model.Decision` whose steps explain
every number. What is shared between labels (a PQ's activated jobs, the caps) is ``sharing.py``.

Two step families exist, selected per queue with ``schedplugin`` (applied left to right, each
step gets the previous result): ``Classic`` (APF 1.x) and the APF 2 chain (``Ready``, ``Scale``,
``MaxPerCycle``, ...). Two guards hold whatever the chain says: no data means 0 pilots, and an
offline queue gets 0 pilots unless the chain handles the status itself (``Classic`` or
``StatusOffline``).

The pilots that stand for a label's activated jobs are its pending ones and those that started
within ``pandaLag`` (``Supply.started``): PanDA's ``activated`` is a snapshot refreshed every one
or two minutes, so the jobs these just took are still in it. ``Ready`` and ``Classic`` subtract
both; ``Classic`` also never queues more pilots than there are jobs (docs/policy.md).

**Adding a step** is one edit in this file: a frozen dataclass of its options, each field made
with :func:`option` (config key, default, help; its type is the field's), the step function, and
one :class:`PolicyStep` line in :data:`STEPS`. The registry is the only list of steps: the
configuration schema's policy keys and the reference, ``simulate --set`` and the label's
:class:`PolicySettings` all come from it, and steps are chosen by name from it.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypeVar

from autopyfactory.domain.model import Decision, Demand, QueueStatus, Step, Supply

T = TypeVar("T")
OptionsT = TypeVar("OptionsT")

#: The chain of a queue that names none.
DEFAULT_CHAIN = ("Classic",)
_OPTION = "autopyfactory.option"


@dataclass(frozen=True)
class _Spec:
    key: str
    help: str
    minimum: float | None
    schedconfig: str | None


def option(
    key: str, default: T, help: str, *, minimum: float | None = None, schedconfig: str | None = None
) -> T:
    """A step's option as a dataclass field: its config key, default and help text, the least
    value the configuration accepts, and the CRIC panda-queue field that fills it (if any)."""
    return field(default=default, metadata={_OPTION: _Spec(key, help, minimum, schedconfig)})


@dataclass(frozen=True)
class PolicyOption:
    """One option of a step as the configuration sees it; ``type`` is int, float or int | None."""

    key: str
    type: object
    default: object
    help: str
    step: str
    field: str
    minimum: float | None = None
    schedconfig: str | None = None


@dataclass(frozen=True)
class PolicySettings:
    """A label's policy: the chain of steps (``schedplugin``) and the options of its steps.

    ``options`` holds an options object per step whose options differ from the defaults; a step
    without one uses its defaults. Two settings with the same effect compare equal.
    """

    schedplugin: tuple[str, ...] = DEFAULT_CHAIN
    options: tuple[object, ...] = ()

    def __post_init__(self) -> None:
        kinds = [type(o) for o in self.options]
        if len(set(kinds)) != len(kinds):
            raise ValueError("one options object per step")
        kept = sorted((o for o in self.options if o != type(o)()), key=lambda o: type(o).__name__)
        object.__setattr__(self, "options", tuple(kept))

    def of(self, kind: type[OptionsT]) -> OptionsT:
        """The options of the step whose options class is ``kind``."""
        for found in self.options:
            if isinstance(found, kind):
                return found
        return kind()


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


@dataclass(frozen=True)
class PolicyStep(Generic[OptionsT]):
    """A step registered under ``name``: its function of (the previous result, the situation, its
    options) and its options class; ``handles_offline``: it decides for an offline queue itself
    (without such a step in the chain, the offline guard applies)."""

    name: str
    function: Callable[[int, Known, OptionsT], PluginResult]
    options: type[OptionsT]
    handles_offline: bool = False

    def run(self, n: int, situation: Known, settings: PolicySettings) -> PluginResult:
        return self.function(n, situation, settings.of(self.options))

    def declared(self) -> Iterator[PolicyOption]:
        """The step's options, in the order of its options class."""
        hints = typing.get_type_hints(self.options)
        for f in fields(self.options):  # type: ignore[arg-type]
            spec = f.metadata[_OPTION]
            yield PolicyOption(
                spec.key,
                hints[f.name],
                f.default,
                spec.help,
                self.name,
                f.name,
                spec.minimum,
                spec.schedconfig,
            )


class StepRegistry:
    """The policy steps by name, and the options they declare (config keys unique across steps)."""

    def __init__(self, steps: Sequence[PolicyStep[Any]]) -> None:
        self._steps = {step.name: step for step in steps}
        self._options = tuple(o for step in steps for o in step.declared())
        keys = [o.key.lower() for o in self._options]
        if len(self._steps) != len(steps) or len(set(keys)) != len(keys):
            raise ValueError("policy steps and their option keys must be unique")
        for o in self._options:
            if o.type not in (int, float, int | None):
                raise TypeError(f"{o.step}.{o.field}: an option is an int, a float or int | None")

    def __getitem__(self, name: str) -> PolicyStep[Any]:
        return self._steps[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._steps)

    def options(self) -> tuple[PolicyOption, ...]:
        """Every step's options, step by step in registration order."""
        return self._options

    def handling_offline(self) -> frozenset[str]:
        return frozenset(name for name, step in self._steps.items() if step.handles_offline)

    def settings(self, values: Mapping[str, object]) -> PolicySettings:
        """PolicySettings from config values by key (``schedplugin`` and any step option; the
        others keep their defaults)."""
        chain = values.get("schedplugin", DEFAULT_CHAIN)
        if not isinstance(chain, tuple):
            raise TypeError(f"schedplugin: a tuple of step names, not {chain!r}")
        options: list[object] = []
        for step in self._steps.values():
            given = {
                o.field: values[o.key]
                for o in self._options
                if o.step == step.name and o.key in values and values[o.key] != o.default
            }
            if given:
                options.append(step.options(**given))
        return PolicySettings(tuple(str(name) for name in chain), tuple(options))


# --- Classic (APF 1.x) -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassicOptions:
    nqueue: int = option(
        "nqueue",
        20,
        "Classic: pilots to queue per cycle while jobs are activated (never more pending than jobs).",
        minimum=0,
    )
    depthboost: int = option(
        "depthboost",
        2,
        "Classic: queue up to nqueue x depthboost while activated > pending + started.",
        minimum=1,
        schedconfig="depthboost",
    )
    idlepilotsuppression: int = option(
        "idlepilotsuppression",
        1,
        "Classic: with no activated jobs, queue the idle pilot only every N-th cycle.",
        minimum=1,
    )
    pilotlimit: int | None = option(
        "pilotlimit",
        None,
        "Classic: most pilots of this label in the batch system.",
        minimum=0,
        schedconfig="pilotlimit",
    )
    transferringlimit: int | None = option(
        "transferringlimit",
        None,
        "Classic: no pilots while PanDA counts this many transferring jobs.",
        minimum=0,
        schedconfig="transferringlimit",
    )
    testpilots: int = option(
        "testpilots", 1, "Classic: pilots for a queue in test status with none pending.", minimum=0
    )


def classic(_n: int, s: Known, cfg: ClassicOptions) -> PluginResult:
    """APF 1.x's depth, following the demand: up to ``nqueue`` pilots a cycle while jobs are
    activated, never more pending than there are jobs, one idle pilot queued when there are none.

    Unlike APF 1.x, ``pilotlimit`` is a cap, not only a stop: the result never takes the total
    above it. Also unlike APF 1.x, the depth follows the demand (:func:`_classic_wanted`).
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


def _classic_wanted(s: Known, cfg: ClassicOptions, pending: int, total: int) -> PluginResult:
    """APF 1.x's rule, then the demand's cap: the label's pilots that stand for jobs (pending, and
    started within pandaLag) never outnumber its activated jobs, so neither ``nqueue`` nor
    ``depthboost`` queues a pilot for a job that is not there. Without activated jobs the queue
    keeps one idle pilot queued (not one more every cycle, nor one per CE and resource type: the
    label that keeps it is ``Demand.idle_elsewhere`` == "")."""
    if s.status is QueueStatus.TEST:
        return _classic_test(cfg, pending, total)
    if s.demand.activated > 0:
        return _classic_with_jobs(s, cfg, pending)
    return _classic_idle(s, cfg, pending)


def _classic_test(cfg: ClassicOptions, pending: int, total: int) -> PluginResult:
    if pending > 0:
        return 0, f"status=test pending={pending}"
    if total > cfg.nqueue:
        return 1, f"status=test total={total} nqueue={cfg.nqueue}"
    return cfg.testpilots, f"status=test testpilots={cfg.testpilots}"


def _classic_with_jobs(s: Known, cfg: ClassicOptions, pending: int) -> PluginResult:
    activated, nqueue, started = s.demand.activated, cfg.nqueue, s.supply.started
    facts = f"activated={activated} pending={pending} started={started} nqueue={nqueue}"
    if pending < nqueue:
        wanted = nqueue
    elif activated > pending + started and pending < nqueue * cfg.depthboost:
        wanted, facts = nqueue, f"{facts} depthboost={cfg.depthboost}"
    else:
        return 0, f"{facts} depthboost={cfg.depthboost}"
    room = max(0, activated - started - pending)
    if wanted > room:
        return room, f"{facts}, no more pilots than jobs: activated-started-pending={room}"
    return wanted, facts


def _classic_idle(s: Known, cfg: ClassicOptions, pending: int) -> PluginResult:
    if s.demand.idle_elsewhere:
        return 0, f"activated=0 pending={pending}: {s.demand.idle_elsewhere}"
    facts = f"activated=0 pending={pending} nqueue={cfg.nqueue}"
    if pending >= min(1, cfg.nqueue):
        return 0, f"{facts}, the idle pilot is queued" if cfg.nqueue else facts
    suppression = cfg.idlepilotsuppression
    if suppression > 1 and s.cycle % suppression != 0:
        return 0, f"{facts} idlepilotsuppression={suppression} cycle={s.cycle}"
    return 1, f"{facts} idle pilot"


# --- the APF 2 chain ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadyOptions:
    offset: int = option(
        "sched.ready.offset", 0, "Ready: activated - offset - pending - started (within pandaLag).", minimum=0
    )


def ready(_n: int, s: Known, cfg: ReadyOptions) -> PluginResult:
    """One pilot per activated job not yet covered: by a pending pilot, or by a pilot that started
    within pandaLag (its job is still in PanDA's lagging ``activated``)."""
    activated, supply = s.demand.activated, s.supply
    out = max(0, activated - cfg.offset - supply.covering)
    return out, f"activated={activated} offset={cfg.offset} pending={supply.pending} started={supply.started}"


@dataclass(frozen=True)
class ScaleOptions:
    factor: float = option("sched.scale.factor", 1.0, "Scale: ceil(in x factor).", minimum=0)


def scale(n: int, _s: Known, cfg: ScaleOptions) -> PluginResult:
    return math.ceil(n * cfg.factor), f"factor={cfg.factor:g}"


@dataclass(frozen=True)
class MaxPerCycleOptions:
    maximum: int | None = option(
        "sched.maxpercycle.maximum", None, "MaxPerCycle: min(in, maximum).", minimum=0
    )


def max_per_cycle(n: int, _s: Known, cfg: MaxPerCycleOptions) -> PluginResult:
    if cfg.maximum is None:
        return n, "max=unset"
    return min(n, cfg.maximum), f"max={cfg.maximum}"


@dataclass(frozen=True)
class MinPerCycleOptions:
    minimum: int = option("sched.minpercycle.minimum", 0, "MinPerCycle: max(in, minimum).", minimum=0)


def min_per_cycle(n: int, _s: Known, cfg: MinPerCycleOptions) -> PluginResult:
    return max(n, cfg.minimum), f"min={cfg.minimum}"


@dataclass(frozen=True)
class MaxPendingOptions:
    maximum: int | None = option(
        "sched.maxpending.maximum", None, "MaxPending: min(in, maximum - pending), >= 0.", minimum=0
    )


def max_pending(n: int, s: Known, cfg: MaxPendingOptions) -> PluginResult:
    """Unlike APF 2, the cap also holds when nothing is pending."""
    if cfg.maximum is None:
        return n, "max=unset"
    pending = s.supply.pending
    return max(0, min(n, cfg.maximum - pending)), f"pending={pending} max={cfg.maximum}"


@dataclass(frozen=True)
class MinPendingOptions:
    minimum: int = option("sched.minpending.minimum", 0, "MinPending: max(in, minimum - pending).", minimum=0)


def min_pending(n: int, s: Known, cfg: MinPendingOptions) -> PluginResult:
    pending = s.supply.pending
    return max(n, cfg.minimum - pending), f"pending={pending} min={cfg.minimum}"


@dataclass(frozen=True)
class MaxToRunOptions:
    maximum: int | None = option(
        "sched.maxtorun.maximum", None, "MaxToRun: min(in, maximum - pending - running), >= 0.", minimum=0
    )


def max_to_run(n: int, s: Known, cfg: MaxToRunOptions) -> PluginResult:
    if cfg.maximum is None:
        return n, "max=unset"
    pending, running = s.supply.pending, s.supply.running
    out = max(0, min(n, cfg.maximum - pending - running))
    return out, f"pending={pending} running={running} max={cfg.maximum}"


@dataclass(frozen=True)
class MaxHeldOptions:
    maximum: int | None = option("sched.maxheld.maximum", None, "MaxHeld: 0 when held >= maximum.", minimum=0)


def max_held(n: int, s: Known, cfg: MaxHeldOptions) -> PluginResult:
    if cfg.maximum is None:
        return n, "max=unset"
    held = s.supply.held
    return (0 if held >= cfg.maximum else n), f"held={held} max={cfg.maximum}"


@dataclass(frozen=True)
class StatusTestOptions:
    pilots: int = option(
        "sched.statustest.pilots", 1, "StatusTest: pilots for a queue in test status.", minimum=0
    )


def status_test(n: int, s: Known, cfg: StatusTestOptions) -> PluginResult:
    if s.status is QueueStatus.TEST:
        return cfg.pilots, f"status=test pilots={cfg.pilots}"
    return n, f"status={s.status.value}"


@dataclass(frozen=True)
class StatusOfflineOptions:
    pilots: int = option(
        "sched.statusoffline.pilots", 0, "StatusOffline: pilots for an offline queue.", minimum=0
    )


def status_offline(n: int, s: Known, cfg: StatusOfflineOptions) -> PluginResult:
    if s.status is QueueStatus.OFFLINE:
        return cfg.pilots, f"status=offline pilots={cfg.pilots}"
    return n, f"status={s.status.value}"


@dataclass(frozen=True)
class FixedOptions:
    pilots: int = option("sched.fixed.pilots", 0, "Fixed: always this many.", minimum=0)


def fixed(_n: int, _s: Known, cfg: FixedOptions) -> PluginResult:
    return cfg.pilots, f"pilots={cfg.pilots}"


#: Every policy step, in the order the configuration reference lists them.
STEPS = StepRegistry(
    (
        PolicyStep("Classic", classic, ClassicOptions, handles_offline=True),
        PolicyStep("Ready", ready, ReadyOptions),
        PolicyStep("Scale", scale, ScaleOptions),
        PolicyStep("MaxPerCycle", max_per_cycle, MaxPerCycleOptions),
        PolicyStep("MinPerCycle", min_per_cycle, MinPerCycleOptions),
        PolicyStep("MaxPending", max_pending, MaxPendingOptions),
        PolicyStep("MinPending", min_pending, MinPendingOptions),
        PolicyStep("MaxToRun", max_to_run, MaxToRunOptions),
        PolicyStep("MaxHeld", max_held, MaxHeldOptions),
        PolicyStep("StatusTest", status_test, StatusTestOptions),
        PolicyStep("StatusOffline", status_offline, StatusOfflineOptions, handles_offline=True),
        PolicyStep("Fixed", fixed, FixedOptions),
    )
)

#: Steps that decide for an offline queue themselves; without one, the offline guard applies.
STATUS_AWARE = STEPS.handling_offline()


# --- the decision ------------------------------------------------------------------------------


def decide(cfg: PolicySettings, situation: Situation) -> Decision:
    """The number of pilots for one label, with one step per plugin and per guard."""
    unknown = _missing_data(situation)
    if unknown:
        return Decision(0, (Step("NoData", 0, 0, unknown),))
    known = Known(situation.status, situation.demand, situation.supply, situation.cycle)  # type: ignore[arg-type]
    decision = Decision(0, ())
    for name in cfg.schedplugin:
        out, reason = STEPS[name].run(decision.n, known, cfg)
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
