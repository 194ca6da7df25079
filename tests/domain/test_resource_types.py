"""Demand per resource type and job label: typed labels for unified queues, their sizes,
the detailed PanDA statistics, the shares per (PQ, resource type) and the PQ's CRIC caps."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autopyfactory.config import loader as config
from autopyfactory.config.autoconfigure import build_labels, queue_limits, runnable_types, size_for
from autopyfactory.demo import panda_standin as ps
from autopyfactory.domain.demand import PandaError
from autopyfactory.domain.label import QueueLimits, Resources
from autopyfactory.domain.model import Census, Decision, Step, Supply
from autopyfactory.domain.planning import plan, queue_caps
from autopyfactory.domain.sharing import FactoryCaps, GroupCap, apply_group_caps
from autopyfactory.edges.panda import parse_detailed_stats
from tests.support.factory_conf import factory_conf
from tests.support.paths import CRIC_DUMP

DUMP: dict[str, Any] = json.loads(CRIC_DUMP.read_text())
FACTORY = factory_conf()


def labels_for(tmp_path: Path, text: str, dump: dict[str, Any] = DUMP):
    path = tmp_path / "factory.conf"
    path.write_text(FACTORY + text)
    return build_labels(config.load(path), dump)


# --- which types, what size ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("corecount", "maxrss", "types"),
    [
        (8, 32000, ["SCORE", "SCORE_HIMEM", "MCORE", "MCORE_HIMEM"]),
        (8, 16000, ["SCORE", "MCORE"]),  # 2000 MB per core: not high memory
        (1, 2000, ["SCORE"]),
        (1, 16000, ["SCORE", "SCORE_HIMEM"]),
    ],
)
def test_runnable_types(corecount, maxrss, types):
    assert runnable_types(corecount, maxrss) == types


@pytest.mark.parametrize(
    ("rt", "cores", "memory"),
    [("SCORE", 1, 2000), ("SCORE_HIMEM", 1, 4000), ("MCORE", 8, 16000), ("MCORE_HIMEM", 8, 32000)],
)
def test_sizes_follow_panda_and_harvester(rt, cores, memory):
    queue = Resources(corecount=8, maxrss=32000, maxtime=3600, maxwdir=0, environ=())
    sized = size_for(rt, queue)
    assert (sized.corecount, sized.maxrss, sized.maxtime) == (cores, memory, 3600)


def test_score_memory_is_the_per_core_memory_when_that_is_small():
    assert size_for("SCORE", Resources(8, 12000, 0, 0, ())).maxrss == 1500


# --- labels ------------------------------------------------------------------------------------------


def test_auto_gives_a_unified_queue_one_label_per_ce_and_type(tmp_path):
    result = labels_for(tmp_path, "[QueueDefaults]\nresourceTypes = auto\n[CERN]\n")
    assert len(result.labels) == 13 * 4
    label = next(lb for lb in result.labels if lb.name == "CERN-ce503.cern.ch-share-MCORE")
    assert (label.resource_type, label.resources.corecount, label.resources.maxrss) == ("MCORE", 8, 16000)
    assert label.limits == QueueLimits({"MCORE_HIMEM": 100, "SCORE": 5000, "SCORE_HIMEM": 2000}, 400, None)


def test_without_resource_types_nothing_changes(tmp_path):
    result = labels_for(tmp_path, "[CERN]\n")
    assert len(result.labels) == 13
    assert all(lb.resource_type is None for lb in result.labels)


def test_auto_leaves_a_queue_that_is_not_unified_alone(tmp_path):
    dump = copy.deepcopy(DUMP)
    dump["CERN"].update(type="production", capability="score")
    assert {
        lb.resource_type for lb in labels_for(tmp_path, "[CERN]\nresourceTypes = auto\n", dump).labels
    } == {None}


def test_a_listed_type_the_queue_cannot_run_is_skipped_with_a_warning(tmp_path):
    result = labels_for(tmp_path, "[TEST-SITE]\nresourceTypes = SCORE, MCORE\n")
    assert [lb.name for lb in result.labels] == ["TEST-SITE-ce01.test.example-default-SCORE"]
    assert "[TEST-SITE] resource type MCORE skipped: the queue runs only SCORE" in result.warnings
    result = labels_for(tmp_path, "[TEST-SITE]\nresourceTypes = MCORE\n")
    assert result.labels == ()
    assert "none of resourceTypes MCORE runs here" in result.problems[0]


def test_a_bad_resource_type_is_a_config_error(tmp_path):
    path = tmp_path / "factory.conf"
    path.write_text(FACTORY + "[CERN]\nresourceTypes = SCORE, XCORE\n")
    assert "expected auto or some of SCORE, MCORE, SCORE_HIMEM, MCORE_HIMEM; got 'XCORE'" in str(
        config.load(path).errors[0]
    )


def test_job_labels_configured_or_from_the_queue_type(tmp_path):
    dump = copy.deepcopy(DUMP)
    dump["TEST-SITE"]["type"] = "analysis"
    assert labels_for(tmp_path, "[TEST-SITE]\n", dump).labels[0].job_labels == ("user",)
    text = "[TEST-SITE]\ndemandJobLabels = managed, ptest\n"
    assert labels_for(tmp_path, text, dump).labels[0].job_labels == ("managed", "ptest")
    assert labels_for(tmp_path, "[TEST-SITE]\n").labels[0].job_labels == ("managed",)  # PR pilots
    assert labels_for(tmp_path, "[TEST-SITE]\npilotType = RC\n").labels[0].job_labels == ()


def test_bad_cric_limits_are_ignored_with_a_warning():
    warnings: list[str] = []
    record = {
        "params": {
            "resource_type_limits.SCORE": "many",
            "resource_type_limits": {"MCORE": 3},
            "nQueueLimitWorker": 7,
        }
    }
    assert queue_limits(record, warnings, "Q") == QueueLimits({"MCORE": 3}, None, 7)
    assert warnings == ["[Q] schedconfig params.resource_type_limits.SCORE='many' ignored: not a count"]


# --- the detailed statistics ------------------------------------------------------------------------

JOBS = {
    ("CERN", "SCORE", "managed", "activated"): 30,
    ("CERN", "MCORE", "managed", "activated"): 12,
    ("CERN", "MCORE", "user", "activated"): 5,
    ("CERN", None, "managed", "activated"): 4,
    ("CERN", "SCORE", "managed", "transferring"): 2,
}


def test_detailed_answer_counts_per_type_and_job_label():
    stats = parse_detailed_stats(ps.envelope(ps.detailed_job_stats(JOBS), detailed=True))
    cern = stats["CERN"]
    assert cern.activated == 51
    assert cern.transferring == 2
    assert cern.count("activated", "MCORE") == 17
    assert cern.count("activated", "MCORE", ("managed",)) == 12
    assert cern.count("activated", None, ("user",)) == 5
    assert cern.count("activated", "SCORE_HIMEM") == 0


def test_restricted_counts_need_the_detailed_answer():
    from autopyfactory.edges.panda import parse_stats

    cern = parse_stats(ps.envelope(ps.job_stats(JOBS)))["CERN"]
    with pytest.raises(PandaError):
        cern.count("activated", "SCORE")


@pytest.mark.parametrize(
    "data",
    [{"CERN": {"SCORE": {"managed": {"activated": -1}}}}, {"CERN": {"SCORE": [1]}}, {"CERN": 3}],
)
def test_bad_detailed_answers_are_rejected_whole(data):
    with pytest.raises(PandaError):
        parse_detailed_stats({"success": True, "message": "", "data": data})


# --- shares and caps in the plan ---------------------------------------------------------------------


def test_each_type_gets_pilots_for_its_own_jobs(tmp_path):
    labels = labels_for(
        tmp_path, "[QueueDefaults]\nresourceTypes = SCORE, MCORE\nschedplugin = Ready\n[CERN]\n"
    ).labels
    stats = parse_detailed_stats(ps.envelope(ps.detailed_job_stats(JOBS), detailed=True))
    census = Census({lb.name: Supply() for lb in labels}, total=0)
    plans = plan(labels, stats, census, 1, FactoryCaps(), cycle=0)
    by_type = {
        rt: sum(p.decision.n for p in plans if p.label.resource_type == rt) for rt in ("SCORE", "MCORE")
    }
    # one pilot per job of its type, shared by 13 CEs; PR pilots count managed jobs, not the 5 user ones
    assert by_type == {"SCORE": 30, "MCORE": 12}


def test_resource_type_limit_caps_the_pilots_of_that_type_across_the_queue(tmp_path):
    labels = labels_for(
        tmp_path, "[QueueDefaults]\nresourceTypes = SCORE, MCORE\nschedplugin = Ready\n[CERN]\n"
    ).labels
    dump_limits = QueueLimits({"SCORE": 20}, None, None)
    labels = [dataclasses.replace(lb, limits=dump_limits) for lb in labels]
    stats = parse_detailed_stats(ps.envelope(ps.detailed_job_stats(JOBS), detailed=True))
    supply = {lb.name: Supply(running=1) for lb in labels}
    plans = plan(labels, stats, Census(supply, total=26), 1, FactoryCaps(), cycle=0)
    assert sum(p.decision.n for p in plans if p.label.resource_type == "SCORE") == 20 - 13
    assert sum(p.decision.n for p in plans if p.label.resource_type == "MCORE") == 12  # managed only
    capped = next(p for p in plans if p.label.resource_type == "SCORE" and p.decision.n < 3)
    assert capped.decision.steps[-1].plugin == "ResourceTypeLimit"
    assert "CERN SCORE limit=20 pilots=13" in capped.decision.steps[-1].reason


def test_unknown_pilot_counts_mean_no_pilots_of_a_capped_type(tmp_path):
    labels = labels_for(
        tmp_path,
        "[QueueDefaults]\nresourceTypes = SCORE\nschedplugin = Fixed\nsched.fixed.pilots = 5\n[CERN]\n",
    ).labels
    supply: dict[str, Supply | None] = {lb.name: Supply() for lb in labels}
    supply[labels[0].name] = None
    caps = queue_caps(labels, Census(supply, total=None))
    assert [c.capacity for c in caps if c.step == "ResourceTypeLimit"] == [None]


# --- the group caps: table and properties ------------------------------------------------------------


def decisions(**wanted: int) -> dict[str, Decision]:
    return {label: Decision(n, (Step("Fixed", 0, n, ""),)) for label, n in wanted.items()}


@pytest.mark.parametrize(
    ("capacity", "expected"),
    [
        (100, {"a": 10, "b": 10, "c": 7}),
        (8, {"a": 4, "b": 4, "c": 7}),
        (0, {"a": 0, "b": 0, "c": 7}),
        (None, {"a": 0, "b": 0, "c": 7}),
        (-3, {"a": 0, "b": 0, "c": 7}),
    ],
)
def test_group_cap_table(capacity, expected):
    capped = apply_group_caps(
        decisions(a=10, b=10, c=7), [GroupCap("Cap", ("a", "b"), capacity, "why")], cycle=0
    )
    assert {k: d.n for k, d in capped.items()} == expected


def test_group_cap_explains_only_what_it_cut():
    capped = apply_group_caps(
        decisions(a=2, b=10), [GroupCap("ResourceTypeLimit", ("a", "b"), 6, "Q SCORE limit=9 pilots=3")], 0
    )
    assert capped["a"].steps[-1].plugin == "Fixed"
    assert (
        capped["b"].steps[-1].render()
        == "ResourceTypeLimit: in=10 requested=12 Q SCORE limit=9 pilots=3 -> 4"
    )


@given(
    wanted=st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 500), max_size=8),
    groups=st.lists(
        st.tuples(st.sets(st.sampled_from("abcdefgh"), max_size=5), st.none() | st.integers(-10, 600)),
        max_size=4,
    ),
    cycle=st.integers(0, 50),
)
def test_group_caps_properties(wanted, groups, cycle):
    caps = [GroupCap("Cap", tuple(sorted(members)), capacity, "") for members, capacity in groups]
    capped = apply_group_caps(decisions(**wanted), caps, cycle)
    assert set(capped) == set(wanted)
    for label, decision in capped.items():
        assert 0 <= decision.n <= wanted[label]  # never more than asked
        if not any(label in members for members, _ in groups):
            assert decision.n == wanted[label]  # labels outside every group untouched
    for members, capacity in groups:  # every cap holds at the end
        assert sum(capped[label].n for label in members if label in capped) <= max(0, capacity or 0)


def test_pr_pilots_count_managed_jobs():
    """Once the pilot settings (pilotType) exist, PR pilots count only managed jobs."""
    from autopyfactory.config.autoconfigure import job_labels_for
    from autopyfactory.domain.label import Setting, Source

    settings = {
        "demandJobLabels": Setting((), Source.DEFAULT, "built-in"),
        "pilotType": Setting("PR", Source.LOCAL, "x"),
    }
    assert job_labels_for(settings, {"type": "unified"}) == ("managed",)
    assert job_labels_for(settings, {"type": "analysis"}) == ("user",)
    settings["pilotType"] = Setting("RC", Source.LOCAL, "x")
    assert job_labels_for(settings, None) == ()


def _typed_cern_labels():
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        text = "[QueueDefaults]\nresourceTypes = auto\nschedplugin = Ready\n[CERN]\n"
        return labels_for(Path(work), text).labels


TYPED_CERN = _typed_cern_labels()
TYPES = ("SCORE", "MCORE", "SCORE_HIMEM", "MCORE_HIMEM")


@given(
    jobs=st.fixed_dictionaries({rt: st.integers(0, 300) for rt in (*TYPES, None)}),
    factories=st.integers(1, 3),
    cycle=st.integers(0, 20),
)
def test_each_type_gets_exactly_its_share_of_its_own_jobs(jobs, factories, cycle):
    answer = ps.envelope(
        ps.detailed_job_stats({("CERN", rt, "managed", "activated"): n for rt, n in jobs.items()}), True
    )
    stats = parse_detailed_stats(answer) if answer["success"] else {}
    census = Census({lb.name: Supply() for lb in TYPED_CERN}, total=0)
    unlimited = [dataclasses.replace(lb, limits=QueueLimits()) for lb in TYPED_CERN]
    plans = plan(unlimited, stats, census, factories, FactoryCaps(), cycle)
    for rt in TYPES:
        sent = sum(p.decision.n for p in plans if p.label.resource_type == rt)
        assert sent == jobs[rt] // factories  # jobs without a type never count for a typed label
    limited = plan(TYPED_CERN, stats, census, factories, FactoryCaps(), cycle)  # CERN's CRIC caps
    assert sum(p.decision.n for p in limited) <= 400  # maxNewWorkersPerCycle
    for rt in TYPES:
        sent = sum(p.decision.n for p in limited if p.label.resource_type == rt)
        assert sent <= min(jobs[rt] // factories, TYPED_CERN[0].limits.resource_type_limits.get(rt, 10**9))
