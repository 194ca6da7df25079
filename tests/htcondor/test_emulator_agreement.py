"""The emulator against the real tools: the same steps on both, the same answers (Deliver 3).

Each step runs the real command names, once with the emulator first on PATH and once as the
pool user against the real pool, and compares what the factory reads: ``condor_submit -terse``
with several clusters, ``condor_q -json`` (the census projection, and an empty answer),
hold reasons, ``condor_rm -reason`` and the ads ``condor_history -json`` keeps after removal.
Job ids, times and the user name are normalised. Differences found are listed in the emulator's
module docstring (tests/support/condor_emulator/__init__.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from autopyfactory.batch.condor.census import CENSUS_ATTRIBUTES
from tests.support.condor_emulator.driver import CondorEmulator
from tests.support.htcondor_pool import HTCondorPool
from tests.support.real_stand import RealStand, ours

pytestmark = [pytest.mark.htcondor, pytest.mark.timeout(400)]  # a loaded machine: generous

Run = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]
Hold = Callable[[str], None]

# Two labels in one file, as a bulk submission writes them; requirements = false keeps the real
# jobs idle (the emulator never starts a job by itself).
SUBMIT = """universe = vanilla
executable = /bin/sleep
arguments = 600
requirements = false
+FactoryId = "agree"
+MATCH_APF_QUEUE = "A"
queue 2
+MATCH_APF_QUEUE = "B"
queue 3
"""
CONSTRAINT = ["-constraint", 'FactoryId == "agree"']


def _normal(text: str, user: str) -> str:
    return re.sub(r"\b\d+\.(\d+)\b", r"C.\1", text.replace(user, "<user>"))


def _ads(out: str, keys: Sequence[str]) -> list[dict[str, Any]]:
    ads = json.loads(out) if out.strip() else []
    return [{k: ad.get(k) for k in keys} for ad in sorted(ads, key=lambda a: (a["ClusterId"], a["ProcId"]))]


def _scenario(run: Run, hold: Hold, user: str, workdir: Path) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    (workdir / "pilots.sub").write_text(SUBMIT)
    submitted = run(["condor_submit", "-terse", str(workdir / "pilots.sub")])
    seen["submit rc"], seen["terse"] = submitted.returncode, _normal(submitted.stdout, user)
    seen["submit stderr"] = _normal(submitted.stderr, user)
    ids = [f"{c}.{p}" for c, first, last in re.findall(r"(\d+)\.(\d+) - \d+\.(\d+)", submitted.stdout)
           for p in range(int(first), int(last) + 1)]  # fmt: skip
    census = run(["condor_q", *CONSTRAINT, "-json", "-attributes", ",".join(CENSUS_ATTRIBUTES)])
    keys = ("JobStatus", "MATCH_APF_QUEUE", "ProcId", "HoldReason", "HoldReasonCode", "NumHolds")
    seen["census"] = _ads(census.stdout, keys)
    seen["census keys"] = sorted({k for ad in json.loads(census.stdout) for k in ad})
    nothing = run(["condor_q", "-constraint", 'FactoryId == "nobody"', "-json"])
    seen["empty condor_q"] = (nothing.returncode, nothing.stdout)
    hold(ids[0])
    held = run(["condor_q", ids[0], "-json", "-attributes", "JobStatus,HoldReason,HoldReasonCode,NumHolds"])
    seen["held"] = [{k: _normal(str(v), user) for k, v in ad.items()} for ad in json.loads(held.stdout)]
    hold(ids[2])
    released = run(["condor_release", ids[2]])
    seen["release"] = (released.returncode, _normal(released.stdout, user))
    again = run(["condor_q", ids[2], "-json", "-attributes", "JobStatus,ReleaseReason,NumHolds,HoldReason"])
    seen["released"] = [{k: _normal(str(v), user) for k, v in ad.items()} for ad in json.loads(again.stdout)]
    removed = run(["condor_rm", "-reason", "autopyfactory housekeeping: test", ids[0], ids[1]])
    seen["rm"] = (removed.returncode, _normal(removed.stdout, user))
    history = run(["condor_history", *CONSTRAINT, "-json", "-attributes",
                   "ClusterId,ProcId,JobStatus,RemoveReason,MATCH_APF_QUEUE,ExitCode"])  # fmt: skip
    seen["history"] = [{k: _normal(str(v), user) for k, v in ad.items() if k not in ("ClusterId",)}
                       for ad in _ads(history.stdout, ("ClusterId", "ProcId", "JobStatus", "RemoveReason",
                                                       "MATCH_APF_QUEUE", "ExitCode"))]  # fmt: skip
    return seen


def test_the_emulator_answers_like_htcondor(real_condor: HTCondorPool, tmp_path: Path) -> None:
    emulator = CondorEmulator(tmp_path / "emulator")

    def emulated(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), env=emulator.env, capture_output=True, text=True, timeout=60)

    def emulated_hold(jid: str) -> None:
        emulator.set_status(jid, 5)

    work = real_condor.workdir("agreement")

    def real(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return real_condor.run(argv, check=False, cwd=work)

    def real_hold(jid: str) -> None:
        real_condor.run(["condor_hold", jid])

    (tmp_path / "emulated").mkdir()
    expected = _scenario(real, real_hold, real_condor.user, work)
    got = _scenario(emulated, emulated_hold, __import__("getpass").getuser(), tmp_path / "emulated")
    assert {k: v for k, v in got.items() if v != expected[k]} == {
        k: v for k, v in expected.items() if v != got[k]
    }


# The attributes of a submitted pilot that the factory writes or a CE/monitor reads.
PILOT_ATTRIBUTES = (
    "JobUniverse", "GridResource", "Arguments", "Environment", "FactoryId", "MATCH_APF_QUEUE",
    "APF_PANDA_QUEUE", "PeriodicHold", "PeriodicRemove", "xcount", "maxMemory", "JobStatus",
    "TransferExecutable", "ShouldTransferFiles", "WhenToTransferOutput", "JobNotification", "Out", "Err",
    "UserLog", "RequestCpus", "RequestMemory", "RequestDisk",
)  # fmt: skip


def test_a_factory_cycle_submits_the_same_pilots_to_the_emulator_and_to_htcondor(
    real_condor: HTCondorPool, httpserver, tmp_path: Path
) -> None:
    """One factory cycle (HTCondor-C and vanilla labels) against each; the pilots' ads agree."""
    stand = RealStand(real_condor, httpserver, "agreement-cycle")
    stand.dump = {"GRIDPQ": stand.ce_record("GRIDPQ", endpoint="127.0.0.1:9")}  # stays idle
    stand.stats = {pq: {"activated": 2, "assigned": 0, "running": 0} for pq in ("GRIDPQ", "LOCALPQ")}
    sleeper = stand.work / "sleeper.sh"
    sleeper.write_text("#!/bin/sh\nsleep 600\n")
    sleeper.chmod(0o755)
    queues = f"[GRIDPQ]\n[LOCALPQ]\nautoconfigure = false\nceFlavour = LOCAL\nexecutable = {sleeper}\n"
    conf = stand.write_config(queues, defaults={"nqueue": 1})
    stand.cycle(conf)
    real = {j["MATCH_APF_QUEUE"]: j for j in ours(real_condor.jobs())}

    emulator = CondorEmulator(tmp_path / "emulator")
    own = tmp_path / "factory.conf"  # its own state: the real run's memory of its schedd is not this one's
    own.write_text(conf.read_text().replace(f"stateDir = {stand.work}/state", f"stateDir = {tmp_path}/state"))
    subprocess.run(
        [sys.executable, "-m", "autopyfactory", "run", "-c", str(own), "--once"],
        env={**emulator.env, "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=120, check=True,
        cwd=tmp_path,
    )  # fmt: skip
    emulated = {j["MATCH_APF_QUEUE"]: j for j in emulator.jobs()}
    assert set(emulated) == set(real) == {"GRIDPQ-127.0.0.1", "LOCALPQ-local"}
    differences = {
        f"{label} {key}": (emulated[label].get(key), job.get(key))
        for label, job in real.items()
        for key in PILOT_ATTRIBUTES
        if _comparable(emulated[label].get(key)) != _comparable(job.get(key))
    }
    assert differences == {}, json.dumps(differences, indent=1)


def _comparable(value: Any) -> Any:
    """Job ids differ between the two schedds; everything else must not."""
    return re.sub(r"\b\d+\.\d+\b", "C.P", value) if isinstance(value, str) else value


REQUIREMENT = ["maxMemory =?= undefined || maxMemory <= 16000", '"maxMemory over 16000 MB"']


def _program_lines(out: str) -> list[dict[str, Any]]:
    """The program's lines with cluster numbers left out (each schedd numbers its own)."""
    return [{k: v for k, v in json.loads(line).items() if k != "cluster"} for line in out.splitlines()]


def test_the_submission_program_answers_like_htcondor(real_condor: HTCondorPool, tmp_path: Path) -> None:
    """The factory's autopyfactory-condor-submit with the emulated schedd and with the bindings
    against the real one: the same lines for a label submitted, one refused by the schedd's
    SUBMIT_REQUIREMENT (its reason), one whose executable is missing, and one after those."""
    work = real_condor.workdir("agreement-program")
    knob = real_condor.home / "pool" / "config.d" / "50-agreement.conf"
    knob.write_text(
        "SUBMIT_REQUIREMENT_NAMES = MEMCAP\n"
        f"SUBMIT_REQUIREMENT_MEMCAP = {REQUIREMENT[0]}\nSUBMIT_REQUIREMENT_MEMCAP_REASON = {REQUIREMENT[1]}\n"
    )
    real_condor.run(["condor_reconfig", "-schedd", "-name", real_condor.submit_schedd])
    try:
        names = [
            "condor_config_val",
            "-schedd",
            "-name",
            real_condor.submit_schedd,
            "SUBMIT_REQUIREMENT_NAMES",
        ]
        real_condor.wait_for(
            lambda: "MEMCAP" in real_condor.run(names, check=False).stdout,
            what="the requirement in the schedd",
        )
        base = 'universe = vanilla\nhold = True\n+FactoryId = "agree"\n'
        labels = [
            ("ok", 2, f"{base}executable = /bin/sleep\n+maxMemory = 2000\nqueue 2\n"),
            ("huge", 1, f"{base}executable = /bin/sleep\n+maxMemory = 64000\nqueue 1\n"),
            ("gone", 1, f"{base}executable = /nonexistent/missing.sh\nqueue 1\n"),
            ("after", 1, f"{base}executable = /bin/sleep\nqueue 1\n"),
        ]
        request = {"format": 1, "labels": [{"label": n, "count": c, "description": d} for n, c, d in labels]}
        for where in (work, tmp_path):
            (where / "requests.json").write_text(json.dumps(request))
            (where / "requests.json").chmod(0o644)
        program = ["-m", "autopyfactory.batch.condor.submitter", "-name", real_condor.submit_schedd]
        real = subprocess.run(
            real_condor.python_command([*program, str(work / "requests.json")]),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        emulator = CondorEmulator(tmp_path / "emulator")
        emulator.configure(SUBMIT_REQUIREMENTS={"MEMCAP": REQUIREMENT})
        emulated = subprocess.run(
            ["autopyfactory-condor-submit", str(tmp_path / "requests.json")],
            env=emulator.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert (emulated.returncode, _program_lines(emulated.stdout)) == (
            real.returncode,
            _program_lines(real.stdout),
        )
        assert [line["outcome"] for line in _program_lines(real.stdout)] == [
            "submitted", "refused", "refused", "submitted"
        ]  # fmt: skip
    finally:
        knob.unlink(missing_ok=True)
        real_condor.run(["condor_reconfig", "-schedd", "-name", real_condor.submit_schedd])
