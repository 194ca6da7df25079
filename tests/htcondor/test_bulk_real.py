"""One condor_submit per schedd against a real HTCondor 25.0 schedd (group ``htcondor``).

What bulk.py relies on, checked on the real thing: ``-terse`` prints one line per cluster, one
cluster per label (the executable alternates between two spellings of the same path), the ids map
to the right labels, a setting of the block above does not leak into the next label, and
MAX_JOBS_PER_OWNER refuses the whole submission (nothing queued, every label told so).
condor_submit runs as the pool user (FS authentication).
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from autopyfactory.batch.condor.bulk import submit_batch
from autopyfactory.batch.condor.command import Schedd
from autopyfactory.batch.interface import SubmitContext
from tests.support.factory_conf import labels_from, write_factory_conf
from tests.support.htcondor_pool import HTCondorPool

pytestmark = pytest.mark.htcondor

DUMP = Path(__file__).resolve().parents[1] / "data" / "cric_dump.json"


def run_factory_submit(
    pool: HTCondorPool, requests: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> dict[str, tuple[tuple[str, ...], str]]:
    """Submit (label, n) through bulk.submit_batch; CERN's three CEs are the pool's CE schedd with
    CE queues q0, (none), q2. The factory's Python runs here; ``condor_submit`` on PATH runs the real
    one as the pool user (FS authentication), so everything it reads and writes is world-accessible.
    """
    work = pool.workdir("bulk")
    wrapper = work / "wrapper.sh"
    wrapper.write_text("#!/bin/sh\nsleep 600\n")
    wrapper.chmod(0o755)
    shims = work / "bin"
    shims.mkdir()
    for tool in ("condor_submit",):
        shim = shims / tool
        shim.write_text(f'#!/bin/sh\nexec {shlex.join(pool.command([tool]))} "$@"\n')
        shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")
    record = json.loads(DUMP.read_text())["CERN"]
    record["queues"] = [
        {**q, "ce_endpoint": pool.ce_endpoint, "ce_queue_name": queue}
        for q, queue in zip(record["queues"][:3], ("q0", "", "q2"), strict=True)
    ]
    own = {"factoryId": "real-bulk", "pandaserver": "https://pandaserver.example:25443"}
    conf = write_factory_conf(work, factory=own, defaults={"executable": wrapper}, queues={"CERN": {}})
    labels = {label.name: label for label in labels_from(conf, {"CERN": record})}
    context = SubmitContext(
        "real-bulk", "https://pandaserver.example:25443", str(work / "logs"), "", "", "2026-03-01"
    )
    old = os.umask(0)  # the pool user writes the pilots' user logs into the label directories
    try:
        result = submit_batch([(labels[n], k) for n, k in requests], context, Schedd(pool.submit_schedd), 60)
    finally:
        os.umask(old)
    return {name: (o.job_ids, o.error) for name, o in result.outcomes.items()}


def labels_of(pool: HTCondorPool) -> dict[str, str]:
    return {f"{ad['ClusterId']}.{ad['ProcId']}": ad.get("MATCH_APF_QUEUE", "") for ad in pool.jobs()}


def names(pool: HTCondorPool) -> list[str]:
    return [f"CERN-{pool.hostname}-q0", f"CERN-{pool.hostname}", f"CERN-{pool.hostname}-q2"]


@pytest.fixture
def max_jobs(real_condor: HTCondorPool) -> Iterator[Path]:
    knob = real_condor.home / "pool" / "config.d" / "50-max-jobs.conf"
    yield knob
    knob.unlink(missing_ok=True)
    real_condor.run(["condor_reconfig", "-schedd", "-name", real_condor.submit_schedd])


def test_one_submission_several_clusters_ids_mapped_exactly(
    real_condor: HTCondorPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, third = names(real_condor)
    outcomes = run_factory_submit(real_condor, [(first, 3), (second, 1), (third, 2)], monkeypatch)
    assert all(error == "" for _, error in outcomes.values()), outcomes
    ids = {name: ids for name, (ids, _) in outcomes.items()}
    clusters = {name: {cid.split(".")[0] for cid in found} for name, found in ids.items()}
    assert [len(ids[n]) for n in (first, second, third)] == [3, 1, 2]
    assert all(len(c) == 1 for c in clusters.values())
    assert len(set().union(*clusters.values())) == 3
    queued = labels_of(real_condor)
    for name, found in ids.items():
        assert all(queued[cid] == name for cid in found)
    ads = {f"{ad['ClusterId']}.{ad['ProcId']}": ad for ad in real_condor.jobs()}
    assert ads[ids[first][0]]["remote_queue"] == "q0"
    assert ads[ids[second][0]].get("remote_queue", "absent") is None  # cleared: undefined, not "q0"


def test_max_jobs_per_owner_refuses_the_whole_batch(
    real_condor: HTCondorPool, max_jobs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    max_jobs.write_text("MAX_JOBS_PER_OWNER = 3\n")
    real_condor.run(["condor_reconfig", "-schedd", "-name", real_condor.submit_schedd])
    real_condor.wait_for(
        lambda: "3" in real_condor.run(["condor_config_val", "-schedd", "-name", real_condor.submit_schedd,
                                        "MAX_JOBS_PER_OWNER"], check=False).stdout,
        what="MAX_JOBS_PER_OWNER = 3 in the schedd",
    )  # fmt: skip
    first, second, _ = names(real_condor)
    outcomes = run_factory_submit(real_condor, [(first, 2), (second, 2)], monkeypatch)
    assert real_condor.jobs() == []
    for found, error in outcomes.values():
        assert found == ()
        assert error.startswith("not submitted:")
        assert "MAX_JOBS_PER_OWNER" in error
