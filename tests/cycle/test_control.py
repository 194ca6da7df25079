"""Runtime control through the real CLI: ``queue disable|enable|list`` and ``pilots remove``,
acted on by the real ``autopyfactory run`` against the HTCondor emulator."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from autopyfactory.domain.control import Controls, Disable, Removal, parse_until, plan_removals
from autopyfactory.domain.control import LabelView as View
from autopyfactory.domain.model import JobStatus, Pilot
from autopyfactory.edges.control import ControlStore
from tests.support.condor_emulator.ads import JobStatus as CondorStatus
from tests.support.daemon import start
from tests.support.e2e import per_label, run, write_config

ARC1, ARC2 = "NDGF-T1-arc01.ndgf.org-atlas", "NDGF-T1-arc02.ndgf.org-atlas"


def apf(*args: str, env=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autopyfactory", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_a_disabled_pq_gets_nothing_with_its_reason_until_enabled(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 50}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]")
    result = apf("queue", "disable", "NDGF-T1", "--reason", "CE upgrade", "--until", "2h", "-c", str(conf))
    assert result.returncode == 0, result.stderr
    assert "CE upgrade" in result.stdout

    cycle = run(conf, condor, "--once")
    assert condor.jobs() == []
    assert "Disabled: in=5 PQ NDGF-T1 disabled by " in cycle.stderr
    assert "UTC: CE upgrade -> 0" in cycle.stderr
    status = apf("status", "-c", str(conf))
    assert status.returncode == 0, status.stderr
    assert "Disabled: in=5 PQ NDGF-T1 disabled" in status.stdout
    assert status.stdout.count("control: NDGF-T1-arc0") == 2
    listed = apf("queue", "list", "-c", str(conf))
    assert listed.stdout.startswith("NDGF-T1: disabled by ")

    assert apf("queue", "enable", "NDGF-T1", "-c", str(conf)).stdout == "NDGF-T1: enabled\n"
    run(conf, condor, "--once")
    assert per_label(condor.jobs()) == {ARC1: 5, ARC2: 5}
    assert apf("queue", "list", "-c", str(conf)).stdout == "no queue disabled, no pilot removal pending\n"


def test_disabling_one_label_leaves_the_others_alone(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 50}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]")
    assert apf("queue", "disable", ARC1, "-c", str(conf)).returncode == 0
    result = run(conf, condor, "--once")
    assert per_label(condor.jobs()) == {ARC2: 5}, result.stderr
    assert "Disabled: in=5 queue disabled by" in result.stderr
    assert "no reason given -> 0" in result.stderr


def test_enabling_a_pq_names_its_labels_that_stay_disabled(tmp_path, stand, condor):
    """Enabling the PQ does not enable a label disabled by its own name: the answer says so,
    and enabling the label says the PQ still holds it back."""
    stand.stats = {"NDGF-T1": {"activated": 50}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]")
    run(conf, condor, "--once")  # the state file knows the labels of the PQ
    assert apf("queue", "disable", ARC1, "--reason", "CE drain", "-c", str(conf)).returncode == 0
    enabled = apf("queue", "enable", "NDGF-T1", "-c", str(conf))
    assert enabled.returncode == 0, enabled.stderr
    assert enabled.stdout.startswith("NDGF-T1: was not disabled itself; still disabled: ")
    assert f"{ARC1} (disabled by " in enabled.stdout
    assert "CE drain" in enabled.stdout
    assert f"autopyfactory queue enable {ARC1}" in enabled.stdout
    assert "(it was not disabled)" not in enabled.stdout

    assert apf("queue", "disable", "NDGF-T1", "-c", str(conf)).returncode == 0
    label = apf("queue", "enable", ARC1, "-c", str(conf))
    assert label.stdout.startswith(f"{ARC1}: enabled; still disabled: NDGF-T1 (disabled by "), label.stdout
    both = apf("queue", "enable", "NDGF-T1", "-c", str(conf))
    assert both.stdout == "NDGF-T1: enabled\n"


def test_names_and_times_are_checked(tmp_path, stand):
    conf = write_config(tmp_path, stand, "[NDGF-T1]")
    typo = apf("queue", "disable", "NDGF-T2", "-c", str(conf))
    assert typo.returncode == 1
    assert "'NDGF-T2' is no queue, PQ or label of this factory (did you mean 'NDGF-T1'?)" in typo.stderr
    assert apf("queue", "disable", "NDGF-T2", "--force", "-c", str(conf)).returncode == 0
    past = apf("queue", "disable", "NDGF-T1", "--until", "2020-01-01T00:00", "-c", str(conf))
    assert past.returncode == 2
    assert "is not in the future" in past.stderr
    nothing = apf("pilots", "remove", "-c", str(conf))
    assert nothing.returncode == 2
    assert "give --label, --pq or --ce" in nothing.stderr


def test_pilots_remove_idle_only_removes_the_idle_pilots_of_that_label_once(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 50}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]")
    run(conf, condor, "--once")
    arc1 = [f"{j['ClusterId']}.{j['ProcId']}" for j in condor.jobs() if j["MATCH_APF_QUEUE"] == ARC1]
    condor.set_status(arc1[0], CondorStatus.RUNNING)
    assert apf("queue", "disable", "NDGF-T1", "-c", str(conf)).returncode == 0  # drain: no refill
    request = apf("pilots", "remove", "--label", ARC1, "--idle-only", "-c", str(conf))
    assert request.returncode == 0, request.stderr
    assert "(idle pilots, --label NDGF-T1-arc01.ndgf.org-atlas): requested" in request.stdout

    result = run(conf, condor, "--once")
    assert per_label(condor.jobs()) == {ARC1: 1, ARC2: 5}, result.stderr
    assert "(idle pilots, --label NDGF-T1-arc01.ndgf.org-atlas): 4 pilots of 1 label" in result.stderr
    assert "of 1 labels" not in result.stderr
    assert json.loads((tmp_path / "state" / "control.json").read_text())["removals"] == []
    run(conf, condor, "--once")
    assert len(condor.jobs()) == 6  # done once, not again

    assert apf("pilots", "remove", "--ce", "arc02.ndgf.org", "-c", str(conf)).returncode == 0
    run(conf, condor, "--once")
    assert per_label(condor.jobs()) == {ARC1: 1}


def test_pilots_remove_is_one_condor_rm_per_schedd_with_the_request_as_reason(tmp_path, stand, condor):
    condor.add_schedd("s2.example.org")
    stand.stats = {"NDGF-T1": {"activated": 50}, "TEST-SITE": {"activated": 5}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]\n[TEST-SITE]\ncondorSchedd = s2.example.org\n")
    run(conf, condor, "--once")
    for queue in ("NDGF-T1", "TEST-SITE"):
        assert apf("queue", "disable", queue, "-c", str(conf)).returncode == 0  # drain: no refill
    request = apf("pilots", "remove", "--pq", "NDGF-T1", "--reason", "CE retired", "-c", str(conf))
    assert request.returncode == 0, request.stderr
    other = apf("pilots", "remove", "--pq", "TEST-SITE", "--reason", "site down", "-c", str(conf))
    assert other.returncode == 0, other.stderr
    ids = {
        r["pq"]: r["id"] for r in json.loads((tmp_path / "state" / "control.json").read_text())["removals"]
    }
    run(conf, condor, "--once")
    assert condor.jobs() == []
    assert condor.jobs("s2.example.org") == []
    calls = condor.calls("condor_rm")
    assert len(calls) == 2  # one per schedd (and request), not one per label
    user = getpass.getuser()
    reasons = {call.schedd: call.argv[call.argv.index("-reason") + 1] for call in calls}
    assert reasons == {
        None: f"autopyfactory pilots remove {ids['NDGF-T1']} by {user}: CE retired",
        "s2.example.org": f"autopyfactory pilots remove {ids['TEST-SITE']} by {user}: site down",
    }
    removed = {ad["RemoveReason"] for ad in condor.history()}
    assert removed == {f"autopyfactory pilots remove {ids['NDGF-T1']} by {user}: CE retired (by user {user})"}


def test_a_failed_condor_rm_keeps_the_request_pending_and_visible(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 50}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]")
    run(conf, condor, "--once")
    assert apf("queue", "disable", "NDGF-T1", "-c", str(conf)).returncode == 0
    assert apf("pilots", "remove", "--pq", "NDGF-T1", "--reason", "drain", "-c", str(conf)).returncode == 0
    condor.fail_next("condor_rm", "exit")
    result = run(conf, condor, "--once")
    assert len(condor.jobs()) == 10
    assert "removing the pilots of" in result.stderr
    assert "kept, tried again next cycle" in result.stderr
    listed = apf("queue", "list", "-c", str(conf)).stdout
    assert "(pilots, --pq NDGF-T1): drain: requested by" in listed
    assert listed.rstrip().endswith("pending")
    status = apf("status", "-c", str(conf)).stdout
    assert "kept, tried again next cycle" in status
    run(conf, condor, "--once")  # condor_rm works again
    assert condor.jobs() == []
    assert "removal" not in apf("queue", "list", "-c", str(conf)).stdout


def test_the_running_daemon_picks_up_a_disable_from_its_next_cycle(tmp_path, stand, condor, daemons):
    stand.stats = {"NDGF-T1": {"activated": 50}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]")
    daemon = start(daemons, conf, condor, tmp_path / "factory.log")
    daemon.wait_log("cycle 0:")
    assert apf("queue", "disable", "NDGF-T1", "--reason", "drain", "-c", str(conf)).returncode == 0
    daemon.wait_log("UTC: drain -> 0", count=2)
    before = len(condor.jobs())
    cycles = daemon.text().count(" labels, decided ")
    daemon.wait_log(" labels, decided ", count=cycles + 2)
    assert len(condor.jobs()) == before  # nothing more while disabled
    assert daemon.stop() == 0


def test_concurrent_requests_are_all_kept(tmp_path, stand):
    conf = write_config(tmp_path, stand, "[NDGF-T1]")
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda i: apf("pilots", "remove", "--ce", f"ce{i}", "-c", str(conf)), range(8))
        )
    assert [r.returncode for r in results] == [0] * 8
    removals = json.loads((tmp_path / "state" / "control.json").read_text())["removals"]
    assert sorted(r["ce"] for r in removals) == [f"ce{i}" for i in range(8)]


# --- the pure parts -------------------------------------------------------------------------


def test_an_unreadable_control_file_holds_every_queue_back(tmp_path):
    store = ControlStore(tmp_path)
    store.path.write_text("{not json")
    controls = store.read_or_hold()
    reason = controls.disabled_reason("X-ce", "X", 0.0)
    assert reason is not None
    assert reason.startswith("control file unreadable")


def test_a_disable_expires_at_its_until():
    controls = Controls(disabled=(Disable("PQ", "why", 0.0, until=100.0),))
    assert controls.disabled_reason("PQ-ce", "PQ", 99.0) is not None
    assert controls.disabled_reason("PQ-ce", "PQ", 100.0) is None
    assert controls.disabled_reason("OTHER-ce", "OTHER", 50.0) is None


def test_until_accepts_durations_and_times():
    assert parse_until("90m", 1000.0) == 1000.0 + 5400
    assert parse_until("2026-12-01T08:00", 0.0) == parse_until("2026-12-01T08:00Z", 0.0)
    with pytest.raises(ValueError, match="neither a duration"):
        parse_until("soon", 0.0)


def test_a_removal_waits_while_the_census_is_unknown():
    pilot = Pilot("1.0", "L", JobStatus.IDLE, 0, 0)
    removal = Removal("r1", 0.0, pq="P")
    waiting = plan_removals([removal], [View("L", "P", "ce:9619", None)])
    assert waiting.by_request == {}
    assert "waiting, pilots unknown for L" in waiting.notes[0]
    done = plan_removals([removal], [View("L", "P", "ce:9619", (pilot,)), View("M", "Q", "c", ())])
    assert done.by_request == {"r1": {"L": ("1.0",)}}


def test_the_remove_reason_names_the_request_the_operator_and_the_reason():
    removal = Removal("ab12cd34", 0.0, pq="P", by="alice", reason="CE retired")
    assert removal.remove_reason() == "autopyfactory pilots remove ab12cd34 by alice: CE retired"
    assert (
        Removal("x", 0.0, pq="P").remove_reason()
        == "autopyfactory pilots remove x by unknown: no reason given"
    )


def test_state_dir_is_created_by_the_first_request(tmp_path, stand):
    conf = write_config(tmp_path, stand, "[NDGF-T1]")
    assert apf("queue", "disable", "NDGF-T1", "-c", str(conf)).returncode == 0
    assert Path(tmp_path / "state" / "control.json").exists()
