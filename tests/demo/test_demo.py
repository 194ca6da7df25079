"""``autopyfactory demo``: the README's first command, run as a user would."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autopyfactory.cycle.report import CycleReport
from autopyfactory.domain.demand import PandaReading
from tests.support.pilot3 import cached_pilot3_sdist


def test_demo_runs_pilots_through_to_done_and_cleans_up():
    result = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "demo", "--cycles", "3", "--sleep", "2",
         "--job-seconds", "1"],
        capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"monitoring webservice: http://127\.0\.0\.1:\d+/", out)
    cycles = re.findall(r"^cycle (\d): 3 labels, decided \d+, submitted (\d+)", out, re.MULTILINE)
    assert [c for c, _ in cycles] == ["0", "1", "2"]
    submitted = sum(int(n) for _, n in cycles)
    assert submitted > 0
    final = re.search(r"^final: monitor: (.*)$", out, re.MULTILINE)
    assert final, out
    counts = dict(item.split("=") for item in final.group(1).split())
    assert counts == {"CREATED": "0", "RUNNING": "0", "EXITING": "0", "DONE": str(submitted), "FAULT": "0"}
    work = Path(re.search(r"^demo directory: +(\S+)", out, re.MULTILINE).group(1))
    assert not work.exists()


def _standin_pilot(tmp_path: Path) -> Path:
    from autopyfactory.demo.run import PILOT

    path = tmp_path / "pilot3" / "pilot.py"
    path.parent.mkdir()
    path.write_text(PILOT)
    return path


def test_stand_in_pilot_fails_on_arguments_as_pilot3_does(tmp_path: Path):
    pilot = _standin_pilot(tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(pilot), *args], capture_output=True, text=True, timeout=30)

    old = run(
        "-s", "SITE", "-h", "QUEUE", "-p", "25443", "-w", "https://pandaserver.cern.ch", "-u", "managed"
    )
    assert old.returncode == 0
    assert old.stdout.startswith("usage:")  # pilot 3: -h is help, exit 0
    missing = run("-q", "QUEUE", "-w", "generic")
    assert missing.returncode == 2
    assert "--pilot-user" in missing.stderr
    bad = run("-q", "QUEUE", "--pilot-user", "ATLAS", "-w", "https://pandaserver.cern.ch")
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr


def test_stand_in_pilot_takes_a_job_with_the_default_arguments(tmp_path: Path):
    from autopyfactory.config.schema import DEFAULT_ARGUMENTS
    from autopyfactory.demo.run import QUEUES, Scenario, StandIn

    pilot = _standin_pilot(tmp_path)
    scenario = Scenario(job_seconds=0.1)
    stand_in = StandIn(scenario, tmp_path / "logs")
    stand_in.start()
    try:
        port = stand_in.url.rsplit(":", 1)[1]
        fields = {"pq": "DEMO_B", "siteid": "DEMO_B", "jobLabel": "managed", "pilotType": "PR",
                  "pilotUser": "ATLAS", "pandaurl": "http://127.0.0.1", "port": port}  # fmt: skip
        args = (DEFAULT_ARGUMENTS % fields).split()
        # what the wrapper hands to pilot.py: it keeps -r and -s
        to_pilot = args[:2] + args[6:]
        first = subprocess.run(
            [sys.executable, str(pilot), *to_pilot], capture_output=True, text=True, timeout=30
        )
        assert first.returncode == 0, first.stderr
        assert "running PanDA job" in first.stdout
        assert (pilot.parent / "pandaIDs.out").read_text().strip().isdigit()
        assert scenario.table.activated[("DEMO_B", "SCORE", "managed")] == QUEUES["DEMO_B"][1] - 1
        assert not scenario.running  # finished
    finally:
        stand_in.stop()


@pytest.mark.slow
def test_demo_with_the_real_pilot3_runs_jobs():
    """`demo --pilot3` serves the real pilot 3, which takes the stand-in's jobs and runs
    their sleep payload; every pilot ends DONE at the monitor with rc 0 and its PanDA job id."""
    cached_pilot3_sdist()
    result = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "demo", "--pilot3", "--cycles", "2", "--sleep", "3",
         "--job-seconds", "1", "--keep"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    work = Path(re.search(r"^demo directory: +(\S+)", result.stdout, re.MULTILINE).group(1))
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "PanDA pilot 3 from" in result.stdout
        submitted = sum(
            int(n) for n in re.findall(r"^cycle \d: .*?submitted (\d+)", result.stdout, re.MULTILINE)
        )
        final = re.search(r"^final: monitor: (.*)$", result.stdout, re.MULTILINE)
        assert final, result.stdout
        assert f"DONE={submitted} FAULT=0" in final.group(1), result.stdout
        outcomes = [
            line.split("pilot outcome: ", 1)[1]
            for log in work.glob("logs/*/*/*.out")
            for line in log.read_text(errors="replace").splitlines()
            if "pilot outcome: " in line
        ]
        assert len(outcomes) == submitted > 0
        assert all(re.fullmatch(r"0, ran PanDA job\(s\) \d+", outcome) for outcome in outcomes), outcomes
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- stopping: nothing left behind -------------------------------------------------------------------


def _processes_with(tmpdir: Path) -> dict[int, str]:
    """pid -> command line of every process whose TMPDIR is <tmpdir> or in it: the demo itself, and
    its pilots (their TMPDIR is in the demo's directory) and whatever they start."""
    found = {}
    mark = f"TMPDIR={tmpdir}".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes().split(b"\0")
            command = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if any(variable.startswith(mark) for variable in environ):
            found[int(entry.name)] = command
    return found


def _own_group_pilots(tmpdir: Path) -> list[int]:
    """Pilots (pilot.py) that moved into a process group of their own, as pilot 3 does with a job."""
    return [pid for pid, command in _processes_with(tmpdir).items()
            if "pilot.py" in command and _group_of(pid) == pid]  # fmt: skip


def _group_of(pid: int) -> int | None:
    """The process group of ``pid``; None when it has ended since it was listed."""
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _interrupt_when_pilots_run_jobs(tmp_path: Path, args: list[str], wait: float) -> tuple[float, str]:
    """Start the demo with TMPDIR=<tmp_path>/tmp, Ctrl-C it once some pilot runs a job in a process
    group of its own; (seconds it took to stop, its output). Whatever it left is killed afterwards."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    out = tmp_path / "demo.out"
    with out.open("w") as output:
        env = {**os.environ, "TMPDIR": str(tmpdir)}
        command = [sys.executable, "-m", "autopyfactory", "demo", *args]
        demo = subprocess.Popen(command, env=env, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + wait
        while not _own_group_pilots(tmpdir):
            assert demo.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.5)
        demo.send_signal(signal.SIGINT)
        start = time.monotonic()
        demo.wait(timeout=60)
        return time.monotonic() - start, out.read_text()
    finally:
        demo.kill()
        demo.wait(10)
        for pid in _processes_with(tmpdir):  # a failing test leaves nothing running either
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_ctrl_c_stops_the_demo_within_seconds_leaving_no_process_and_no_file(tmp_path: Path):
    """Stand-in pilots running their jobs in process groups of their own (as pilot 3 does)."""
    took, output = _interrupt_when_pilots_run_jobs(tmp_path, ["--sleep", "1", "--job-seconds", "120"], 60)
    assert took < 15, output
    assert _processes_with(tmp_path / "tmp") == {}, output
    assert list((tmp_path / "tmp").iterdir()) == [], output


@pytest.mark.slow
def test_ctrl_c_stops_the_demo_with_the_real_pilot3_leaving_no_process_and_no_file(tmp_path: Path):
    """Pilot 3 with a job runs in a process group of its own and its payload in a session of its
    own; it needs more than the wrapper's 5 s to stop. Nothing of it may outlive the demo: neither
    a pilot.py nor its work directory in $TMPDIR."""
    cached_pilot3_sdist()
    args = ["--pilot3", "--sleep", "3", "--job-seconds", "300"]
    took, output = _interrupt_when_pilots_run_jobs(tmp_path, args, 180)
    assert took < 20, output
    assert _processes_with(tmp_path / "tmp") == {}, output
    assert list((tmp_path / "tmp").iterdir()) == [], output


def _free_port() -> int:
    """A port with a free neighbour (the demo takes N and N+1)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise AssertionError("no two free neighbouring ports")


def test_the_demo_listens_on_the_ports_asked_for():
    port = _free_port()
    result = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "demo", "--cycles", "1", "--sleep", "1", "--job-seconds", "1",
         "--port", str(port)], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"PanDA/CRIC stand-in:   http://127.0.0.1:{port}  " in result.stdout
    assert f"monitoring webservice: http://127.0.0.1:{port + 1}/" in result.stdout
    port = _free_port()  # another one: the first may still have connections in TIME_WAIT
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        busy = subprocess.run(
            [sys.executable, "-m", "autopyfactory", "demo", "--cycles", "1", "--port", str(port)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert busy.returncode == 1
    assert "Address already in use" in busy.stderr
    assert "(--port N needs N and N+1 free)" in busy.stderr


def test_the_demo_says_what_its_drain_warnings_are():
    """Between waves the stand-in has no job: it answers as a drained real PanDA does, the factory
    warns about PanDA; the cycle line says that this is the stand-in draining."""
    from autopyfactory.demo.run import DRAINED, QUEUES, Scenario, drain_note

    scenario = Scenario(job_seconds=1)
    failed = PandaReading(None, 0.0, "PanDA: success=False: Database failure getting the job statistics")
    report = CycleReport(3, 0.0, 0.1, (), (), panda=failed)
    assert drain_note(report, scenario) == ""  # jobs are activated: a failure would be real
    for queue in QUEUES:
        while scenario.take(queue):
            pass
    assert drain_note(report, scenario) == ""  # its pilots still run the jobs
    for panda_id in list(scenario.running):
        scenario.finish(panda_id)
    assert drain_note(report, scenario) == DRAINED
    assert "Database failure" in DRAINED
    assert "submits nothing" in DRAINED
    good = CycleReport(4, 0.0, 0.1, (), (), panda=PandaReading({}, 0.0))
    assert drain_note(good, scenario) == ""
