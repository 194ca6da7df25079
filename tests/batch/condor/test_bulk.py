"""One condor_submit per schedd: the batch file, the id mapping, failures (emulator behind the CLI).

The facts the batch file relies on (one cluster per executable change, settings inherited from
the block above, all-or-nothing under MAX_JOBS_PER_OWNER) are checked against a real HTCondor in
tests/htcondor/test_bulk_real.py; the emulator reproduces them (tests/support).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from autopyfactory.batch.condor.backend import CondorBackend
from autopyfactory.batch.condor.bulk import (
    BATCH_DIR,
    BlockCache,
    assign,
    render_block,
    submit_batch,
    terse_clusters,
)
from autopyfactory.batch.condor.command import Schedd
from autopyfactory.batch.condor.submit import write_submit_file
from autopyfactory.batch.interface import SubmitContext
from autopyfactory.domain.label import Label
from tests.support.condor_emulator.driver import CondorEmulator
from tests.support.factory_conf import labels_from, write_factory_conf


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


def test_one_call_one_cluster_per_label_ids_exact(labels, tmp_path, condor):
    requests = [(labels[name], n) for name, n in zip(CERN, (3, 1, 2), strict=True)]
    result = submit_batch(requests, context(tmp_path), Schedd(), timeout=30)
    assert result.calls == 1
    assert len(condor.calls("condor_submit")) == 1
    assert {name: o.job_ids for name, o in result.outcomes.items()} == {
        CERN[0]: ("1.0", "1.1", "1.2"), CERN[1]: ("2.0",), CERN[2]: ("3.0", "3.1"),
    }  # fmt: skip
    assert all(o.error == "" for o in result.outcomes.values())
    for name, outcome in result.outcomes.items():
        for cid in outcome.job_ids:
            assert condor.job(cid)["MATCH_APF_QUEUE"] == name
    assert by_cluster(condor) == {1: [CERN[0]] * 3, 2: [CERN[1]], 3: [CERN[2]] * 2}


def test_the_batch_file_has_a_comment_per_label_and_is_kept(labels, tmp_path, condor):
    outcome = submit_batch([(labels[CERN[0]], 2), (labels[CERN[1]], 1)], context(tmp_path), Schedd(), 30)
    path = Path(outcome.outcomes[CERN[0]].submit_file)
    assert path.parent == tmp_path / "logs" / "2026-03-01" / BATCH_DIR
    text = path.read_text()
    assert f"# autopyfactory label {CERN[0]}: 2 pilots" in text
    assert f"# autopyfactory label {CERN[1]}: 1" in text


def test_a_setting_of_the_block_above_does_not_leak(labels, tmp_path, condor):
    """condor_submit keeps settings across queue statements: a +Attr the next label lacks is cleared,
    periodic expressions the next label lacks are set to False."""
    first, second = labels[CERN[0]], labels[CERN[1]]
    first_submit = dataclasses.replace(first.submit, remove_held_after=600)
    first = dataclasses.replace(first, ce=dataclasses.replace(first.ce, queue="special"), submit=first_submit)
    ages = {"remove_held_after": 0, "remove_idle_after": 0, "remove_running_after": 0}
    second_submit = dataclasses.replace(second.submit, **ages)
    second = dataclasses.replace(second, ce=dataclasses.replace(second.ce, queue=""), submit=second_submit)
    result = submit_batch([(first, 1), (second, 1)], context(tmp_path), Schedd(), 30)
    a, b = (condor.job(result.outcomes[label.name].job_ids[0]) for label in (first, second))
    assert a["remote_queue"] == "special"
    assert b["remote_queue"] is None  # undefined, as in condor
    assert "600" in str(a["PeriodicRemove"])
    assert str(b["PeriodicRemove"]).lower() in (
        "false",
        "/expr(false)/",
    )


def test_labels_whose_settings_differ_go_to_separate_files(labels, tmp_path, condor):
    arc = "NDGF-T1-arc01.ndgf.org-atlas"
    result = submit_batch([(labels[CERN[0]], 1), (labels[arc], 1)], context(tmp_path), Schedd(), 30)
    assert result.calls == 2
    assert condor.job(result.outcomes[arc].job_ids[0])["MATCH_APF_QUEUE"] == arc
    assert "ArcResources" not in condor.job(result.outcomes[CERN[0]].job_ids[0])


def test_max_jobs_per_owner_refuses_the_whole_batch_and_every_label_says_so(labels, tmp_path, condor):
    condor.configure(MAX_JOBS_PER_OWNER=3)
    result = submit_batch([(labels[CERN[0]], 2), (labels[CERN[1]], 2)], context(tmp_path), Schedd(), 30)
    assert condor.jobs() == []
    for outcome in result.outcomes.values():
        assert outcome.job_ids == ()
        assert outcome.error.startswith("not submitted: condor_submit (local schedd) exited 1")
        assert "MAX_JOBS_PER_OWNER" in outcome.error


def test_ids_printed_before_a_failure_are_kept(labels, tmp_path, condor):
    """condor_submit queued the jobs and printed their ids, then failed: the ids are not lost."""
    condor.fail_next("condor_submit", "queued-exit")
    result = submit_batch([(labels[CERN[0]], 2), (labels[CERN[1]], 1)], context(tmp_path), Schedd(), 30)
    assert result.outcomes[CERN[0]].job_ids == ("1.0", "1.1")
    assert result.outcomes[CERN[1]].job_ids == ("2.0",)
    assert "lost the connection" in result.outcomes[CERN[0]].error


def test_ids_printed_before_a_hang_are_kept(labels, tmp_path, condor):
    condor.fail_next("condor_submit", "queued-hang", seconds=60)
    result = submit_batch([(labels[CERN[0]], 2), (labels[CERN[1]], 1)], context(tmp_path), Schedd(), 3)
    assert result.outcomes[CERN[0]].job_ids == ("1.0", "1.1")
    assert result.outcomes[CERN[1]].job_ids == ("2.0",)
    assert "no answer within 3 s" in result.outcomes[CERN[1]].error


def test_a_label_that_cannot_be_rendered_drops_out_alone(labels, tmp_path, condor):
    bad = labels[CERN[1]]
    bad = dataclasses.replace(bad, submit=dataclasses.replace(bad.submit, arguments="%(nope)s"))
    result = submit_batch(
        [(labels[CERN[0]], 1), (bad, 1), (labels[CERN[2]], 1)], context(tmp_path), Schedd(), 30
    )
    assert "unknown field" in result.outcomes[CERN[1]].error
    assert result.outcomes[CERN[0]].job_ids == ("1.0",)
    assert result.outcomes[CERN[2]].job_ids == ("2.0",)


def test_dry_run_writes_the_file_and_runs_nothing(labels, tmp_path, condor):
    result = submit_batch([(labels[CERN[0]], 1)], context(tmp_path, dry_run=True), Schedd(), 30)
    assert condor.calls("condor_submit") == []
    assert result.calls == 0
    assert Path(result.outcomes[CERN[0]].submit_file).read_text().rstrip().endswith("queue 1")


def test_schedds_are_submitted_to_concurrently_each_once(labels, tmp_path, condor):
    condor.add_schedd("s2.example.org")
    moved = labels[CERN[1]]
    moved = dataclasses.replace(moved, submit=dataclasses.replace(moved.submit, schedd="s2.example.org"))
    backend = CondorBackend("bulk-factory", Schedd(), timeout=30)
    outcomes = backend.submit([(labels[CERN[0]], 2), (moved, 3), (labels[CERN[2]], 1)], context(tmp_path))
    assert len(condor.calls("condor_submit")) == 2
    assert [j["MATCH_APF_QUEUE"] for j in condor.jobs("s2.example.org")] == [CERN[1]] * 3
    assert outcomes[CERN[1]].job_ids == ("1.0", "1.1", "1.2")
    assert outcomes[CERN[2]].job_ids == ("2.0",)


# ---- the mapping on its own -------------------------------------------------------------------


def test_terse_lines_per_cluster_and_a_cut_last_line():
    assert terse_clusters("7.0 - 7.2\n8.0 - 8.0\n") == [("7.0", "7.1", "7.2"), ("8.0",)]
    assert terse_clusters("7.0 - 7.2\n8.0 - 8.") == [("7.0", "7.1", "7.2")]  # cut short: unknown


def test_partial_ids_make_that_label_and_the_rest_unknown(labels, tmp_path):
    blocks = [
        render_block(labels[name], n, context(tmp_path)) for name, n in zip(CERN, (2, 2, 1), strict=True)
    ]
    outcomes = assign(
        blocks, [("5.0", "5.1"), ("6.0",)], "condor_submit (local schedd): no answer within 3 s"
    )
    assert outcomes[CERN[0]].job_ids == ("5.0", "5.1")
    assert outcomes[CERN[1]].job_ids == ("6.0",)
    assert outcomes[CERN[1]].error.startswith("1 of 2 pilots known")
    assert outcomes[CERN[2]].job_ids == ()
    assert outcomes[CERN[2]].error.startswith("outcome unknown")


def test_one_cluster_for_all_labels_is_still_mapped_in_order(labels, tmp_path):
    blocks = [
        render_block(labels[name], n, context(tmp_path)) for name, n in zip(CERN, (2, 1, 1), strict=True)
    ]
    outcomes = assign(blocks, [("9.0", "9.1", "9.2", "9.3")], "")
    assert [o.job_ids for o in outcomes.values()] == [("9.0", "9.1"), ("9.2",), ("9.3",)]


def test_submit_files_are_written_without_fsync(labels, tmp_path, condor, monkeypatch):
    """Written once, read once: durability would cost two fsyncs per file, for nothing."""

    def no_fsync(_fd: int) -> None:
        raise AssertionError("fsync of a submit file")

    monkeypatch.setattr(os, "fsync", no_fsync)
    assert write_submit_file(tmp_path / "one", "queue 1\n").read_text() == "queue 1\n"
    result = submit_batch([(labels[CERN[0]], 1)], context(tmp_path), Schedd(), timeout=30)
    assert result.outcomes[CERN[0]].job_ids == ("1.0",)


def test_pilots_of_a_failed_submission_are_listed_by_the_next_censuses(labels, tmp_path, condor):
    """condor_submit queued the jobs but printed no id and failed; the next census
    lists that label's pilots so that the monitor hears of them."""
    condor.fail_next("condor_submit", "queued-exit", output="")
    backend = CondorBackend("bulk-factory", Schedd(), timeout=30)
    label, other = labels[CERN[0]], labels[CERN[1]]
    outcomes = backend.submit([(label, 2)], context(tmp_path))
    assert outcomes[CERN[0]].job_ids == ()
    assert outcomes[CERN[0]].error
    condor.submit(  # another label's pilot of this factory, not listed
        "universe = vanilla\nexecutable = /bin/true\ntransfer_executable = False\n"
        f'+FactoryId = "bulk-factory"\n+MATCH_APF_QUEUE = "{CERN[1]}"\nqueue 1\n'
    )
    census = backend.census([label, other])
    assert census.recent == {CERN[0]: ("1.0", "1.1")}
    assert census.supply[CERN[0]].idle == 2
    for _ in range(2):
        assert backend.census([label, other]).recent  # watched for 3 censuses
    assert backend.census([label, other]).recent == {}


def test_a_steady_cycle_renders_and_validates_each_label_once(labels, tmp_path, monkeypatch):
    from autopyfactory.batch.condor import bulk

    rendered = []
    original = bulk.render_block
    monkeypatch.setattr(bulk, "render_block", lambda *a: rendered.append(a[0].name) or original(*a))
    cache = bulk.BlockCache()
    label = labels[CERN[0]]
    first, second = cache.block(label, 3, context(tmp_path)), cache.block(label, 5, context(tmp_path))
    assert rendered == [CERN[0]]
    assert second.lines == first.lines
    assert second.n == 5
    assert ": 5 pilots for PanDA queue" in second.comment
    assert bulk.batch_text([second], "#") == bulk.batch_text([original(label, 5, context(tmp_path))], "#")
    cache.block(label, 5, context(tmp_path, dry_run=True))  # another context: rendered again
    assert rendered == [CERN[0]] * 2


def test_a_condor_submit_without_several_queue_statements_gets_one_call_per_label(labels, tmp_path, condor):
    """HTCondor announced the removal of several queue statements for the 25.x feature series."""
    condor.configure(MULTI_QUEUE=False)
    cache = BlockCache()
    requests = [(labels[CERN[0]], 2), (labels[CERN[1]], 1)]
    result = submit_batch(requests, context(tmp_path), Schedd(), 30, cache)
    assert result.calls == 3
    assert len(condor.calls("condor_submit")) == 3  # the refused one, then 2
    assert result.outcomes[CERN[0]].job_ids == ("1.0", "1.1")
    assert result.outcomes[CERN[1]].job_ids == ("2.0",)
    assert all(o.error == "" for o in result.outcomes.values())
    assert submit_batch(requests, context(tmp_path), Schedd(), 30, cache).calls == 2  # not asked again
