"""End to end: the real ``autopyfactory run`` against the HTCondor emulator and a PanDA/CRIC
stand-in on 127.0.0.1. Every test runs the command as an operator would and looks at what
arrived in the (emulated) schedd."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import requests

from autopyfactory.batch.condor.bulk import SUBMITTER
from autopyfactory.edges.panda import DETAILED_PATH, STATS_PATH
from tests.support.condor_emulator.ads import JobStatus
from tests.support.e2e import CERN_CES, DUMP, job_ids, per_label, run, write_config

# --- the main job ------------------------------------------------------------------------------


def test_pilots_reach_every_ce_with_tags_environment_and_resources(tmp_path, stand, condor):
    stand.stats = {"CERN": {"activated": 26, "assigned": 0, "running": 100}}
    conf = write_config(tmp_path, stand, "[CERN]")
    result = run(conf, condor, "--once")
    jobs = condor.jobs()
    counts = per_label(jobs)
    assert counts == {f"CERN-{host}-share": 2 for host in CERN_CES}  # one per job, not nqueue each
    job = next(j for j in jobs if j["MATCH_APF_QUEUE"] == "CERN-ce503.cern.ch-share")
    assert job["GridResource"] == "condor ce503.cern.ch ce503.cern.ch:9619"
    assert job["FactoryId"] == "e2e-factory"
    assert job["APF_PANDA_QUEUE"] == "CERN"
    assert (job["xcount"], job["maxMemory"], job["remote_queue"]) == (8, 32000, "share")
    cid = f"{job['ClusterId']}.{job['ProcId']}"
    environment = job["Environment"]
    for expected in (
        "APFFID=e2e-factory",
        f"APFCID={cid}",
        "FACTORYQUEUE=CERN-ce503.cern.ch-share",
        "PANDA_JSID=e2e-factory",
        f"/CERN-ce503.cern.ch-share/{cid}.out",
    ):
        assert expected in environment
    assert job["Out"].startswith(f"{tmp_path}/logs/")
    assert job["Out"].endswith(f"/CERN-ce503.cern.ch-share/{cid}.out")
    jobs = "managed,test,prod_test,install,user,panda"  # what unified pilots take
    line = (
        f"CERN-ce503.cern.ch-share pq=CERN jobs={jobs} activated=26 share=2 idle=0 running=0 held=0 started=0"
    )
    assert f"{line} decision=2" in result.stderr
    assert "submitted 26" in result.stderr


def test_condor_is_asked_once_per_cycle_and_submitted_once_per_schedd(tmp_path, stand, condor):
    stand.stats = {"CERN": {"activated": 26}}
    run(write_config(tmp_path, stand, "[CERN]"), condor, "--once")
    assert len(condor.calls("condor_q")) == 1
    assert len(condor.calls(SUBMITTER)) == 1  # 13 labels, one cluster each
    clusters: dict[int, set[str]] = {}
    for job in condor.jobs():
        clusters.setdefault(job["ClusterId"], set()).add(job["MATCH_APF_QUEUE"])
    assert len(clusters) == 13
    assert all(len(labels) == 1 for labels in clusters.values())
    [query] = condor.calls("condor_q")
    assert 'FactoryId == "e2e-factory"' in query.argv
    assert "-json" in query.argv


def test_depth_is_kept_as_pilots_start(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 50}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]")
    run(conf, condor, "--once")
    assert per_label(condor.jobs()) == {"NDGF-T1-arc01.ndgf.org-atlas": 5, "NDGF-T1-arc02.ndgf.org-atlas": 5}

    run(conf, condor, "--once")  # 5 pending of nqueue 5 each: activated > pending, < 2 x nqueue: 5 more
    assert len(condor.jobs()) == 20
    run(conf, condor, "--once")  # 10 pending = nqueue x depthboost: nothing
    assert len(condor.jobs()) == 20

    started = "NDGF-T1-arc01.ndgf.org-atlas"
    for cid in job_ids(j for j in condor.jobs() if j["MATCH_APF_QUEUE"] == started):
        condor.set_status(cid, JobStatus.RUNNING)
    run(conf, condor, "--once")  # the label whose pilots all started gets nqueue more; the other none
    idle = per_label(j for j in condor.jobs() if j["JobStatus"] == JobStatus.IDLE)
    assert idle == {started: 5, "NDGF-T1-arc02.ndgf.org-atlas": 10}


def test_a_queue_without_activated_jobs_keeps_one_idle_pilot(tmp_path, stand, condor):
    stand.stats = {"AGLT2": {"activated": 4}}  # nothing for NDGF-T1
    conf = write_config(tmp_path, stand, "[NDGF-T1]")
    run(conf, condor, "--once")
    assert per_label(condor.jobs()) == {"NDGF-T1-arc01.ndgf.org-atlas": 1}  # one for the queue, not per CE
    result = run(conf, condor, "--once")
    assert len(condor.jobs()) == 1  # it is still queued: no second one
    assert "activated=0 pending=1 nqueue=5, the idle pilot is queued -> 0" in result.stderr
    assert (
        "activated=0 pending=0: the queue's idle pilot is NDGF-T1-arc01.ndgf.org-atlas's turn"
        in result.stderr
    )


def test_offline_gets_nothing_and_test_gets_its_test_pilot(tmp_path, stand, condor):
    stand.stats = {"DOWN-SITE": {"activated": 100}, "TEST-SITE": {"activated": 100}}
    conf = write_config(tmp_path, stand, "[DOWN-SITE]\n[TEST-SITE]")
    result = run(conf, condor, "--once")
    assert per_label(condor.jobs()) == {"TEST-SITE-ce01.test.example-default": 1}
    assert "DOWN-SITE-ce01.down.example-default pq=DOWN-SITE" in result.stderr
    assert "Classic: in=0 status=offline -> 0" in result.stderr
    run(conf, condor, "--once")  # the test pilot is pending: no second one
    assert len(condor.jobs()) == 1


def test_two_ces_of_one_pq_share_the_activated_jobs(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 3}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]\nschedplugin = Ready\n")
    run(conf, condor, "--once")
    assert len(condor.jobs()) == 3  # one pilot per activated job, not one per job per CE
    assert sorted(per_label(condor.jobs()).values()) == [1, 2]


# --- never over-submit ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, "internal error"),
        (200, "{'CERN': {'activated': 26}}"),
        (200, '{"success": false, "message": "x"}'),
    ],
    ids=["http-500", "python-repr", "success-false"],
)
def test_no_panda_data_no_pilots_and_the_factory_keeps_cycling(tmp_path, stand, condor, status, body):
    stand.panda_status, stand.panda_body = status, body
    result = run(write_config(tmp_path, stand, "[CERN]"), condor, "--cycles", "2")
    assert condor.jobs() == []
    assert result.stderr.count("NoData: in=0 no PanDA data this cycle -> 0") == 26
    assert "cycle 1:" in result.stderr


def test_a_drained_queue_gets_no_further_pilots_in_the_very_next_cycle(tmp_path, stand, condor):
    """The real server answers a drain with ``success: false``: that cycle has no PanDA data and
    submits nothing, although the answer before asked for more pilots than were sent."""
    stand.script = [{"CERN": {"activated": 1000, "running": 10}}, {}]
    conf = write_config(tmp_path, stand, "[CERN]")
    result = run(conf, condor, "--cycles", "2")
    assert len(condor.jobs()) == 65  # cycle 0 only: 5 per CE
    assert "cycle 1: 13 labels, decided 0, submitted 0, no PanDA data" in result.stderr
    assert "Database failure getting the job statistics" in result.stderr
    assert result.stderr.count("activated=unknown(no PanDA data)") == 13
    state = json.loads((tmp_path / "state" / "status.json").read_text())
    assert state["panda"]["ok"] is False
    assert state["panda"]["last_good"] is not None
    assert all(label["activated"] is None and label["decision"] == 0 for label in state["labels"].values())
    status = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "status", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "PanDA: NO DATA in that cycle, nothing submitted (last good answer" in status.stdout


def test_a_unified_queue_gets_pilots_per_resource_type_sized_and_within_cric_limits(tmp_path, stand, condor):
    """SCORE and MCORE jobs waiting: SCORE pilots and MCORE pilots in proportion (one per job with
    Ready), each sized for its type, MCORE ones within CRIC's resource_type_limits.MCORE."""
    stand.dump = copy.deepcopy(DUMP)
    stand.dump["CERN"]["params"]["resource_type_limits.MCORE"] = 10
    stand.jobs = {
        ("CERN", "SCORE", "managed", "activated"): 30,
        ("CERN", "MCORE", "managed", "activated"): 13,
        ("CERN", "SCORE_HIMEM", "managed", "activated"): 2,
        ("CERN", "MCORE", "user", "activated"): 50,  # not what these pilots ask for
    }
    queue = "[CERN]\nresourceTypes = auto\nschedplugin = Ready\ndemandJobLabels = managed\n"
    result = run(write_config(tmp_path, stand, queue), condor, "--once")
    jobs = condor.jobs()
    by_type = Counter(job["APF_RESOURCE_TYPE"] for job in jobs)
    assert by_type == {"SCORE": 30, "MCORE": 10, "SCORE_HIMEM": 2}
    sizes = {(job["APF_RESOURCE_TYPE"], job["xcount"], job["maxMemory"]) for job in jobs}
    assert sizes == {("SCORE", 1, 2000), ("MCORE", 8, 16000), ("SCORE_HIMEM", 1, 4000)}
    for job in jobs:
        assert f"--resource-type {job['APF_RESOURCE_TYPE']}" in job["Arguments"]
        assert job["MATCH_APF_QUEUE"].endswith("-" + job["APF_RESOURCE_TYPE"])
    assert "ResourceTypeLimit" in result.stderr
    asked = [request.path for request, _ in stand.server.log if request.path.startswith("/api/")]
    assert asked == [DETAILED_PATH]  # one request per cycle, the detailed one


def test_the_stand_in_answers_as_panda_does(stand):
    """What the fixture serves, checked against the measured facts (so the suite tests real paths)."""
    stand.stats = {"CERN": {"activated": 3, "merging": 2}, "AGLT2": {"activated": 0}, None: {"activated": 1}}
    url = stand.panda_url + STATS_PATH
    answer = requests.get(url, headers={"Accept": "application/json"}, timeout=5).json()
    assert answer == {
        "success": True,
        "message": "",
        "data": {
            "CERN": {"activated": 3, "assigned": 0, "running": 0},
            "null": {"activated": 1, "assigned": 0, "running": 0},
        },
    }
    assert requests.get(url, headers={"Accept": "application/json, */*"}, timeout=5).text.startswith(
        "{'success': True"
    )
    stand.stats = {"CERN": {"activated": 0}}
    drained = requests.get(url, headers={"Accept": "application/json"}, timeout=5).json()
    assert drained == {"success": False, "message": "Database failure getting the job statistics", "data": {}}


@pytest.mark.parametrize("kind", ["exit", "garbage", "hang"])
def test_condor_q_failing_means_nothing_is_submitted(tmp_path, stand, condor, kind):
    stand.stats = {"NDGF-T1": {"activated": 50}}
    condor.fail_next("condor_q", kind)
    result = run(write_config(tmp_path, stand, "[NDGF-T1]"), condor, "--once")
    assert condor.jobs() == []
    assert condor.calls(SUBMITTER) == []
    assert "NoData: in=0 pilot counts unknown or stale -> 0" in result.stderr


def test_one_failing_schedd_does_not_stop_the_other(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 50}, "TEST-SITE": {"activated": 5}}
    queues = "[NDGF-T1]\ncondorSchedd = schedd2.example.org\n[TEST-SITE]\n"  # a schedd the pool does not know
    result = run(write_config(tmp_path, stand, queues), condor, "--once")
    assert "condor_q (schedd2.example.org) exited 1" in result.stderr
    assert [call.schedd for call in condor.calls(SUBMITTER)] == [None]
    assert per_label(condor.jobs()) == {"TEST-SITE-ce01.test.example-default": 1}


def test_a_failing_submission_is_not_retried_and_the_next_cycle_decides_again(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 50}}
    condor.fail_next(SUBMITTER, "exit", count=1)
    conf = write_config(tmp_path, stand, "[NDGF-T1]")
    result = run(conf, condor, "--once")
    assert len(condor.calls(SUBMITTER)) == 1  # one per schedd, no retry
    assert condor.jobs() == []
    failed = f"{SUBMITTER} (local schedd) exited 1"
    # it said nothing: the label it may have been at is unknown, the one after it not submitted
    assert result.stderr.count(f"submitted=0 error='outcome unknown: {failed}") == 1
    assert result.stderr.count(f"submitted=0 error='not submitted: {failed}") == 1
    run(conf, condor, "--once")
    assert per_label(condor.jobs()) == {"NDGF-T1-arc01.ndgf.org-atlas": 5, "NDGF-T1-arc02.ndgf.org-atlas": 5}


def test_ids_printed_before_the_submission_failed_are_kept(tmp_path, stand, condor):
    """The jobs were queued and their ids printed, then the program failed: the ids are kept."""
    stand.stats = {"NDGF-T1": {"activated": 50}}
    condor.fail_next(SUBMITTER, "queued-exit")
    result = run(write_config(tmp_path, stand, "[NDGF-T1]"), condor, "--once")
    assert len(condor.jobs()) == 10
    assert result.stderr.count("decision=5 submitted=5 ids=") == 2
    assert "submitted 10" in result.stderr


def test_max_pilots_holds_across_cycles(tmp_path, stand, condor):
    stand.stats = {"CERN": {"activated": 1000}}
    conf = write_config(tmp_path, stand, "[CERN]", factory="maxPilots = 30\nmaxPerCycle = 20")
    run(conf, condor, "--once")
    assert len(condor.jobs()) == 20
    run(conf, condor, "--once")
    assert len(condor.jobs()) == 30
    run(conf, condor, "--once")
    assert len(condor.jobs()) == 30


def test_a_broken_queue_section_disables_only_that_queue(tmp_path, stand, condor):
    stand.stats = {"TEST-SITE": {"activated": 5}, "NDGF-T1": {"activated": 5}}
    result = run(write_config(tmp_path, stand, "[NDGF-T1]\nnqeue = 3\n[TEST-SITE]"), condor, "--once")
    assert set(per_label(condor.jobs())) == {"TEST-SITE-ce01.test.example-default"}
    assert "[NDGF-T1] nqeue: unknown key (did you mean 'nqueue'?)" in result.stderr


def test_dry_run_writes_only_to_its_own_directory(tmp_path, stand, condor):
    """Safe beside the live daemon: no monitor traffic, the live state and pilot log tree
    untouched, the directory it wrote to printed."""
    stand.stats = {"CERN": {"activated": 26}}
    monitor = f"{stand.server.url_for('/mon')}"
    conf = write_config(tmp_path, stand, "[CERN]", factory=f"monitorURL = {monitor}\nmonitorToken = t\n")
    live = tmp_path / "state" / "status.json"
    live.parent.mkdir()
    live.write_text("the live daemon's state\n")
    env = {**condor.env, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "run", "-c", str(conf), "--once", "--dry-run"],
        env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert condor.calls(SUBMITTER) == []
    assert not [r for r, _ in stand.server.log if r.path.startswith("/mon")]
    assert live.read_text() == "the live daemon's state\n"
    assert sorted(p.name for p in live.parent.iterdir()) == ["status.json"]  # no schedconfig copy
    assert not (tmp_path / "logs").exists()
    [own] = list((tmp_path / "tmp").iterdir())
    assert str(own) in result.stdout
    assert "dry run" in result.stdout
    [path] = own.glob("logs/*/_submit/*.json")  # one request file per schedd, a description per label
    request = {entry["label"]: entry for entry in json.loads(path.read_text())["labels"]}
    assert set(request) == {f"CERN-{host}-share" for host in CERN_CES}
    block = request["CERN-ce504.cern.ch-share"]["description"]
    assert "grid_resource = condor ce504.cern.ch ce504.cern.ch:9619" in block
    assert '+MATCH_APF_QUEUE = "CERN-ce504.cern.ch-share"' in block
    assert all(entry["description"].endswith("\nqueue 2\n") for entry in request.values())
    assert json.loads((own / "status.json").read_text())["labels"]
    assert "stopped after 1 cycle\n" in result.stderr  # singular: not "1 cycles"


def test_dry_run_directory_can_be_given(tmp_path, stand, condor):
    stand.stats = {"CERN": {"activated": 26}}
    own = tmp_path / "mine"
    conf = write_config(tmp_path, stand, "[CERN]")
    result = run(conf, condor, "--once", "--dry-run", "--dry-run-dir", str(own))
    assert str(own) in result.stdout
    assert sorted(own.glob("logs/*/_submit/*.json"))
    assert not (tmp_path / "logs").exists()


# ---- housekeeping: all labels at once --------------------------------------------------------

HOUSEKEEPING = "[CERN]\nholdRecoverableCodes = 12\nholdReleaseBackoff = 60\nholdTimeout = 600\n"


def _held_pilots_of_three_labels(condor) -> list[str]:
    """Per label a pilot held for a recoverable cause (release it) and one held too long (remove)."""
    labels = [f"CERN-{host}-share" for host in CERN_CES[:3]]
    for label in labels:
        text = 'universe = vanilla\nexecutable = /bin/true\n+FactoryId = "e2e-factory"\n'
        recoverable, stuck = condor.submit(f'{text}+MATCH_APF_QUEUE = "{label}"\nqueue 2\n')
        condor.set_status(
            recoverable, JobStatus.HELD, hold_reason="Transfer input files failure", hold_reason_code=12
        )
        condor.set_status(stuck, JobStatus.HELD, hold_reason="Error from CE: auth failed", hold_reason_code=2)
        condor.age(recoverable, 120)
        condor.age(stuck, 700)
    return labels


def test_housekeeping_is_one_call_per_schedd_and_cause_for_all_labels(tmp_path, stand, condor):
    """A CE outage holds the pilots of many labels: one condor_release and one condor_rm per cause
    for the schedd, not one per label."""
    stand.stats = {}
    labels = _held_pilots_of_three_labels(condor)
    result = run(write_config(tmp_path, stand, HOUSEKEEPING), condor, "--once")
    releases, removals = condor.calls("condor_release"), condor.calls("condor_rm")
    assert len(releases) == 1
    assert len(removals) == 1
    assert sorted(releases[0].argv[-3:]) == ["1.0", "2.0", "3.0"]
    assert sorted(removals[0].argv[-3:]) == ["1.1", "2.1", "3.1"]
    assert "autopyfactory housekeeping: held longer than holdTimeout" in " ".join(removals[0].argv)
    lines = [line for line in result.stderr.splitlines() if "housekeeping: released 1, removed 1" in line]
    assert len(lines) == 3
    assert all(any(f"{label} " in line for line in lines) for label in labels)


def test_a_failed_housekeeping_call_is_reported_for_every_label_it_carried(tmp_path, stand, condor):
    stand.stats = {}
    labels = _held_pilots_of_three_labels(condor)
    condor.fail_next("condor_rm", "exit", message="ERROR: Failed to connect to local queue manager")
    result = run(write_config(tmp_path, stand, HOUSEKEEPING), condor, "--once")
    failed = [line for line in result.stderr.splitlines() if "housekeeping: failed: " in line]
    assert len(failed) == 3
    assert all(any(label in line for line in failed) for label in labels)
    assert all("Failed to connect to local queue manager" in line for line in failed)
    assert len(condor.calls("condor_release")) == 1  # the releases went through all the same


# --- pilot log cleanup ---------------------------------------------------------------------------


def test_a_cycle_cleans_old_pilot_logs_by_each_label_s_keep_days(tmp_path, stand, condor):
    """The cycle gives the log cleanup its labels' logKeepDays; a label no longer configured
    keeps [QueueDefaults] logKeepDays; the days in between stay."""
    conf = write_config(tmp_path, stand, "[CERN]\nlogKeepDays = 5", defaults="logKeepDays = 30")
    today = datetime.now(UTC).date()
    label = "CERN-ce503.cern.ch-share"
    kept = [(2, label), (10, "GONE"), (29, "GONE")]
    deleted = [(10, label), (40, "GONE")]
    for days, name in kept + deleted:
        directory = tmp_path / "logs" / (today - timedelta(days=days)).isoformat() / name
        directory.mkdir(parents=True)
        (directory / "1.0.out").write_text("pilot log\n")
    run(conf, condor, "--once")
    left = {(p.parent.name, p.name) for p in (tmp_path / "logs").glob("*/*")}
    for days, name in kept:
        assert ((today - timedelta(days=days)).isoformat(), name) in left
    for days, name in deleted:
        assert ((today - timedelta(days=days)).isoformat(), name) not in left


def test_an_arc_ce_label_without_a_credential_gets_nothing_and_says_why(tmp_path, stand, condor):
    """The rule ``check`` reports as an error holds in ``run``: HTCondor would hold every pilot."""
    stand.stats = {"NDGF-T1": {"activated": 50}, "TEST-SITE": {"activated": 5}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]\nscitokensFile =\n[TEST-SITE]\nscitokensFile =\n")
    result = run(conf, condor, "--once")
    # an HTCondor-CE may map its pilots its own way: it gets its pilot
    assert per_label(condor.jobs()) == {"TEST-SITE-ce01.test.example-default": 1}
    reason = 'ARC-CE without x509userproxy or scitokensFile: HTCondor would hold every pilot ("ARC job has no'
    assert result.stderr.count(f'Credentials: in=5 {reason} credentials") -> 0') == 2
