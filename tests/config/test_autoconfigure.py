"""Autoconfiguration: queue sections + the CRIC dump -> labels, with precedence and provenance."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from autopyfactory.config import loader as config
from autopyfactory.config.autoconfigure import (
    LabelError,
    build_labels,
    parse_environ,
    split_endpoint,
    usable_ces,
)
from autopyfactory.config.loader import FactoryConfig
from autopyfactory.domain.label import CE, LabelSet, Setting, Source
from autopyfactory.domain.model import QueueStatus
from autopyfactory.domain.policy import ClassicOptions, MaxPendingOptions, PolicySettings
from tests.support.factory_conf import factory_conf
from tests.support.paths import DATA

# Lines 1-5; whatever a test appends starts on line 6.
FACTORY = factory_conf()

CERN_HOSTS = [f"ce{n}.cern.ch" for n in range(503, 515)] + ["condorce01.cern.ch"]


@pytest.fixture
def dump() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "cric_dump.json").read_text())
    return data


def load(tmp_path: Path, text: str) -> tuple[Path, FactoryConfig]:
    path = tmp_path / "factory.conf"
    path.write_text(FACTORY + text)
    return path, config.load(path)


def build(tmp_path: Path, text: str, dump: dict[str, Any] | None) -> tuple[Path, LabelSet]:
    path, cfg = load(tmp_path, text)
    assert cfg.errors == ()
    return path, build_labels(cfg, dump)


# --- CERN: the real record ----------------------------------------------------------------------


def test_cern_gives_13_labels_one_per_ce(tmp_path: Path, dump: dict[str, Any]) -> None:
    _, result = build(tmp_path, "[CERN]\n", dump)
    assert result.problems == ()
    assert result.warnings == ()
    assert [label.name for label in result.labels] == [f"CERN-{host}-share" for host in CERN_HOSTS]
    for label, host in zip(result.labels, CERN_HOSTS, strict=True):
        assert (label.queue, label.pq, label.siteid, label.cloud, label.batch) == (
            "CERN",
            "CERN",
            "CERN",
            "CERN",
            "condor",
        )
        assert label.status is QueueStatus.ONLINE
        assert label.ce == CE("HTCONDOR-CE", host, 9619, "share", "HTCondorCE")
        assert label.ce.endpoint == f"{host}:9619"
        assert (label.resources.corecount, label.resources.maxrss) == (8, 32000)
        assert (label.resources.maxtime, label.resources.maxwdir) == (288000, 160000)
        assert label.resources.environ == ()
        assert label.policy == PolicySettings()


def test_cern_settings_record_where_each_value_came_from(tmp_path: Path, dump: dict[str, Any]) -> None:
    _, result = build(tmp_path, "[CERN]\n", dump)
    settings = result.labels[0].settings
    assert settings["corecount"] == Setting(8, Source.SCHEDCONFIG, "schedconfig CERN.corecount")
    assert settings["maxrss"] == Setting(32000, Source.SCHEDCONFIG, "schedconfig CERN.maxrss")
    assert settings["status"] == Setting("online", Source.SCHEDCONFIG, "schedconfig CERN.status")
    assert settings["siteid"] == Setting("CERN", Source.SCHEDCONFIG, "schedconfig CERN.siteid")
    assert settings["nqueue"] == Setting(20, Source.DEFAULT, "built-in")
    # an empty schedconfig value is no value
    assert settings["environ"] == Setting("", Source.DEFAULT, "built-in")
    # CERN's depthboost / pilotlimit / transferringlimit are null in CRIC
    assert settings["depthboost"].source is Source.DEFAULT
    assert settings["pilotlimit"] == Setting(None, Source.DEFAULT, "built-in")


def test_bare_cern_record_serves_the_same_labels(tmp_path: Path) -> None:
    record = json.loads((DATA / "cric_pandaqueue_CERN.json").read_text())
    _, result = build(tmp_path, "[CERN]\n", {"CERN": record})
    assert len(result.labels) == 13


# --- precedence: built-in default < [QueueDefaults] < schedconfig < the queue's own section --------


def test_precedence_built_in_default(tmp_path: Path, dump: dict[str, Any]) -> None:
    del dump["CERN"]["maxrss"]
    _, result = build(tmp_path, "[CERN]\n", dump)
    assert result.labels[0].settings["maxrss"] == Setting(2000, Source.DEFAULT, "built-in")
    assert result.labels[0].resources.maxrss == 2000


def test_precedence_queue_defaults_beat_built_in(tmp_path: Path, dump: dict[str, Any]) -> None:
    dump["CERN"]["maxrss"] = None
    path, result = build(tmp_path, "[QueueDefaults]\nmaxrss = 4000\n[CERN]\n", dump)
    assert result.labels[0].settings["maxrss"] == Setting(4000, Source.QUEUE_DEFAULTS, f"{path}:7")
    assert result.labels[0].resources.maxrss == 4000


def test_precedence_schedconfig_beats_queue_defaults(tmp_path: Path, dump: dict[str, Any]) -> None:
    _, result = build(tmp_path, "[QueueDefaults]\nmaxrss = 4000\n[CERN]\n", dump)
    assert result.labels[0].settings["maxrss"] == Setting(
        32000, Source.SCHEDCONFIG, "schedconfig CERN.maxrss"
    )
    assert result.labels[0].resources.maxrss == 32000


def test_precedence_local_beats_schedconfig(tmp_path: Path, dump: dict[str, Any]) -> None:
    path, result = build(tmp_path, "[QueueDefaults]\nmaxrss = 4000\n[CERN]\nmaxrss = 64000\n", dump)
    assert result.labels[0].settings["maxrss"] == Setting(64000, Source.LOCAL, f"{path}:9")
    assert result.labels[0].resources.maxrss == 64000


def test_precedence_local_status_and_policy(tmp_path: Path, dump: dict[str, Any]) -> None:
    text = "[QueueDefaults]\nnqueue = 10\nsched.maxpending.maximum = 50\n[CERN]\nstatus = test\nnqueue = 3\n"
    path, result = build(tmp_path, text, dump)
    label = result.labels[0]
    assert label.status is QueueStatus.TEST
    assert label.settings["status"] == Setting("test", Source.LOCAL, f"{path}:10")
    assert label.policy.of(ClassicOptions).nqueue == 3
    assert label.policy.of(MaxPendingOptions).maximum == 50
    assert label.settings["sched.maxpending.maximum"] == Setting(50, Source.QUEUE_DEFAULTS, f"{path}:8")


def test_local_override_applies_to_every_label_of_the_queue(tmp_path: Path, dump: dict[str, Any]) -> None:
    _, result = build(tmp_path, "[CERN]\ncorecount = 1\nenviron = A=1 B=two\n", dump)
    assert {label.resources.corecount for label in result.labels} == {1}
    assert {label.resources.environ for label in result.labels} == {(("A", "1"), ("B", "two"))}


def test_submit_settings(tmp_path: Path, dump: dict[str, Any]) -> None:
    text = "[QueueDefaults]\nholdRerun = false\ncondorSchedd = s1\n[CERN]\nremoveHeldAfter = 60\n"
    _, result = build(tmp_path, text, dump)
    submit = result.labels[0].submit
    assert submit.hold_rerun is False
    assert submit.schedd == "s1"
    assert submit.remove_held_after == 60
    assert submit.executable == "/usr/libexec/autopyfactory/runpilot3-wrapper.sh"


def test_wmsqueue_serves_a_pq_under_another_section_name(tmp_path: Path, dump: dict[str, Any]) -> None:
    _, result = build(tmp_path, "[CERN-SCORE]\nwmsqueue = CERN\ncorecount = 1\n", dump)
    label = result.labels[0]
    assert (label.name, label.queue, label.pq, label.siteid) == (
        "CERN-SCORE-ce503.cern.ch-share",
        "CERN-SCORE",
        "CERN",
        "CERN",
    )
    assert label.resources.corecount == 1


# --- crafted queues ----------------------------------------------------------------------------


def test_null_corecount_is_one_and_environ_is_parsed(tmp_path: Path, dump: dict[str, Any]) -> None:
    _, result = build(tmp_path, "[NDGF-T1]\n", dump)
    assert [label.name for label in result.labels] == [
        "NDGF-T1-arc01.ndgf.org-atlas",
        "NDGF-T1-arc02.ndgf.org-atlas",
    ]
    for label in result.labels:
        assert label.resources.corecount == 1
        assert label.settings["corecount"] == Setting(1, Source.DEFAULT, "built-in")
        assert label.resources.environ == (("XRD_RUNFORKHANDLER", "1"), ("PILOT_NOKILL", "1"))
        assert label.resources.maxrss == 16000
        assert label.cloud == "ND"


def test_zero_means_unset_for_resources(tmp_path: Path, dump: dict[str, Any]) -> None:
    dump["CERN"]["maxrss"] = 0
    _, result = build(tmp_path, "[QueueDefaults]\nmaxrss = 3000\n[CERN]\n", dump)
    assert result.labels[0].settings["maxrss"].source is Source.QUEUE_DEFAULTS
    assert result.labels[0].resources.maxrss == 3000


def test_arc_ports(tmp_path: Path, dump: dict[str, Any]) -> None:
    _, result = build(tmp_path, "[NDGF-T1]\n", dump)
    assert [(label.ce.flavour, label.ce.host, label.ce.port, label.ce.queue) for label in result.labels] == [
        ("ARC-CE", "arc01.ndgf.org", 2811, "atlas"),
        ("ARC-CE", "arc02.ndgf.org", 443, "atlas"),
    ]


def test_ce_queue_maxwctime_caps_maxtime(tmp_path: Path, dump: dict[str, Any]) -> None:
    # NDGF-T1 maxtime is 0 (unset); arc02's CE queue allows 2880 minutes, arc01's has no limit.
    _, result = build(tmp_path, "[QueueDefaults]\nmaxtime = 300000\n[NDGF-T1]\n", dump)
    assert [label.resources.maxtime for label in result.labels] == [300000, 2880 * 60]
    assert result.labels[1].settings["maxtime"].value == 300000  # the setting itself is untouched


def test_ce_queue_maxwctime_caps_schedconfig_maxtime(tmp_path: Path, dump: dict[str, Any]) -> None:
    dump["NDGF-T1"]["maxtime"] = 259200
    _, result = build(tmp_path, "[NDGF-T1]\n", dump)
    assert [label.resources.maxtime for label in result.labels] == [259200, 172800]


def test_local_maxtime_is_not_capped(tmp_path: Path, dump: dict[str, Any]) -> None:
    _, result = build(tmp_path, "[NDGF-T1]\nmaxtime = 300000\n", dump)
    assert [label.resources.maxtime for label in result.labels] == [300000, 300000]


def test_statuses(tmp_path: Path, dump: dict[str, Any]) -> None:
    _, result = build(tmp_path, "[TEST-SITE]\n[DOWN-SITE]\n", dump)
    assert result.problems == ()
    assert [(label.name, label.status) for label in result.labels] == [
        ("TEST-SITE-ce01.test.example-default", QueueStatus.TEST),
        ("DOWN-SITE-ce01.down.example-default", QueueStatus.OFFLINE),
    ]


def test_cream_and_gt2_ces_are_unusable_with_the_reason(tmp_path: Path, dump: dict[str, Any]) -> None:
    """HTCondor has no cream/gt2 grid types any more: such CEs get no label (and so no share)."""
    dump["CERN"]["queues"] += dump["LEGACY-SITE"]["queues"]
    _, result = build(tmp_path, "[CERN]\n[LEGACY-SITE]\n", dump)
    assert all(label.ce.flavour == "HTCONDOR-CE" for label in result.labels)
    assert len(result.labels) == len(dump["CERN"]["queues"]) - 2
    assert "[LEGACY-SITE] skipped: PanDA queue 'LEGACY-SITE' has no usable CE (2 skipped)" in result.problems
    assert (
        "[CERN] CE skipped: cream01.legacy.example:8443: CREAM-CE is not supported: "
        "HTCondor (24 and later) has no 'cream' grid type"
    ) in result.warnings
    assert (
        "[LEGACY-SITE] CE skipped: gk01.legacy.example: OSG-CE is not supported: "
        "HTCondor (24 and later) has no 'gt2' grid type"
    ) in result.warnings


@pytest.mark.parametrize("flavour", ["CREAM-CE", "OSG-CE", "LCG-CE"])
def test_a_local_queue_with_a_retired_flavour_is_skipped_with_the_reason(
    tmp_path: Path, dump: dict[str, Any], flavour: str
) -> None:
    conf = f"[OLD]\nautoconfigure = false\nceFlavour = {flavour}\nceEndpoint = gk.example\n"
    _, result = build(tmp_path, conf, dump)
    assert result.labels == ()
    (problem,) = result.problems
    assert problem.startswith(f"[OLD] skipped: ceFlavour: {flavour} is not supported: HTCondor")
    assert "jobmanager" not in problem


@pytest.mark.parametrize(
    ("status", "expected"), [("standby", QueueStatus.OFFLINE), ("Maintenance", QueueStatus.OFFLINE)]
)
def test_standby_and_maintenance_are_offline(
    tmp_path: Path, dump: dict[str, Any], status: str, expected: QueueStatus
) -> None:
    dump["CERN"]["status"] = status
    _, result = build(tmp_path, "[CERN]\n", dump)
    assert {label.status for label in result.labels} == {expected}


# --- queues that cannot be served are reported and skipped ----------------------------------------


def test_queue_without_usable_ce_is_reported_and_skipped(tmp_path: Path, dump: dict[str, Any]) -> None:
    _, result = build(tmp_path, "[NOCE-SITE]\n[TEST-SITE]\n", dump)
    assert result.problems == ("[NOCE-SITE] skipped: PanDA queue 'NOCE-SITE' has no usable CE (3 skipped)",)
    assert result.warnings == (
        "[NOCE-SITE] CE skipped: ce01.noce.example:9619: ce_state='INACTIVE'",
        "[NOCE-SITE] CE skipped: ce02.noce.example:9619: ce_status='testing'",
        "[NOCE-SITE] CE skipped: ce03.noce.example: unknown ce_flavour 'BOINC'",
    )
    assert [label.queue for label in result.labels] == ["TEST-SITE"]


def test_missing_nickname_is_reported_and_skipped(tmp_path: Path, dump: dict[str, Any]) -> None:
    _, result = build(tmp_path, "[NO-SUCH-PQ]\n[CERN]\n", dump)
    assert result.problems == ("[NO-SUCH-PQ] skipped: PanDA queue 'NO-SUCH-PQ' is not in schedconfig",)
    assert len(result.labels) == 13


def test_no_schedconfig_at_all(tmp_path: Path) -> None:
    _, result = build(tmp_path, "[CERN]\n[MYSITE]\nautoconfigure = false\nceFlavour = LOCAL\n", None)
    assert result.problems == ("[CERN] skipped: schedconfig is not available",)
    assert [label.name for label in result.labels] == ["MYSITE-local"]


def test_config_errors_are_problems_too(tmp_path: Path, dump: dict[str, Any]) -> None:
    path, cfg = load(tmp_path, "[CERN]\nnqeue = 1\n[TEST-SITE]\n")
    result = build_labels(cfg, dump)
    assert result.problems == (f"{path}:7: [CERN] nqeue: unknown key (did you mean 'nqueue'?)",)
    assert [label.queue for label in result.labels] == ["TEST-SITE"]


def test_disabled_queue_gives_no_labels_and_no_problem(tmp_path: Path, dump: dict[str, Any]) -> None:
    _, result = build(tmp_path, "[CERN]\nenabled = false\n[NO-SUCH-PQ]\nenabled = false\n", dump)
    assert result == LabelSet((), (), ())


def test_unknown_schedconfig_status_skips_the_queue(tmp_path: Path, dump: dict[str, Any]) -> None:
    dump["CERN"]["status"] = "paused"
    _, result = build(tmp_path, "[CERN]\n[TEST-SITE]\n", dump)
    assert result.problems == (
        "[CERN] skipped: schedconfig CERN.status='paused': expected one of online, brokeroff, test, offline,"
        " standby, maintenance; got 'paused'",
    )
    assert [label.queue for label in result.labels] == ["TEST-SITE"]


def test_local_status_wins_over_an_unknown_schedconfig_status(tmp_path: Path, dump: dict[str, Any]) -> None:
    dump["CERN"]["status"] = "paused"
    _, result = build(tmp_path, "[CERN]\nstatus = offline\n", dump)
    assert result.problems == ()
    assert len(result.labels) == 13
    assert {label.status for label in result.labels} == {QueueStatus.OFFLINE}


def test_missing_optional_fields_never_drop_a_queue(tmp_path: Path, dump: dict[str, Any]) -> None:
    record = {"nickname": "CERN", "queues": copy.deepcopy(dump["CERN"]["queues"])}
    _, result = build(tmp_path, "[CERN]\n", {"CERN": record})
    assert result.problems == ()
    assert len(result.labels) == 13
    label = result.labels[0]
    assert (label.siteid, label.cloud, label.status) == ("CERN", "", QueueStatus.ONLINE)
    assert (label.resources.corecount, label.resources.maxrss, label.resources.maxtime) == (1, 2000, 172800)


def test_bad_optional_schedconfig_value_is_a_warning(tmp_path: Path, dump: dict[str, Any]) -> None:
    dump["CERN"]["maxrss"] = "lots"
    dump["CERN"]["corecount"] = -8
    _, result = build(tmp_path, "[CERN]\n", dump)
    assert len(result.labels) == 13
    assert result.warnings == (
        "[CERN] schedconfig CERN.corecount=-8 ignored: must be at least 1, got -8",
        "[CERN] schedconfig CERN.maxrss='lots' ignored: expected a whole number, got 'lots'",
    )
    assert result.labels[0].resources.maxrss == 2000


# --- CE selection -------------------------------------------------------------------------------


def ce_entry(**fields: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "ce_endpoint": "ce.example.org:9619",
        "ce_flavour": "HTCONDOR-CE",
        "ce_queue_name": "q",
        "ce_state": "ACTIVE",
        "ce_status": "production",
    }
    entry.update(fields)
    return entry


def test_usable_ce_reasons() -> None:
    record = {
        "queues": [
            ce_entry(ce_state="DISABLED"),
            ce_entry(ce_status="testing"),
            ce_entry(ce_flavour="NORDUGRID"),
            ce_entry(ce_endpoint=""),
            ce_entry(ce_endpoint="ce.example.org:https"),
            "not a dict",
            ce_entry(ce_state="active", ce_status="Production", ce_flavour="htcondor-ce"),
            ce_entry(),
            ce_entry(ce_queue_name="other"),
        ]
    }
    ces, skipped = usable_ces(record)
    assert ces == [
        CE("HTCONDOR-CE", "ce.example.org", 9619, "q"),
        CE("HTCONDOR-CE", "ce.example.org", 9619, "other"),
    ]
    assert skipped == [
        "ce.example.org:9619: ce_state='DISABLED'",
        "ce.example.org:9619: ce_status='testing'",
        "ce.example.org:9619: unknown ce_flavour 'NORDUGRID'",
        "?: no ce_endpoint",
        "bad CE endpoint 'ce.example.org:https'",
        "CE entry 'not a dict' is not an object",
        "ce.example.org:9619: listed twice for queue 'q'",
    ]


def test_usable_ces_without_queues() -> None:
    assert usable_ces({}) == ([], [])
    assert usable_ces({"queues": None}) == ([], [])


def test_ce_without_queue_name_has_a_short_label_name(tmp_path: Path, dump: dict[str, Any]) -> None:
    dump["TEST-SITE"]["queues"][0]["ce_queue_name"] = None
    _, result = build(tmp_path, "[TEST-SITE]\n", dump)
    assert [label.name for label in result.labels] == ["TEST-SITE-ce01.test.example"]
    assert result.labels[0].ce.queue == ""


def test_split_endpoint() -> None:
    assert split_endpoint("ce.example.org:9619") == ("ce.example.org", 9619)
    assert split_endpoint(" ce.example.org ") == ("ce.example.org", None)
    with pytest.raises(LabelError, match=r"^bad CE endpoint 'ce:x'$"):
        split_endpoint("ce:x")


def test_parse_environ() -> None:
    assert parse_environ("A=1  B=x=y junk =z C=") == (("A", "1"), ("B", "x=y"), ("C", ""))
    assert parse_environ("") == ()


# --- local queues (autoconfigure = false) ---------------------------------------------------------


def test_local_grid_queue_needs_no_schedconfig(tmp_path: Path) -> None:
    text = (
        "[MYSITE]\nautoconfigure = false\nceFlavour = ARC-CE\nceEndpoint = arc.example.org:443\n"
        "ceQueue = atlas\nstatus = test\ncorecount = 8\n"
    )
    path, result = build(tmp_path, text, None)
    assert result.problems == ()
    label = result.labels[0]
    assert label.name == "MYSITE-arc.example.org-atlas"
    assert label.ce == CE("ARC-CE", "arc.example.org", 443, "atlas")
    assert (label.pq, label.siteid, label.status) == ("MYSITE", "MYSITE", QueueStatus.TEST)
    assert label.resources.corecount == 8
    assert label.settings["corecount"] == Setting(8, Source.LOCAL, f"{path}:12")
    assert all(s.source is not Source.SCHEDCONFIG for s in label.settings.values())


def test_local_queue_ignores_a_record_in_the_dump(tmp_path: Path, dump: dict[str, Any]) -> None:
    text = "[CERN]\nautoconfigure = false\nceFlavour = HTCONDOR-CE\nceEndpoint = myce.example.org:9619\n"
    _, result = build(tmp_path, text, dump)
    assert [label.name for label in result.labels] == ["CERN-myce.example.org"]
    assert result.labels[0].resources.corecount == 1
    assert result.labels[0].settings["corecount"].source is Source.DEFAULT


def test_local_batch_queue(tmp_path: Path) -> None:
    _, result = build(tmp_path, "[LAPTOP]\nautoconfigure = false\nbatch = local\n", None)
    assert [(label.name, label.batch, label.ce) for label in result.labels] == [
        ("LAPTOP-local", "local", CE("LOCAL", "localhost", None, ""))
    ]


def test_local_queue_with_a_bad_endpoint_is_skipped(tmp_path: Path) -> None:
    text = "[MYSITE]\nautoconfigure = false\nceFlavour = HTCONDOR-CE\nceEndpoint = ce:port\n[CERN]\n"
    _, result = build(tmp_path, text, {})
    assert result.problems == (
        "[MYSITE] skipped: bad CE endpoint 'ce:port'",
        "[CERN] skipped: PanDA queue 'CERN' is not in schedconfig",
    )


def test_a_ce_queue_name_with_a_slash_gives_a_safe_label_name() -> None:
    from autopyfactory.config.autoconfigure import safe_name

    assert safe_name("SITE-ce.example.org-long/queue") == "SITE-ce.example.org-long_queue"
    assert safe_name("../etc") == "_etc"
    assert safe_name("CERN-ce503.cern.ch-share") == "CERN-ce503.cern.ch-share"


# --- malformed CRIC records and CE entries: only that queue or CE is skipped -----------------------


@pytest.mark.parametrize("queues", [5, "ce01.example.org", {"ce_endpoint": "x"}, True])
def test_a_malformed_queues_field_skips_only_that_queue(
    tmp_path: Path, dump: dict[str, Any], queues: object
) -> None:
    dump = copy.deepcopy(dump)
    dump["NDGF-T1"]["queues"] = queues
    _, result = build(tmp_path, "[NDGF-T1]\n[CERN]\n", dump)
    assert len(result.labels) == 13
    assert {label.pq for label in result.labels} == {"CERN"}
    (problem,) = result.problems
    assert problem.startswith("[NDGF-T1] skipped: schedconfig NDGF-T1.queues is ")
    assert "not a list of CE queues" in problem


def test_one_bad_ce_endpoint_skips_only_that_ce(tmp_path: Path, dump: dict[str, Any]) -> None:
    dump = copy.deepcopy(dump)
    inactive = dict(dump["NDGF-T1"]["queues"][0], ce_endpoint="arc09.ndgf.org:abc", ce_state="INACTIVE")
    active = dict(dump["NDGF-T1"]["queues"][0], ce_endpoint="arc08.ndgf.org:abc")
    dump["NDGF-T1"]["queues"] = [inactive, active, *dump["NDGF-T1"]["queues"]]
    _, result = build(tmp_path, "[NDGF-T1]\n", dump)
    assert result.problems == ()
    assert [label.ce.host for label in result.labels] == ["arc01.ndgf.org", "arc02.ndgf.org"]
    assert "[NDGF-T1] CE skipped: bad CE endpoint 'arc08.ndgf.org:abc'" in result.warnings


# --- label names the monitor accepts ---------------------------------------------------------------


@pytest.mark.parametrize(
    "ce_queue",
    ["grid:long", "a/b c", "q" * 300, "..", "ü-queue", "x\x00y"],
)
def test_label_names_are_valid_for_the_monitor(tmp_path: Path, dump: dict[str, Any], ce_queue: str) -> None:
    from autopyfactory.domain.names import label_problem
    from autopyfactory.monitor_service.schemas import LabelIn

    dump["TEST-SITE"]["queues"][0]["ce_queue_name"] = ce_queue
    _, result = build(tmp_path, "[TEST-SITE]\n", dump)
    (label,) = result.labels
    assert label_problem(label.name) is None
    LabelIn.model_validate({"name": label.name, "factory": "f", "batchqueue": "TEST-SITE"})


def test_long_label_names_stay_apart() -> None:
    from autopyfactory.domain.names import LABEL_MAX, label_name

    one, two = label_name("S-" + "q" * 200 + "1"), label_name("S-" + "q" * 200 + "2")
    assert one != two
    assert len(one) == len(two) == LABEL_MAX


def test_label_names_that_collide_are_reported_not_merged(tmp_path: Path, dump: dict[str, Any]) -> None:
    first = copy.deepcopy(dump["TEST-SITE"]["queues"][0])
    dump["TEST-SITE"]["queues"] = [first | {"ce_queue_name": "a:b"}, first | {"ce_queue_name": "a/b"}]
    _, result = build(tmp_path, "[TEST-SITE]\n", dump)
    assert [label.name for label in result.labels] == ["TEST-SITE-ce01.test.example-a_b"]
    assert result.problems == (
        "[TEST-SITE] label 'TEST-SITE-ce01.test.example-a_b' (CE ce01.test.example:9619 queue a/b) skipped:"
        " the name is already used by [TEST-SITE] (CE ce01.test.example:9619 queue a:b)",
    )


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("ok.name-1", None),
        ("", "empty"),
        (".", "made only of dots"),
        ("..", "made only of dots"),
        ("...", "made only of dots"),
        (".hidden", None),
        ("a:b", "only the characters A-Za-z0-9_.+@=- are allowed"),
        ("x" * 129, "longer than 128 characters"),
    ],
)
def test_the_label_name_rule(name: str, problem: str | None) -> None:
    from autopyfactory.domain.names import label_problem

    assert label_problem(name) == problem
