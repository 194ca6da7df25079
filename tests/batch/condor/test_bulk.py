"""One submission per schedd and cycle, one cluster per label: ids, refusals, failures (emulator).

The submission program is the factory's own (``autopyfactory-condor-submit``); the emulator runs
its code with an emulated schedd in place of HTCondor's Python bindings (tests/support). What the
real schedd does with the same requests is checked in tests/htcondor/test_bulk_real.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from autopyfactory.batch.condor.backend import CondorBackend
from autopyfactory.batch.condor.bulk import BATCH_DIR, BlockCache, assign, read_lines, submit_batch
from autopyfactory.batch.condor.command import Schedd
from autopyfactory.batch.condor.submit import render_submit, write_submit_file
from autopyfactory.batch.interface import SubmitContext
from autopyfactory.domain.label import Label
from tests.support.condor_emulator.driver import CondorEmulator
from tests.support.factory_conf import labels_from, write_factory_conf

PROGRAM = "autopyfactory-condor-submit"
BIG_MEMORY = {
    "MEMCAP": [
        "maxMemory =?= undefined || maxMemory <= 40000",
        'strcat("maxMemory ", maxMemory, " MB is over the site limit of 40000 MB")',
    ]
}


@pytest.fixture
def labels(tmp_path: Path) -> dict[str, Label]:
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text("#!/bin/sh\n")
    path = write_factory_conf(
        tmp_path,
        factory={"factoryId": "bulk-factory"},
        defaults={"executable": wrapper},
        queues={"CERN": {}, "NDGF-T1": {}},
    )
    return {label.name: label for label in labels_from(path)}


def context(tmp_path: Path, dry_run: bool = False) -> SubmitContext:
    return SubmitContext("bulk-factory", "https://pandaserver.cern.ch:25443", str(tmp_path / "logs"),
                         "", "", "2026-03-01", dry_run)  # fmt: skip


CERN = ["CERN-ce503.cern.ch-share", "CERN-ce504.cern.ch-share", "CERN-ce505.cern.ch-share"]


def by_cluster(condor: CondorEmulator) -> dict[int, list[str]]:
    clusters: dict[int, list[str]] = {}
    for job in condor.jobs():
        clusters.setdefault(job["ClusterId"], []).append(job["MATCH_APF_QUEUE"])
    return clusters


def with_memory(label: Label, maxrss: int) -> Label:
    return dataclasses.replace(label, resources=dataclasses.replace(label.resources, maxrss=maxrss))


def test_one_run_per_schedd_one_cluster_per_label_ids_exact(labels, tmp_path, condor):
    requests = [(labels[CERN[0]], 3), (labels[CERN[1]], 1), (labels[CERN[2]], 2)]
    result = submit_batch(requests, context(tmp_path), Schedd(), timeout=30)
    assert result.calls == 1
    assert len(condor.calls(PROGRAM)) == 1
    assert condor.calls("condor_submit") == []
    assert by_cluster(condor) == {1: [CERN[0]] * 3, 2: [CERN[1]], 3: [CERN[2]] * 2}
    outcomes = result.outcomes
    assert outcomes[CERN[0]].job_ids == ("1.0", "1.1", "1.2")
    assert outcomes[CERN[1]].job_ids == ("2.0",)
    assert outcomes[CERN[2]].job_ids == ("3.0", "3.1")
    assert all(o.error == "" for o in outcomes.values())


def test_the_request_file_holds_each_label_s_own_description_and_is_kept(labels, tmp_path, condor):
    result = submit_batch([(labels[CERN[0]], 2), (labels[CERN[1]], 1)], context(tmp_path), Schedd(), 30)
    path = Path(result.outcomes[CERN[0]].submit_file)
    assert path.parent == tmp_path / "logs" / "2026-03-01" / BATCH_DIR
    assert path.suffix == ".json"
    request = json.loads(path.read_text())
    assert [(e["label"], e["count"]) for e in request["labels"]] == [(CERN[0], 2), (CERN[1], 1)]
    for entry in request["labels"]:  # each exactly what that label alone renders
        assert entry["description"] == render_submit(
            labels[entry["label"]], entry["count"], context(tmp_path)
        )


def test_no_setting_of_one_label_reaches_another(labels, tmp_path, condor):
    """Each label's pilots have exactly the ad its own description makes alone."""
    first = labels[CERN[0]]
    first = dataclasses.replace(
        first,
        resources=dataclasses.replace(
            first.resources, environ=(("SITE_SECRET", "s3cret"), ("HTTP_PROXY_X", "x"))
        ),
        submit=dataclasses.replace(first.submit, site_attributes=(("+AccountingGroup", '"group_a"'),)),
    )
    second = labels[CERN[1]]  # no environ, no site attributes
    submit_batch([(first, 1), (second, 1)], context(tmp_path), Schedd(), 30)
    together = {job["MATCH_APF_QUEUE"]: job for job in condor.jobs()}
    alone = submit_batch([(second, 1)], context(tmp_path), Schedd(), 30).outcomes[CERN[1]].job_ids
    reference = condor.job(alone[0])
    ignore = {"ClusterId", "ProcId", "GlobalJobId", "QDate", "EnteredCurrentStatus", "Environment"}
    ignore |= {"Out", "Err", "UserLog"}
    mine = together[CERN[1]]
    assert {k: v for k, v in mine.items() if k not in ignore} == {
        k: v for k, v in reference.items() if k not in ignore
    }
    assert "SITE_SECRET" not in mine["Environment"]
    assert "AccountingGroup" not in mine
    assert together[CERN[0]]["AccountingGroup"] == "group_a"
    assert "SITE_SECRET=s3cret" in together[CERN[0]]["Environment"]


def test_a_refused_label_costs_only_itself_and_says_why(labels, tmp_path, condor):
    condor.configure(SUBMIT_REQUIREMENTS=BIG_MEMORY)
    big = with_memory(labels[CERN[1]], 64000)
    requests = [(labels[CERN[0]], 2), (big, 1), (labels[CERN[2]], 1)]
    result = submit_batch(requests, context(tmp_path), Schedd(), 30)
    assert result.calls == 1
    assert len(condor.calls(PROGRAM)) == 1
    outcomes = result.outcomes
    assert outcomes[CERN[1]].job_ids == ()
    assert outcomes[CERN[1]].error == "not submitted: maxMemory 64000 MB is over the site limit of 40000 MB"
    assert outcomes[CERN[0]].job_ids == ("1.0", "1.1")
    assert outcomes[CERN[2]].job_ids == ("2.0",)
    assert by_cluster(condor) == {1: [CERN[0]] * 2, 2: [CERN[2]]}
    again = submit_batch(requests, context(tmp_path), Schedd(), 30)  # the next cycle: one run again
    assert again.calls == 1
    assert len(condor.calls(PROGRAM)) == 2


def test_max_jobs_per_owner_refuses_the_labels_that_do_not_fit(labels, tmp_path, condor):
    condor.configure(MAX_JOBS_PER_OWNER=3)
    requests = [(labels[CERN[0]], 2), (labels[CERN[1]], 2), (labels[CERN[2]], 1)]
    outcomes = submit_batch(requests, context(tmp_path), Schedd(), 30).outcomes
    assert outcomes[CERN[0]].job_ids == ("1.0", "1.1")
    assert outcomes[CERN[1]].job_ids == ()
    assert (
        outcomes[CERN[1]].error == "not submitted: Number of submitted jobs would exceed MAX_JOBS_PER_OWNER"
    )
    assert outcomes[CERN[2]].job_ids == ("2.0",)  # one more still fits
    assert len(condor.jobs()) == 3


def test_ids_printed_before_a_failure_are_kept(labels, tmp_path, condor):
    condor.fail_next(PROGRAM, "queued-exit", message="Segmentation fault\n", exit_code=139)
    result = submit_batch([(labels[CERN[0]], 2), (labels[CERN[1]], 1)], context(tmp_path), Schedd(), 30)
    assert result.outcomes[CERN[0]].job_ids == ("1.0", "1.1")
    assert result.outcomes[CERN[1]].job_ids == ("2.0",)
    assert all(o.error == "" for o in result.outcomes.values())  # each one's own submission worked


@pytest.mark.parametrize("exit_code", [0, 1])
def test_every_printed_id_is_kept_whatever_else_was_printed(labels, tmp_path, condor, exit_code):
    """Stray lines before, between and after the program's lines; a clean or a failed exit."""
    condor.fail_next(PROGRAM, "queued-noise", exit_code=exit_code, message="" if exit_code == 0 else None)
    requests = [(labels[CERN[0]], 2), (labels[CERN[1]], 1), (labels[CERN[2]], 1)]
    outcomes = submit_batch(requests, context(tmp_path), Schedd(), 30).outcomes
    assert [o.job_ids for o in outcomes.values()] == [("1.0", "1.1"), ("2.0",), ("3.0",)]
    assert all(o.error == "" for o in outcomes.values())


def test_a_schedd_hanging_mid_run_leaves_the_label_in_flight_unknown_and_the_rest_not_submitted(
    labels, tmp_path, condor
):
    condor.fail_next(PROGRAM, "hang-in", after=1, seconds=60)
    requests = [(labels[CERN[0]], 2), (labels[CERN[1]], 1), (labels[CERN[2]], 1)]
    outcomes = submit_batch(requests, context(tmp_path), Schedd(), timeout=3).outcomes
    assert outcomes[CERN[0]].job_ids == ("1.0", "1.1")
    assert outcomes[CERN[0]].error == ""
    assert outcomes[CERN[1]].error.startswith(
        "outcome unknown: autopyfactory-condor-submit (local schedd): no answer"
    )
    assert outcomes[CERN[2]].error.startswith(
        "not submitted: autopyfactory-condor-submit (local schedd): no answer"
    )


def test_an_unknown_schedd_submits_nothing_and_every_label_says_why(labels, tmp_path, condor):
    result = submit_batch([(labels[CERN[0]], 1), (labels[CERN[1]], 1)], context(tmp_path), Schedd("gone"), 30)
    for outcome in result.outcomes.values():
        assert (
            outcome.error
            == "not submitted: not tried: cannot find the address of schedd gone in pool (local)"
        )


def test_a_label_that_cannot_be_rendered_drops_out_alone(labels, tmp_path, condor):
    broken = dataclasses.replace(labels[CERN[1]], name="a/b")
    result = submit_batch(
        [(labels[CERN[0]], 1), (broken, 1), (labels[CERN[2]], 1)], context(tmp_path), Schedd(), 30
    )
    assert "cannot name a directory" in result.outcomes["a/b"].error
    assert result.outcomes[CERN[0]].job_ids == ("1.0",)
    assert result.outcomes[CERN[2]].job_ids == ("2.0",)


def test_a_missing_wrapper_is_refused_like_condor_submit_refuses_it(labels, tmp_path, condor):
    label = labels[CERN[0]]
    gone = dataclasses.replace(
        label, submit=dataclasses.replace(label.submit, executable=str(tmp_path / "no.sh"))
    )
    outcomes = submit_batch([(gone, 1), (labels[CERN[1]], 1)], context(tmp_path), Schedd(), 30).outcomes
    assert outcomes[CERN[0]].error == (
        f"not submitted: Can't access executable file {tmp_path / 'no.sh'}: No such file or directory"
    )
    assert outcomes[CERN[1]].job_ids == ("1.0",)


def test_dry_run_writes_the_request_file_and_runs_nothing(labels, tmp_path, condor):
    result = submit_batch([(labels[CERN[0]], 1)], context(tmp_path, dry_run=True), Schedd(), 30)
    assert condor.calls() == []
    assert result.calls == 0
    request = json.loads(Path(result.outcomes[CERN[0]].submit_file).read_text())
    assert request["labels"][0]["description"].rstrip().endswith("queue 1")


def test_schedds_are_submitted_to_concurrently_each_once(labels, tmp_path, condor):
    condor.add_schedd("s2.example.org")
    moved = labels[CERN[1]]
    moved = dataclasses.replace(moved, submit=dataclasses.replace(moved.submit, schedd="s2.example.org"))
    backend = CondorBackend("bulk-factory", Schedd(), timeout=30)
    outcomes = backend.submit([(labels[CERN[0]], 2), (moved, 3), (labels[CERN[2]], 1)], context(tmp_path))
    assert len(condor.calls(PROGRAM)) == 2
    assert [j["MATCH_APF_QUEUE"] for j in condor.jobs("s2.example.org")] == [CERN[1]] * 3
    assert outcomes[CERN[1]].job_ids == ("1.0", "1.1", "1.2")
    assert outcomes[CERN[2]].job_ids == ("2.0",)


def test_a_program_that_cannot_run_submits_nothing(labels, tmp_path, condor, monkeypatch):
    from autopyfactory.batch.condor import bulk

    monkeypatch.setattr(bulk, "submitter_command", lambda: [str(tmp_path / "missing-program")])
    outcomes = submit_batch(
        [(labels[CERN[0]], 1), (labels[CERN[1]], 1)], context(tmp_path), Schedd(), 30
    ).outcomes
    assert all(
        o.error.startswith("not submitted: autopyfactory-condor-submit: cannot run")
        for o in outcomes.values()
    )


# ---- the program's lines on their own ---------------------------------------------------------


def test_lines_a_cut_last_line_and_stray_lines():
    labels = {"A", "B"}
    output = (
        'Submitting job(s).\n{"label": "A", "outcome": "submitted", "cluster": 7, "first": 0, "count": 2}\n'
        '{"label": "X", "outcome": "submitted", "cluster": 8, "first": 0, "count": 1}\n'
        '{"label": "B", "outcome": "submitted", "cluster": 9, "fir'
    )
    found, stray = read_lines(output, labels)
    assert list(found) == ["A"]
    assert stray[0] == "Submitting job(s)."
    assert "X" in stray[1]


def test_outcomes_in_order_after_a_stop():
    asked = [("A", 2), ("B", 1), ("C", 1), ("D", 1)]
    lines = {
        "A": {"label": "A", "outcome": "submitted", "cluster": 5, "first": 0, "count": 2},
        "B": {"label": "B", "outcome": "refused", "error": "too big"},
    }
    outcomes = assign(asked, lines, "killed")
    assert outcomes["A"].job_ids == ("5.0", "5.1")
    assert outcomes["B"].error == "not submitted: too big"
    assert outcomes["C"].error == "outcome unknown: killed"  # the one it was at
    assert outcomes["D"].error == "not submitted: killed"  # not reached
    clean = assign(asked, lines, "")  # ended well, yet silent on C and D: unknown, never "not submitted"
    assert clean["C"].error.startswith("outcome unknown")
    assert clean["D"].error.startswith("outcome unknown")
    assert assign(asked, {}, "cannot run", started=False)["A"].error == "not submitted: cannot run"


def test_request_files_are_written_without_fsync(labels, tmp_path, condor, monkeypatch):
    """Written once, read once: durability would cost two fsyncs per file, for nothing."""

    def no_fsync(_fd: int) -> None:
        raise AssertionError("fsync of a request file")

    monkeypatch.setattr(os, "fsync", no_fsync)
    assert write_submit_file(tmp_path / "one", "queue 1\n").read_text() == "queue 1\n"
    result = submit_batch([(labels[CERN[0]], 1)], context(tmp_path), Schedd(), timeout=30)
    assert result.outcomes[CERN[0]].job_ids == ("1.0",)


def test_pilots_of_a_failed_submission_are_listed_by_a_census_that_keeps_them(labels, tmp_path, condor):
    """The program queued the jobs but printed nothing and failed; a census that keeps the label
    (the cycle asks so while the label is unsettled) lists all its pilots, so that the monitor
    hears of them; the other label's pilots are counted, not listed."""
    condor.fail_next(PROGRAM, "queued-exit", output="")
    backend = CondorBackend("bulk-factory", Schedd(), timeout=30)
    label, other = labels[CERN[0]], labels[CERN[1]]
    outcomes = backend.submit([(label, 2)], context(tmp_path))
    assert outcomes[CERN[0]].job_ids == ()
    assert outcomes[CERN[0]].error.startswith("outcome unknown")
    condor.submit(  # another label's pilot of this factory, not listed
        "universe = vanilla\nexecutable = /bin/true\ntransfer_executable = False\n"
        f'+FactoryId = "bulk-factory"\n+MATCH_APF_QUEUE = "{CERN[1]}"\nqueue 1\n'
    )
    census = backend.census([label, other], keep={CERN[0]})
    assert [pilot.job_id for pilot in census.pilots[CERN[0]]] == ["1.0", "1.1"]
    assert CERN[1] not in census.pilots
    assert census.supply[CERN[0]].idle == 2
    assert census.supply[CERN[1]].idle == 1


def test_a_steady_cycle_renders_and_validates_each_label_once(labels, tmp_path, monkeypatch):
    from autopyfactory.batch.condor import bulk

    rendered = []
    original = bulk.render_label
    monkeypatch.setattr(bulk, "render_label", lambda *a: rendered.append(a[0].name) or original(*a))
    cache = BlockCache()
    label = labels[CERN[0]]
    cache.description(label, 3, context(tmp_path))
    assert cache.description(label, 5, context(tmp_path)) == render_submit(label, 5, context(tmp_path))
    assert rendered == [CERN[0]]
    each_cycle = dataclasses.replace(context(tmp_path), submitted=lambda name, outcome: None)
    cache.description(label, 5, each_cycle)  # the cycle's new callback describes the same pilots
    assert rendered == [CERN[0]]
    cache.description(label, 5, context(tmp_path, dry_run=True))  # another context: rendered again
    assert rendered == [CERN[0]] * 2


def test_hanging_schedds_are_asked_at_the_same_time(labels, tmp_path, condor):
    """Two schedds that hang cost one condorTimeout, not two: both condor_q start at once."""
    for schedd in ("old.example.org", "new.example.org"):
        condor.add_schedd(schedd)
    moved = [
        dataclasses.replace(labels[name], submit=dataclasses.replace(labels[name].submit, schedd=schedd))
        for name, schedd in ((CERN[0], "old.example.org"), (CERN[1], "new.example.org"))
    ]
    condor.fail_next("condor_q", "hang", count=2, seconds=60)
    timeout = 10.0
    census = CondorBackend("bulk-factory", Schedd(), timeout=timeout).census(moved)
    assert census.supply == {CERN[0]: None, CERN[1]: None}
    assert census.total is None
    first, second = (call.time for call in condor.calls("condor_q"))
    assert abs(second - first) < timeout  # one after the other, the second would start a timeout later
