"""``autopyfactory simulate``: the policy on numbers from the command line, as an operator runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

WORKED_EXAMPLE = [
    "--activated", "100", "--pending", "10",
    "--schedplugin", "Ready, Scale, MaxPerCycle, MinPerCycle, StatusTest, StatusOffline, MaxPending",
    "--set", "sched.ready.offset=4", "--set", "sched.scale.factor=0.5",
    "--set", "sched.maxpercycle.maximum=100", "--set", "sched.minpercycle.minimum=0",
    "--set", "sched.maxpending.maximum=25",
]  # fmt: skip


def simulate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autopyfactory", "simulate", *args], capture_output=True, text=True, timeout=60
    )


def test_worked_example_as_json():
    result = simulate(*WORKED_EXAMPLE, "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["n"] == 15
    assert [s["out"] for s in answer["steps"]] == [86, 43, 43, 43, 43, 43, 15]
    assert answer["steps"][-1] == {"plugin": "MaxPending", "in": 43, "out": 15, "reason": "pending=10 max=25"}


def test_worked_example_as_text():
    result = simulate(*WORKED_EXAMPLE)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Ready: in=0 activated=100 offset=4 pending=10 -> 86"
    assert lines[-2] == "MaxPending: in=43 pending=10 max=25 -> 15"
    assert lines[-1] == "=> 15 pilots"


def test_classic_by_default_with_idle_and_held():
    result = simulate("--activated", "5", "--idle", "3", "--held", "2", "--json")
    answer = json.loads(result.stdout)
    assert answer["n"] == 20
    assert answer["steps"][0]["reason"] == "activated=5 pending=5 nqueue=20"


def test_unknown_activated_gives_zero_with_the_reason():
    answer = json.loads(simulate("--activated", "unknown", "--json").stdout)
    assert answer == {
        "n": 0,
        "steps": [{"plugin": "NoData", "in": 0, "out": 0, "reason": "no PanDA data this cycle"}],
    }


def test_unknown_pending_gives_zero():
    assert json.loads(simulate("--activated", "9", "--pending", "unknown", "--json").stdout)["n"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--activated", "-3"], "must not be negative"),
        (["--set", "sched.maxpendin.maximum=3"], "did you mean 'sched.maxpending.maximum'"),
        (["--schedplugin", "Ready,MaxPendng"], "did you mean 'MaxPending'"),
        (["--set", "sched.maxpending.maximum=many"], "expected a whole number"),
        (["--status", "paused"], "unknown queue status 'paused'"),
        (["--pending", "3", "--held", "5"], "--held=5 is more than --pending=3"),
    ],
)
def test_bad_input_is_a_usage_error(args, message):
    result = simulate(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_version_and_help():
    version = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "--version"], capture_output=True, text=True
    )
    assert version.stdout.strip().startswith("autopyfactory 0.")
    helptext = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "--help"], capture_output=True, text=True
    )
    assert helptext.returncode == 0
    assert "simulate" in helptext.stdout
    assert "check" in helptext.stdout


def test_a_resource_type_limit_caps_the_decision():
    result = simulate(
        "--activated", "50", "--pending", "0", "--schedplugin", "Ready",
        "--resource-type", "mcore", "--type-limit", "10", "--type-pilots", "4",
    )  # fmt: skip
    assert result.stdout.splitlines()[-2:] == [
        "ResourceTypeLimit: in=50 requested=50 MCORE limit=10 pilots=4 -> 6",
        "=> 6 pilots",
    ]
    unknown = simulate(
        "--activated", "50", "--schedplugin", "Ready", "--resource-type", "MCORE", "--type-limit", "10",
        "--type-pilots", "unknown", "--json",
    )  # fmt: skip
    assert json.loads(unknown.stdout)["n"] == 0


def test_one_pilot_is_singular():
    """Singular: "1 pilot", not "1 pilots"."""
    result = simulate("--activated", "1", "--schedplugin", "Ready")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "=> 1 pilot"
