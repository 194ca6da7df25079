"""The real-pool fixture itself: where it finds HTCondor, and that the pool it starts runs jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.htcondor_pool import ENV_VAR, Found, HTCondorPool, find_htcondor


def test_without_the_variable_the_reason_says_what_to_set() -> None:
    reason = find_htcondor({})
    assert isinstance(reason, str)
    assert ENV_VAR in reason


def test_a_directory_with_neither_script_nor_prefix_is_refused_with_the_reason(tmp_path: Path) -> None:
    reason = find_htcondor({ENV_VAR: str(tmp_path)})
    assert isinstance(reason, str)
    assert "personal-pool.sh" in reason
    assert "condor_master" in reason


def test_an_installed_prefix_is_found(tmp_path: Path) -> None:
    for tool in ("bin/condor_submit", "sbin/condor_master"):
        (tmp_path / tool).parent.mkdir(exist_ok=True)
        (tmp_path / tool).write_text("")
    assert find_htcondor({ENV_VAR: str(tmp_path)}) == Found("prefix", tmp_path.resolve())


@pytest.mark.htcondor
def test_the_pool_runs_a_job_as_the_pool_user(real_condor: HTCondorPool) -> None:
    work = real_condor.workdir("fixture-smoke")
    (work / "job.sub").write_text("universe = vanilla\nexecutable = /bin/true\nlog = job.log\nqueue\n")
    out = real_condor.run(["condor_submit", "-terse", "job.sub"], cwd=work).stdout
    cluster = out.split(".")[0]
    real_condor.wait_for(
        lambda: any(str(ad["ClusterId"]) == cluster for ad in real_condor.jobs(history=True)),
        what="the job in condor_history",
    )
    assert real_condor.jobs() == []
