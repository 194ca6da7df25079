"""The census covers every schedd that may hold this factory's pilots, and doubts an answer that
contradicts what the factory just submitted (a queue moved to another schedd; a condor_q that
answers "nothing"). The real ``autopyfactory run`` against the HTCondor emulator and the PanDA/CRIC
stand-in of tests/cycle/test_e2e.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from autopyfactory.batch.condor.bulk import SUBMITTER
from tests.support.e2e import Stand, per_label, run, write_config

OLD, NEW = "old.example.org", "new.example.org"
NDGF = ["NDGF-T1-arc01.ndgf.org-atlas", "NDGF-T1-arc02.ndgf.org-atlas"]


def moved_queue(tmp_path: Path, stand: Stand, schedd: str, factory: str = "") -> Path:
    return write_config(tmp_path, stand, f"[NDGF-T1]\ncondorSchedd = {schedd}\n", factory=factory)


def test_pilots_left_in_the_old_schedd_count_for_the_label(tmp_path, stand, condor):
    condor.add_schedd(OLD)
    condor.add_schedd(NEW)
    stand.stats = {"NDGF-T1": {"activated": 10}}  # a share of 5 per label
    run(moved_queue(tmp_path, stand, OLD), condor, "--once")
    assert per_label(condor.jobs(OLD)) == dict.fromkeys(NDGF, 5)  # nqueue = 5

    result = run(moved_queue(tmp_path, stand, NEW), condor, "--once")
    assert condor.jobs(NEW) == [], "the idle pilots in the old schedd are the labels' queue"
    assert "idle=5 running=0 held=0 started=0 decision=0" in result.stderr
    remembered = json.loads((tmp_path / "state" / "schedds.json").read_text())
    assert {s["name"] for s in remembered["schedds"]} == {OLD}


def test_pilots_left_in_the_old_schedd_count_for_max_pilots(tmp_path, stand, condor):
    condor.add_schedd(OLD)
    stand.stats = {"NDGF-T1": {"activated": 50}, "CERN": {"activated": 500}}
    run(moved_queue(tmp_path, stand, OLD), condor, "--once")
    assert len(condor.jobs(OLD)) == 10
    conf = write_config(tmp_path, stand, "[CERN]\n", factory="maxPilots = 13")
    result = run(conf, condor, "--once")
    assert len(condor.jobs()) == 3, result.stderr  # 13 - the 10 still queued in the old schedd


def test_an_unreachable_old_schedd_makes_its_labels_and_the_total_unknown(tmp_path, stand, condor):
    condor.add_schedd(OLD)
    condor.add_schedd(NEW)
    stand.stats = {"NDGF-T1": {"activated": 50}}
    run(moved_queue(tmp_path, stand, OLD), condor, "--once")
    shutil.move(condor.state_dir / "schedds" / OLD, tmp_path / "gone")  # the old schedd is down
    result = run(moved_queue(tmp_path, stand, NEW), condor, "--once")
    assert condor.jobs(NEW) == []
    assert "pilots=unknown" in result.stderr


def factory(conf: Path, condor, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autopyfactory", *args, "-c", str(conf)],
        env=condor.env, input=stdin, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_status_names_the_dead_old_schedd_and_the_labels_it_blocks(tmp_path, stand, condor):
    condor.add_schedd(OLD)
    condor.add_schedd(NEW)
    stand.stats = {"NDGF-T1": {"activated": 50}}
    run(moved_queue(tmp_path, stand, OLD), condor, "--once")
    shutil.move(condor.state_dir / "schedds" / OLD, tmp_path / "gone")  # the old schedd is down
    conf = moved_queue(tmp_path, stand, NEW)
    result = run(conf, condor, "--once")
    blocking = (
        f"schedd {OLD} is asked because this factory submitted there before (its pilots there still"
        f" count): labels {NDGF[0]}, {NDGF[1]} are pilots=unknown and get nothing until it answers or"
        f" `autopyfactory schedd forget {OLD}`"
    )
    assert blocking in result.stderr
    status = factory(conf, condor, "status")
    assert blocking in " ".join(status.stdout.split())


def test_a_dead_schedd_is_forgotten_only_after_a_confirmation_and_its_labels_submit_again(
    tmp_path, stand, condor
):
    condor.add_schedd(OLD)
    condor.add_schedd(NEW)
    stand.stats = {"NDGF-T1": {"activated": 50}}
    run(moved_queue(tmp_path, stand, OLD), condor, "--once")
    shutil.move(condor.state_dir / "schedds" / OLD, tmp_path / "gone")
    conf = moved_queue(tmp_path, stand, NEW)
    run(conf, condor, "--once")
    assert condor.jobs(NEW) == []

    refused = factory(conf, condor, "schedd", "forget", OLD, stdin="yes\n")  # not a terminal: no answer
    assert refused.returncode == 2
    assert "nothing changed" in refused.stderr
    assert "are no longer counted, neither for their labels" in refused.stdout
    assert f"{NDGF[0]}, {NDGF[1]}" in refused.stdout
    assert OLD in factory(conf, condor, "schedd", "list").stdout

    forgotten = factory(conf, condor, "schedd", "forget", OLD, "--yes")
    assert forgotten.returncode == 0, forgotten.stderr
    assert OLD not in factory(conf, condor, "schedd", "list").stdout
    result = run(conf, condor, "--once")
    assert per_label(condor.jobs(NEW)) == dict.fromkeys(NDGF, 5), result.stderr


def test_forgetting_a_schedd_that_is_not_remembered_changes_nothing(tmp_path, stand, condor):
    conf = write_config(tmp_path, stand, "[NDGF-T1]\n")
    result = factory(conf, condor, "schedd", "forget", "nowhere.example.org", "--yes")
    assert result.returncode == 1
    assert "nowhere.example.org is not remembered" in result.stderr


def test_an_old_schedd_with_none_of_our_pilots_left_is_forgotten(tmp_path, stand, condor):
    condor.add_schedd(OLD)
    condor.add_schedd(NEW)
    stand.stats = {"NDGF-T1": {"activated": 50}}
    run(moved_queue(tmp_path, stand, OLD), condor, "--once")
    condor.complete("true", schedd=OLD)
    run(moved_queue(tmp_path, stand, NEW), condor, "--once")
    assert len(condor.jobs(NEW)) == 10
    remembered = json.loads((tmp_path / "state" / "schedds.json").read_text())
    assert {s["name"] for s in remembered["schedds"]} == {NEW}


# --- plausibility: condor_q says "nothing" right after a submission ---------------------------


def test_pilots_vanished_without_a_trace_make_the_census_suspect(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 50}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]\n")
    run(conf, condor, "--once")
    assert len(condor.jobs()) == 10
    condor.fail_next("condor_q", "garbage", output="[]")  # exit 0, "no pilots"
    result = run(conf, condor, "--once")
    assert len(condor.jobs()) == 10, "nothing may be submitted on a census that lost 10 pilots"
    assert "are in neither condor_q nor condor_history: census suspect" in result.stderr
    assert "pilots=unknown" in result.stderr


def test_pilots_that_finished_are_no_reason_for_doubt(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 50}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]\n")
    run(conf, condor, "--once")
    condor.complete("true")  # they ran and left: in condor_history
    result = run(conf, condor, "--once")
    assert len(condor.jobs()) == 10
    assert "census suspect" not in result.stderr


# --- the memory itself: never a pilot where the census would not look ---------------------------


def test_a_submission_that_cannot_be_remembered_is_not_made(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 50}}
    (tmp_path / "state" / "schedds.json").mkdir(parents=True)  # cannot be replaced by a file
    result = run(write_config(tmp_path, stand, "[NDGF-T1]\n"), condor, "--once")
    assert condor.calls(SUBMITTER) == []
    assert "nothing submitted: cannot remember the submission to local schedd in" in result.stderr


def test_a_corrupt_memory_is_a_warning_and_is_rewritten(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 10}}
    path = tmp_path / "state" / "schedds.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"format": 1, "schedds": [{"name": 5}]}')
    result = run(write_config(tmp_path, stand, "[NDGF-T1]\n"), condor, "--once")
    assert "schedds.json is corrupt" in result.stderr
    assert len(condor.jobs()) == 10
    assert [s["name"] for s in json.loads(path.read_text())["schedds"]] == [""]


def test_a_dry_run_leaves_the_memory_alone(tmp_path, stand, condor):
    condor.add_schedd(OLD)
    stand.stats = {"NDGF-T1": {"activated": 10}}
    path = tmp_path / "state" / "schedds.json"
    path.parent.mkdir(parents=True)
    old = {"name": OLD, "pool": "", "labels": {NDGF[0]: 1.0}, "recent": []}
    text = json.dumps({"format": 1, "schedds": [old]})
    path.write_text(text)  # an old schedd with none of our pilots left: a real run forgets it
    run(write_config(tmp_path, stand, "[NDGF-T1]\n"), condor, "--once", "--dry-run")
    assert path.read_text() == text
    assert condor.calls(SUBMITTER) == []
