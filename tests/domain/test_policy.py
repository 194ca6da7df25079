"""The policy: tables for every plugin and for Classic, the issue's worked example, and properties."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopyfactory.domain.model import Decision, Demand, QueueStatus, Step, Supply
from autopyfactory.domain.policy import (
    STATUS_AWARE,
    STEPS,
    ClassicOptions,
    FixedOptions,
    MaxHeldOptions,
    MaxPendingOptions,
    MaxPerCycleOptions,
    MaxToRunOptions,
    MinPendingOptions,
    MinPerCycleOptions,
    PolicySettings,
    ReadyOptions,
    ScaleOptions,
    Situation,
    StatusOfflineOptions,
    StatusTestOptions,
    decide,
)
from autopyfactory.domain.sharing import split_activated

ONLINE, TEST, OFFLINE, BROKEROFF = (
    QueueStatus.ONLINE,
    QueueStatus.TEST,
    QueueStatus.OFFLINE,
    QueueStatus.BROKEROFF,
)


def situation(activated=0, idle=0, held=0, running=0, total=None, transferring=0, status=ONLINE, cycle=0):
    return Situation(status, Demand(activated, transferring), Supply(idle, running, held, total), cycle)


def chain(*names: str, options: Sequence[object] = ()) -> PolicySettings:
    return PolicySettings(schedplugin=names, options=tuple(options))


# --- the issue's worked example ------------------------------------------------------------------


def test_worked_example_from_the_issue():
    cfg = chain(
        "Ready",
        "Scale",
        "MaxPerCycle",
        "MinPerCycle",
        "StatusTest",
        "StatusOffline",
        "MaxPending",
        options=[
            ReadyOptions(offset=4),
            ScaleOptions(factor=0.5),
            MaxPerCycleOptions(maximum=100),
            MinPerCycleOptions(minimum=0),
            MaxPendingOptions(maximum=25),
        ],
    )
    decision = decide(cfg, situation(activated=100, idle=10))
    assert [s.out for s in decision.steps] == [86, 43, 43, 43, 43, 43, 15]
    assert decision.n == 15
    assert decision.steps[-1].render() == "MaxPending: in=43 pending=10 max=25 -> 15"


# --- Classic (APF 1.x) ---------------------------------------------------------------------------

CLASSIC = [
    # (description, situation kwargs, step options, expected)
    ("offline", dict(activated=100, status=OFFLINE), [], 0),
    ("activated, nothing pending: nqueue", dict(activated=5), [], 20),
    ("activated, pending below nqueue", dict(activated=5, idle=19), [], 20),
    ("activated > pending, pending < nqueue*depthboost", dict(activated=100, idle=25), [], 20),
    ("activated <= pending", dict(activated=25, idle=25), [], 0),
    ("pending at nqueue*depthboost", dict(activated=100, idle=40), [], 0),
    ("held counts as pending", dict(activated=100, idle=20, held=20), [], 0),
    ("no activated: idle pilot", dict(activated=0, idle=3), [], 1),
    ("no activated, pending >= nqueue", dict(activated=0, idle=20), [], 0),
    (
        "idle pilot suppressed off-cycle",
        dict(activated=0, cycle=3),
        [ClassicOptions(idlepilotsuppression=4)],
        0,
    ),
    ("idle pilot on the cycle", dict(activated=0, cycle=8), [ClassicOptions(idlepilotsuppression=4)], 1),
    ("pilotlimit reached", dict(activated=100, running=50), [ClassicOptions(pilotlimit=50)], 0),
    ("pilotlimit caps the submission", dict(activated=100, running=45), [ClassicOptions(pilotlimit=50)], 5),
    (
        "transferringlimit reached",
        dict(activated=100, transferring=30),
        [ClassicOptions(transferringlimit=30)],
        0,
    ),
    (
        "transferring below limit",
        dict(activated=100, transferring=29),
        [ClassicOptions(transferringlimit=30)],
        20,
    ),
    ("test: something pending", dict(activated=100, idle=1, status=TEST), [], 0),
    ("test: many pilots", dict(activated=100, running=21, status=TEST), [], 1),
    ("test: testpilots", dict(activated=0, status=TEST), [ClassicOptions(testpilots=3)], 3),
    ("brokeroff behaves as online", dict(activated=5, status=BROKEROFF), [], 20),
    ("zeros everywhere", dict(), [ClassicOptions(nqueue=0)], 0),
]


@pytest.mark.parametrize(("what", "sit", "cfg", "expected"), CLASSIC, ids=[c[0] for c in CLASSIC])
def test_classic(what, sit, cfg, expected):
    decision = decide(PolicySettings(options=tuple(cfg)), situation(**sit))
    assert decision.n == expected
    assert [s.plugin for s in decision.steps] == ["Classic"]


# --- the APF 2 plugins, one at a time ----------------------------------------------------------

PLUGIN_TABLE = [
    # (plugin chain, situation kwargs, step options, expected n)
    (("Ready",), dict(activated=10, idle=3), [ReadyOptions(offset=2)], 5),
    (("Ready",), dict(activated=3, idle=3), [], 0),
    (("Ready",), dict(activated=1, idle=5), [], 0),
    (("Ready",), dict(activated=10, held=4), [], 6),
    (("Fixed", "Scale"), {}, [FixedOptions(pilots=7), ScaleOptions(factor=0.5)], 4),
    (("Fixed", "Scale"), {}, [FixedOptions(pilots=7), ScaleOptions(factor=0.0)], 0),
    (("Fixed", "Scale"), {}, [FixedOptions(pilots=3), ScaleOptions(factor=2.5)], 8),
    (("Fixed", "MaxPerCycle"), {}, [FixedOptions(pilots=30), MaxPerCycleOptions(maximum=10)], 10),
    (("Fixed", "MaxPerCycle"), {}, [FixedOptions(pilots=30)], 30),
    (("Fixed", "MinPerCycle"), {}, [FixedOptions(pilots=1), MinPerCycleOptions(minimum=5)], 5),
    (("Fixed", "MinPerCycle"), {}, [FixedOptions(pilots=9), MinPerCycleOptions(minimum=5)], 9),
    (("Fixed", "MaxPending"), dict(idle=5), [FixedOptions(pilots=30), MaxPendingOptions(maximum=25)], 20),
    (("Fixed", "MaxPending"), dict(idle=30), [FixedOptions(pilots=30), MaxPendingOptions(maximum=25)], 0),
    (
        ("Fixed", "MaxPending"),
        {},
        [FixedOptions(pilots=30), MaxPendingOptions(maximum=25)],
        25,
    ),  # also with nothing pending
    (("Fixed", "MinPending"), dict(idle=2), [MinPendingOptions(minimum=5)], 3),
    (("Fixed", "MinPending"), dict(idle=9), [FixedOptions(pilots=1), MinPendingOptions(minimum=5)], 1),
    (
        ("Fixed", "MaxToRun"),
        dict(idle=5, running=10),
        [FixedOptions(pilots=30), MaxToRunOptions(maximum=20)],
        5,
    ),
    (
        ("Fixed", "MaxToRun"),
        dict(idle=5, running=30),
        [FixedOptions(pilots=30), MaxToRunOptions(maximum=20)],
        0,
    ),
    (("Fixed", "MaxHeld"), dict(held=3), [FixedOptions(pilots=30), MaxHeldOptions(maximum=3)], 0),
    (("Fixed", "MaxHeld"), dict(held=2), [FixedOptions(pilots=30), MaxHeldOptions(maximum=3)], 30),
    (("Fixed", "StatusTest"), dict(status=TEST), [FixedOptions(pilots=30), StatusTestOptions(pilots=2)], 2),
    (
        ("Fixed", "StatusTest"),
        dict(status=ONLINE),
        [FixedOptions(pilots=30), StatusTestOptions(pilots=2)],
        30,
    ),
    (("Fixed", "StatusOffline"), dict(status=OFFLINE), [FixedOptions(pilots=30)], 0),
    (
        ("Fixed", "StatusOffline"),
        dict(status=OFFLINE),
        [FixedOptions(pilots=30), StatusOfflineOptions(pilots=1)],
        1,
    ),
    (("Fixed", "StatusOffline"), dict(status=BROKEROFF), [FixedOptions(pilots=30)], 30),
    (("Fixed",), dict(status=OFFLINE), [FixedOptions(pilots=30)], 0),  # the offline guard
    (("Fixed",), {}, [FixedOptions(pilots=4)], 4),
]


@pytest.mark.parametrize(("names", "sit", "cfg", "expected"), PLUGIN_TABLE)
def test_plugin_table(names, sit, cfg, expected):
    decision = decide(chain(*names, options=cfg), situation(**sit))
    assert decision.n == expected
    for before, after in zip(decision.steps, decision.steps[1:], strict=False):
        assert after.inp == before.out


def test_every_plugin_is_in_the_table():
    tabled = {name for names, *_ in PLUGIN_TABLE for name in names} | {"Classic"}
    assert tabled == set(STEPS.names())


# --- the registry ---------------------------------------------------------------------------------


def test_settings_from_config_values_keep_only_what_differs_from_the_defaults():
    values = {"schedplugin": ("Ready", "MaxPending"), "nqueue": 20, "sched.maxpending.maximum": 25}
    cfg = STEPS.settings(values)
    assert cfg == PolicySettings(("Ready", "MaxPending"), (MaxPendingOptions(maximum=25),))
    assert cfg.of(MaxPendingOptions).maximum == 25
    assert cfg.of(ClassicOptions) == ClassicOptions()  # a step without options has its defaults
    assert STEPS.settings({}) == PolicySettings()


def test_one_options_object_per_step():
    with pytest.raises(ValueError, match="one options object per step"):
        PolicySettings(options=(FixedOptions(pilots=1), FixedOptions(pilots=2)))


def test_a_step_declares_its_options_once():
    keys = [o.key for o in STEPS.options()]
    assert len(keys) == len(set(keys))
    fixed = next(o for o in STEPS.options() if o.key == "sched.fixed.pilots")
    assert (fixed.step, fixed.field, fixed.type, fixed.default) == ("Fixed", "pilots", int, 0)
    pilotlimit = next(o for o in STEPS.options() if o.key == "pilotlimit")
    assert (pilotlimit.type, pilotlimit.schedconfig, pilotlimit.minimum) == (int | None, "pilotlimit", 0)


def test_offline_guard_is_a_visible_step():
    decision = decide(chain("Fixed", options=[FixedOptions(pilots=5)]), situation(status=OFFLINE))
    assert decision.steps[-1] == Step("Offline", 5, 0, "status=offline")


# --- missing data ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("demand", "supply", "reason"),
    [
        (None, Supply(), "no PanDA data this cycle"),
        (Demand(5), None, "pilot counts unknown or stale"),
        (None, None, "no PanDA data this cycle, pilot counts unknown or stale"),
    ],
)
@pytest.mark.parametrize("names", [("Classic",), ("Fixed", "MinPerCycle"), ("MinPending",)])
def test_missing_data_gives_zero_whatever_the_chain(demand, supply, reason, names):
    cfg = chain(
        *names,
        options=[FixedOptions(pilots=10), MinPerCycleOptions(minimum=10), MinPendingOptions(minimum=10)],
    )
    decision = decide(cfg, Situation(ONLINE, demand, supply))
    assert decision == Decision(0, (Step("NoData", 0, 0, reason),))


# --- input validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Demand(-1), "activated must not be negative, got -1"),
        (lambda: Demand(1, -1), "transferring must not be negative, got -1"),
        (lambda: Supply(idle=-1), "idle must not be negative, got -1"),
        (lambda: Supply(running=-2), "running must not be negative, got -2"),
        (lambda: Supply(held=-3), "held must not be negative, got -3"),
        (lambda: Supply(idle=5, total=4), r"total=4 is less than idle\+running\+held=5"),
        (lambda: Situation(ONLINE, Demand(1), Supply(), cycle=-1), "cycle must not be negative, got -1"),
        (lambda: split_activated(-1, ["a"], 1, 0), "activated=-1 num_factories=1"),
        (lambda: split_activated(1, ["a"], 0, 0), "activated=1 num_factories=0"),
    ],
)
def test_negative_or_inconsistent_inputs_are_rejected(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_supply_total_defaults_to_the_sum_and_pending_is_idle_plus_held():
    supply = Supply(idle=2, running=3, held=4)
    assert supply.all == 9
    assert supply.pending == 6


def test_standby_and_maintenance_count_as_offline():
    assert QueueStatus.from_schedconfig("standby") is OFFLINE
    assert QueueStatus.from_schedconfig("Maintenance") is OFFLINE
    with pytest.raises(ValueError, match="unknown queue status 'paused'"):
        QueueStatus.from_schedconfig("paused")


def test_explain_joins_the_rendered_steps():
    decision = decide(
        chain("Fixed", "MaxPerCycle", options=[FixedOptions(pilots=9), MaxPerCycleOptions(maximum=4)]),
        situation(),
    )
    assert decision.explain() == "Fixed: in=0 pilots=9 -> 9; MaxPerCycle: in=9 max=4 -> 4"


# --- properties of decide ------------------------------------------------------------------------

counts = st.integers(0, 5000)
optional_caps = st.none() | st.integers(0, 500)
statuses = st.sampled_from(list(QueueStatus))
plugin_chains = st.lists(st.sampled_from(sorted(STEPS.names())), min_size=1, max_size=8)


@st.composite
def policy_settings(draw, names=plugin_chains):
    return PolicySettings(
        schedplugin=tuple(draw(names)),
        options=(
            ClassicOptions(
                nqueue=draw(st.integers(0, 100)),
                depthboost=draw(st.integers(1, 5)),
                idlepilotsuppression=draw(st.integers(1, 10)),
                pilotlimit=draw(optional_caps),
                transferringlimit=draw(optional_caps),
                testpilots=draw(st.integers(0, 5)),
            ),
            ReadyOptions(offset=draw(st.integers(0, 100))),
            ScaleOptions(factor=draw(st.floats(0, 10, allow_nan=False))),
            MaxPerCycleOptions(maximum=draw(optional_caps)),
            MinPerCycleOptions(minimum=draw(st.integers(0, 50))),
            MaxPendingOptions(maximum=draw(optional_caps)),
            MinPendingOptions(minimum=draw(st.integers(0, 50))),
            MaxToRunOptions(maximum=draw(optional_caps)),
            MaxHeldOptions(maximum=draw(optional_caps)),
            StatusTestOptions(pilots=draw(st.integers(0, 5))),
            StatusOfflineOptions(pilots=draw(st.integers(0, 5))),
            FixedOptions(pilots=draw(st.integers(0, 1000))),
        ),
    )


@st.composite
def situations(draw):
    idle, running, held = draw(counts), draw(counts), draw(counts)
    return Situation(
        draw(statuses),
        Demand(draw(counts), draw(counts)),
        Supply(idle, running, held, idle + running + held + draw(st.integers(0, 50))),
        draw(st.integers(0, 10**6)),
    )


@settings(max_examples=300)
@given(cfg=policy_settings(), s=situations())
def test_never_negative_and_steps_chain(cfg, s):
    decision = decide(cfg, s)
    assert decision.n >= 0
    assert decision.n == decision.steps[-1].out
    assert all(step.out >= 0 for step in decision.steps)
    for before, after in zip(decision.steps, decision.steps[1:], strict=False):
        assert after.inp == before.out


@settings(max_examples=300)
@given(
    cfg=policy_settings(),
    s=situations(),
    cap=st.sampled_from(["MaxPending", "MaxToRun", "MaxPerCycle", "MaxHeld"]),
)
def test_a_cap_at_the_end_of_the_chain_always_holds(cfg, s, cap):
    cfg = replace(cfg, schedplugin=(*cfg.schedplugin, cap))
    n = decide(cfg, s).n
    pending, running, held = s.supply.pending, s.supply.running, s.supply.held
    maxpending, maxtorun = cfg.of(MaxPendingOptions).maximum, cfg.of(MaxToRunOptions).maximum
    maxpercycle, maxheld = cfg.of(MaxPerCycleOptions).maximum, cfg.of(MaxHeldOptions).maximum
    if cap == "MaxPending" and maxpending is not None:
        assert n <= max(0, maxpending - pending)
    if cap == "MaxToRun" and maxtorun is not None:
        assert n <= max(0, maxtorun - pending - running)
    if cap == "MaxPerCycle" and maxpercycle is not None:
        assert n <= maxpercycle
    if cap == "MaxHeld" and maxheld is not None and held >= maxheld:
        assert n == 0


@settings(max_examples=200)
@given(cfg=policy_settings(st.just(["Classic"])), s=situations())
def test_classic_never_exceeds_nqueue_or_pilotlimit(cfg, s):
    n = decide(cfg, s).n
    classic = cfg.of(ClassicOptions)
    assert n <= max(classic.nqueue, classic.testpilots, 1)
    if classic.pilotlimit is not None:
        assert s.supply.all + n <= max(classic.pilotlimit, s.supply.all)


@settings(max_examples=300)
@given(cfg=policy_settings(), s=situations())
def test_offline_gives_zero_unless_configured(cfg, s):
    offline = Situation(QueueStatus.OFFLINE, s.demand, s.supply, s.cycle)
    decision = decide(cfg, offline)
    handled_by = [name for name in cfg.schedplugin if name in STATUS_AWARE]
    if not handled_by or (handled_by[-1] == "Classic" and cfg.schedplugin[-1] == "Classic"):
        assert decision.n == 0


@settings(max_examples=200)
@given(cfg=policy_settings(), s=situations(), which=st.sampled_from(["demand", "supply", "both"]))
def test_missing_or_stale_input_gives_zero(cfg, s, which):
    demand = None if which in ("demand", "both") else s.demand
    supply = None if which in ("supply", "both") else s.supply
    assert decide(cfg, Situation(s.status, demand, supply, s.cycle)).n == 0


@given(factor=st.floats(0, 10, allow_nan=False), n=st.integers(0, 10**6))
def test_scale_rounds_up(factor, n):
    cfg = chain("Fixed", "Scale", options=[FixedOptions(pilots=n), ScaleOptions(factor=factor)])
    assert decide(cfg, situation()).n == math.ceil(n * factor)
