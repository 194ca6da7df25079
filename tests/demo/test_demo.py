"""``autopyfactory demo``: the README's first command, run as a user would."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
        assert scenario.activated["DEMO_B"] == QUEUES["DEMO_B"][1] - 1
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
