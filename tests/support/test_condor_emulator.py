"""The HTCondor emulator, driven through its executables like the factory drives real HTCondor."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.condor_emulator import TRUNCATED_JSON, CondorEmulator, JobStatus

CE = "condor ce1.cern.ch ce1.cern.ch:9619"


def run(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run an emulated command; the ``condor`` fixture has put it first on PATH."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def pilot_text(logs: Path, count: int = 3, factory: str = "fac", extra: str = "") -> str:
    return f"""
universe = grid
grid_resource = {CE}
executable = /bin/true
arguments = -s CERN -h CERN-PROD
output = {logs}/$(Cluster).$(Process).out
error = {logs}/$(Cluster).$(Process).err
log = {logs}/$(Cluster).$(Process).log
environment = "APFFID={factory} APFCID=$(Cluster).$(Process) GTAG=http://logs/$(Cluster).$(Process).out"
x509userproxy = /tmp/x509up_u1000
+FactoryId = "{factory}"
MY.MATCH_APF_QUEUE = "CERN-PROD-ce1"
+xcount = 8
periodic_remove = JobStatus == 5 && time() - EnteredCurrentStatus > 3600
{extra}
queue {count}
"""


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


@pytest.fixture
def pilot_file(tmp_path: Path, logs: Path) -> Path:
    path = tmp_path / "pilot.sub"
    path.write_text(pilot_text(logs))
    return path


def json_out(result: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    assert result.returncode == 0, result.stderr
    ads: list[dict[str, object]] = json.loads(result.stdout) if result.stdout else []
    return ads


# --- condor_submit ---------------------------------------------------------------------------


def test_submit_queues_n_jobs_with_custom_attributes_and_expanded_macros(
    condor: CondorEmulator, pilot_file: Path, logs: Path
) -> None:
    before = int(time.time())
    result = run("condor_submit", "-terse", str(pilot_file))

    assert (result.returncode, result.stdout, result.stderr) == (0, "1.0 - 1.2\n", "")
    jobs = condor.jobs()
    assert [(job["ClusterId"], job["ProcId"]) for job in jobs] == [(1, 0), (1, 1), (1, 2)]
    job = jobs[1]
    assert job["JobStatus"] == JobStatus.IDLE
    assert job["JobRunCount"] == 0
    assert before <= job["QDate"] == job["EnteredCurrentStatus"] <= time.time()
    assert job["JobUniverse"] == 9
    assert job["GridResource"] == CE
    assert job["FactoryId"] == "fac"
    assert job["MATCH_APF_QUEUE"] == "CERN-PROD-ce1"
    assert job["xcount"] == 8
    assert job["Environment"] == "APFCID=1.1 APFFID=fac GTAG=http://logs/1.1.out"  # sorted, as condor_submit
    assert (job["Out"], job["UserLog"]) == (f"{logs}/1.1.out", f"{logs}/1.1.log")
    assert job["Cmd"] == "/bin/true"
    assert job["Args"] == "-s CERN -h CERN-PROD"
    assert job["PeriodicRemove"] == "/Expr(JobStatus == 5 && time() - EnteredCurrentStatus > 3600)/"
    assert job["Owner"]
    assert "GridJobStatus" not in job  # no CE has seen it yet

    again = run("condor_submit", str(pilot_file))
    assert again.stdout == "Submitting job(s)...\n3 job(s) submitted to cluster 2.\n"


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ("this line is not a statement", "ERROR: on Line"),
        ("+Broken = (1 +", "ERROR: Parse error in expression"),
        ("universe = vanila", "ERROR: I don't know about the 'vanila' universe."),
        ("executable = /no/such/wrapper.sh", "ERROR: Executable file /no/such/wrapper.sh does not exist"),
        ("log = /no/such/dir/$(Cluster).log", 'ERROR: Invalid log file: "/no/such/dir/1.log"'),
    ],
)
def test_invalid_submit_file_fails_like_condor_submit_and_queues_nothing(
    condor: CondorEmulator, tmp_path: Path, logs: Path, extra: str, error: str
) -> None:
    path = tmp_path / "bad.sub"
    path.write_text(pilot_text(logs, extra=extra))

    result = run("condor_submit", "-terse", str(path))

    assert result.returncode == 1
    assert result.stdout == ""
    assert error in result.stderr
    assert condor.jobs() == []
    assert condor.submit(pilot_text(logs, count=1)) == ["1.0"]  # the failure used no cluster id


# --- condor_q --------------------------------------------------------------------------------


def test_condor_q_json_applies_the_constraint_and_projects_attributes_like_condor(
    condor: CondorEmulator, logs: Path
) -> None:
    condor.submit(pilot_text(logs, count=2, factory="fac"))
    condor.submit(pilot_text(logs, count=1, factory="other"))

    result = run("condor_q", "-constraint", 'FactoryId == "fac"', "-json",
                 "-attributes", "ProcId,ClusterId,jobstatus,PeriodicRemove,NoSuchAttr")  # fmt: skip

    assert [(ad["ClusterId"], ad["ProcId"]) for ad in json_out(result)] == [(1, 0), (1, 1)]
    first = result.stdout.split("\n,\n")[0]
    assert first == (
        "[\n{\n"
        '  "ClusterId": 1,\n'
        '  "JobStatus": 1,\n'
        '  "PeriodicRemove": "\\/Expr(JobStatus == 5 && time() - EnteredCurrentStatus > 3600)\\/",\n'
        '  "ProcId": 0\n'
        "}"
    )
    assert result.stdout.endswith("}\n]\n")


def test_condor_q_prints_nothing_at_all_when_no_job_matches(condor: CondorEmulator, logs: Path) -> None:
    condor.submit(pilot_text(logs, count=1))

    result = run("condor_q", "-constraint", 'FactoryId == "nobody"', "-json", "-attributes", "ClusterId")

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_condor_q_rejects_a_constraint_that_does_not_parse(condor: CondorEmulator) -> None:
    result = run("condor_q", "-constraint", "FactoryId == ", "-json")

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == "Error: Argument 2 (FactoryId == ) is not a valid constraint\n"


# --- condor_rm, condor_release, condor_history ------------------------------------------------


def test_condor_rm_moves_jobs_to_the_history(condor: CondorEmulator, logs: Path) -> None:
    condor.submit(pilot_text(logs, count=3))

    by_id = run("condor_rm", "1.0", "7.0")
    by_constraint = run("condor_rm", "-constraint", "ProcId > 0")

    assert by_id.returncode == 1  # one of the ids was not found
    assert (by_id.stdout, by_id.stderr) == ("Job 1.0 marked for removal\n", "Job 7.0 not found\n")
    assert by_constraint.returncode == 0
    assert by_constraint.stdout == "All jobs matching constraint (ProcId > 0) have been marked for removal\n"
    assert condor.jobs() == []
    history = json_out(run("condor_history", "-json", "-attributes", "ProcId,JobStatus,RemoveReason"))
    assert [ad["ProcId"] for ad in history] == [2, 1, 0]  # newest first
    assert {ad["JobStatus"] for ad in history} == {JobStatus.REMOVED}
    assert str(history[0]["RemoveReason"]).startswith("via condor_rm (by user ")


def test_condor_history_since_limit_and_empty_answer(condor: CondorEmulator, logs: Path) -> None:
    condor.submit(pilot_text(logs, count=4))
    for proc, finished_at in enumerate((1000, 2000, 3000, 4000)):
        condor.complete(f"1.{proc}", exit_code=proc, at=finished_at)
    ids = "-attributes", "ProcId,ExitCode,CompletionDate"

    since_expr = json_out(run("condor_history", "-json", *ids, "-since", "EnteredCurrentStatus <= 2000"))
    since_id = json_out(run("condor_history", "-json", *ids, "-since", "1.1"))
    limited = json_out(run("condor_history", "-json", *ids, "-limit", "1"))
    empty = run("condor_history", "-json", "-constraint", 'FactoryId == "nobody"')

    assert [(ad["ProcId"], ad["ExitCode"], ad["CompletionDate"]) for ad in since_expr] == [
        (3, 3, 4000),
        (2, 2, 3000),
    ]
    assert [ad["ProcId"] for ad in since_id] == [3, 2]  # stops at 1.1, which is not printed
    assert [ad["ProcId"] for ad in limited] == [3]
    assert (empty.returncode, empty.stdout) == (0, "[\n]\n")  # unlike condor_q, brackets even when empty


def test_condor_release_releases_held_jobs_only(condor: CondorEmulator, logs: Path) -> None:
    condor.submit(pilot_text(logs, count=3))
    condor.set_status("1.0", JobStatus.HELD, hold_reason="proxy expired", hold_reason_code=16)
    condor.set_status("1.2", JobStatus.HELD)

    one = run("condor_release", "1.0")
    idle = run("condor_release", "1.1")
    rest = run("condor_release", "-constraint", "JobStatus == 5")

    assert (one.returncode, one.stdout) == (0, "Job 1.0 released\n")
    assert (idle.returncode, idle.stderr) == (1, "Job 1.1 not held to be released\n")
    assert rest.stdout == "All jobs matching constraint (JobStatus == 5) have been released\n"
    released = condor.job("1.0")
    assert released["JobStatus"] == JobStatus.IDLE
    assert "HoldReason" not in released
    assert (released["LastHoldReason"], released["LastHoldReasonCode"]) == ("proxy expired", 16)
    assert {job["JobStatus"] for job in condor.jobs()} == {JobStatus.IDLE}


# --- several schedds -------------------------------------------------------------------------


def test_name_selects_a_schedds_own_queue_and_unknown_schedds_fail(
    condor: CondorEmulator, pilot_file: Path
) -> None:
    condor.add_schedd("schedd1@host")
    condor.add_schedd("schedd2@host")

    submitted = run("condor_submit", "-name", "schedd1@host", "-pool", "cm", "-terse", str(pilot_file))
    one = json_out(run("condor_q", "-name", "schedd1@host", "-json", "-attributes", "ClusterId"))
    two = run("condor_q", "-name", "schedd2@host", "-json")
    unknown_q = run("condor_q", "-name", "nowhere", "-json")
    unknown_submit = run("condor_submit", "-name", "nowhere", "-terse", str(pilot_file))

    assert submitted.stdout == "1.0 - 1.2\n"
    assert len(one) == 3
    assert two.stdout == ""
    assert len(condor.jobs("schedd1@host")) == 3
    assert condor.jobs() == []
    assert unknown_q.returncode == 1
    assert unknown_q.stderr == "Error: Collector has no record of schedd/submitter\n"
    assert unknown_submit.returncode == 1
    assert "Can't find address of schedd nowhere" in unknown_submit.stderr
    assert [call.schedd for call in condor.calls("condor_q")] == ["schedd1@host", "schedd2@host", "nowhere"]
    assert condor.calls("condor_submit")[0].argv[-1] == str(pilot_file)


# --- failure injection -----------------------------------------------------------------------


def test_exit_fault_prints_an_error_and_exits_then_the_next_call_works(
    condor: CondorEmulator, logs: Path
) -> None:
    condor.submit(pilot_text(logs, count=1))
    condor.fail_next("condor_q", "exit", exit_code=3, message="SECMAN:2007:Failed to end classad message.\n")

    failed = run("condor_q", "-json")
    fine = run("condor_q", "-json")

    assert (failed.returncode, failed.stdout) == (3, "")
    assert failed.stderr == "SECMAN:2007:Failed to end classad message.\n"
    assert len(json_out(fine)) == 1


def test_garbage_fault_prints_unusable_output_with_exit_zero_for_count_calls(
    condor: CondorEmulator, pilot_file: Path
) -> None:
    condor.fail_next("condor_q", "garbage", count=2)
    condor.fail_next("condor_submit", "garbage", output="Submitting job(s)\n")

    results = [run("condor_q", "-json") for _ in range(3)]
    submitted = run("condor_submit", "-terse", str(pilot_file))

    assert [(result.returncode, result.stdout) for result in results] == [(0, TRUNCATED_JSON)] * 2 + [(0, "")]
    with pytest.raises(json.JSONDecodeError):
        json.loads(results[0].stdout)
    assert (submitted.returncode, submitted.stdout) == (0, "Submitting job(s)\n")
    assert condor.jobs() == []  # a garbage answer did nothing


def test_hang_fault_outlives_the_callers_timeout_and_a_short_hang_is_just_slow(
    condor: CondorEmulator, logs: Path
) -> None:
    condor.submit(pilot_text(logs, count=1))
    condor.fail_next("condor_q", "hang")  # the fixture's default: 60 s
    condor.fail_next("condor_q", "hang", seconds=0.3)

    with pytest.raises(subprocess.TimeoutExpired):
        run("condor_q", "-json", timeout=1)
    start = time.monotonic()
    slow = run("condor_q", "-json")

    assert time.monotonic() - start >= 0.3
    assert len(json_out(slow)) == 1


def test_commands_left_hanging_are_killed_by_the_driver(condor: CondorEmulator) -> None:
    condor.fail_next("condor_rm", "hang")
    process = subprocess.Popen(["condor_rm", "1.0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while process.poll() is None and time.monotonic() < deadline:
        condor.kill_hanging()  # what the fixture does at teardown; a no-op until it hangs
        time.sleep(0.05)

    assert process.wait(timeout=1) == -9


def test_fail_next_rejects_unknown_commands_and_kinds(condor: CondorEmulator) -> None:
    with pytest.raises(ValueError, match="kinds"):
        condor.fail_next("condor_q", "explode")
    with pytest.raises(ValueError, match="kinds"):
        condor.fail_next("condor_status", "exit")


# --- concurrency and the driver --------------------------------------------------------------


def test_concurrent_submits_lose_no_job(condor: CondorEmulator, pilot_file: Path) -> None:
    processes = [
        subprocess.Popen(["condor_submit", "-terse", str(pilot_file)], stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    outputs = sorted(process.communicate(timeout=60)[0] for process in processes)

    assert outputs == sorted(f"{cluster}.0 - {cluster}.2\n" for cluster in range(1, 9))
    assert len(condor.jobs()) == 24


def test_driver_moves_pilots_like_the_schedd_and_the_ce(condor: CondorEmulator, logs: Path) -> None:
    condor.submit(pilot_text(logs, count=3))

    condor.set_status("1.0", JobStatus.RUNNING, at=5000)
    condor.set_status("1.1", JobStatus.HELD, hold_reason="CE said no", hold_reason_code=2)
    condor.set_status("1.1", JobStatus.IDLE)
    condor.set_status('ProcId == 2 && FactoryId == "fac"', JobStatus.IDLE, grid_status="REALLY-IDLE")
    condor.age("1", 25 * 3600)
    condor.complete("1.0", exit_code=20)

    running = condor.history()[0]
    assert (running["JobStatus"], running["ExitCode"], running["JobRunCount"]) == (JobStatus.COMPLETED, 20, 1)
    # aged 25 h, as everything it started: a real start date is that much in the past then too
    assert running["JobCurrentStartDate"] == 5000 - 25 * 3600
    assert running["GridJobStatus"] == "COMPLETED"
    assert running["GridJobId"] == f"{CE} 1.0"
    released, accepted = condor.jobs()
    assert released["LastHoldReason"] == "CE said no"
    assert "HoldReason" not in released
    assert accepted["GridJobStatus"] == "REALLY-IDLE"
    assert time.time() - accepted["QDate"] >= 25 * 3600
    with pytest.raises(LookupError):
        condor.set_status("9.0", JobStatus.RUNNING)


def test_run_periodic_applies_the_jobs_own_policy_expressions(condor: CondorEmulator, logs: Path) -> None:
    hold_idle = "periodic_hold = JobStatus == 1 && time() - EnteredCurrentStatus > 3600"
    condor.submit(pilot_text(logs, count=2, extra=hold_idle))  # periodic_remove: held > 1 h
    condor.age("1.0", 2 * 3600)

    first = condor.run_periodic()
    condor.age("1.0", 2 * 3600)
    second = condor.run_periodic()

    assert first == {"hold": ["1.0"], "release": [], "remove": []}
    assert second == {"hold": [], "release": [], "remove": ["1.0"]}
    removed = condor.job("1.0")
    assert removed["JobStatus"] == JobStatus.REMOVED
    assert removed["LastHoldReasonCode"] == 3
    assert removed["RemoveReason"].startswith("The job attribute PeriodicRemove expression 'JobStatus == 5")
    assert [job["JobStatus"] for job in condor.jobs()] == [JobStatus.IDLE]


# --- several queue statements: what HTCondor 25.0.13 printed for the same files -------------------

SEVERAL = """\
universe = vanilla
transfer_executable = True
executable = /bin/sleep
request_memory = 100
+MATCH_APF_QUEUE = "A"
queue 1
executable = /bin/./sleep
+MATCH_APF_QUEUE = "B"
queue 2
executable = /bin/sleep
+MATCH_APF_QUEUE = "C"
queue 1
"""
REAL_WARNING_START = "\nWarning: Use of multiple queue statements in a single submit file is deprecated.\n"


def test_several_queue_statements_one_cluster_per_executable_change(
    condor: CondorEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "several.sub"
    path.write_text(SEVERAL)
    result = run("condor_submit", "-terse", str(path))
    assert (result.returncode, result.stdout) == (0, "1.0 - 1.0\n2.0 - 2.1\n3.0 - 3.0\n")
    assert result.stderr.startswith(REAL_WARNING_START)
    assert [(j["ClusterId"], j["MATCH_APF_QUEUE"], j["RequestMemory"]) for j in condor.jobs()] == [
        (1, "A", 100), (2, "B", 100), (2, "B", 100), (3, "C", 100),
    ]  # fmt: skip  # request_memory is inherited by the later clusters, as in condor
    plain = run("condor_submit", str(path))
    assert plain.stdout == (
        "Submitting job(s)....\n1 job(s) submitted to cluster 4.\n"
        "2 job(s) submitted to cluster 5.\n1 job(s) submitted to cluster 6.\n"
    )


def test_max_jobs_per_owner_refuses_the_whole_submission(condor: CondorEmulator, tmp_path: Path) -> None:
    path = tmp_path / "several.sub"
    path.write_text(SEVERAL)
    condor.configure(MAX_JOBS_PER_OWNER=3)
    result = run("condor_submit", "-terse", str(path))
    assert (result.returncode, result.stdout) == (1, "")
    assert (
        result.stderr
        == "\nERROR: Failed to create proc\nNumber of submitted jobs would exceed MAX_JOBS_PER_OWNER\n"
    )
    assert condor.jobs() == []


def test_a_submit_requirement_refuses_the_whole_submission_with_its_reason(
    condor: CondorEmulator, tmp_path: Path
) -> None:
    condor.configure(SUBMIT_REQUIREMENTS={"MEM": ["maxMemory <= 100", 'strcat("too big: ", maxMemory)']})
    path = tmp_path / "one.sub"
    path.write_text("universe = vanilla\nexecutable = /bin/true\n+maxMemory = 200\nqueue 1\n")
    refused = run("condor_submit", "-terse", str(path))
    assert refused.returncode == 1
    assert refused.stderr == "\nERROR: Failed to commit job submission into the queue.\nERROR: too big: 200\n"
    assert condor.jobs() == []


def test_the_submission_program_runs_with_the_emulated_schedd(condor: CondorEmulator, tmp_path: Path) -> None:
    description = 'universe = vanilla\nexecutable = /bin/true\n+MATCH_APF_QUEUE = "{}"\nqueue 1\n'
    labels = [{"label": name, "count": 2, "description": description.format(name)} for name in ("A", "B")]
    path = tmp_path / "requests.json"
    path.write_text(json.dumps({"format": 1, "labels": labels}))
    result = run("autopyfactory-condor-submit", str(path))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [
        {"label": "A", "outcome": "submitted", "cluster": 1, "first": 0, "count": 2},
        {"label": "B", "outcome": "submitted", "cluster": 2, "first": 0, "count": 2},
    ]
    assert [(job["ClusterId"], job["MATCH_APF_QUEUE"]) for job in condor.jobs()] == [
        (1, "A"),
        (1, "A"),
        (2, "B"),
        (2, "B"),
    ]
