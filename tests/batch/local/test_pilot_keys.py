"""Pilot keys with ``batch = local``: each pilot process gets its own key in its own environment,
the outcome carries each key's digest, and no key is written under the state dir or baseLogDir
(the registry keeps the environment without it). Real processes: a small Python pilot that
records its environment into a directory of the test's, outside the factory's."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from autopyfactory.batch.interface import SubmitContext, SubmitOutcome
from autopyfactory.batch.local.backend import LocalBackend
from autopyfactory.batch.local.registry import LocalPilot
from autopyfactory.domain.label import Label
from autopyfactory.domain.pilot_keys import is_pilot_key, key_digest
from tests.support.factory_conf import factory_conf, labels_from, write_factory_conf
from tests.support.waiting import wait_for

FID = "keys-factory"
NAME = "LOCALQ-local"
PILOT = """\
import json, os, sys, time
record, gate = os.environ["PILOT_RECORD"], os.environ.get("PILOT_GATE", "")
with open(os.path.join(record, os.environ["APFCID"] + ".json"), "w") as out:
    json.dump(dict(os.environ), out)
deadline = time.time() + 20
while gate and not os.path.exists(gate) and time.time() < deadline:
    time.sleep(0.02)
"""


@pytest.fixture
def label(tmp_path: Path) -> Label:
    conf = write_factory_conf(
        tmp_path, factory_conf(queues={"LOCALQ": {"autoconfigure": False, "batch": "local"}})
    )
    (found,) = labels_from(conf, dump=None)
    pilot = tmp_path / "pilot.py"
    pilot.write_text(f"#!{sys.executable}\n{PILOT}")
    pilot.chmod(0o755)
    record = tmp_path / "record"
    record.mkdir()
    environ = (("PILOT_RECORD", str(record)), ("PILOT_GATE", str(tmp_path / "gate")))
    return dataclasses.replace(
        found,
        submit=dataclasses.replace(found.submit, executable=str(pilot)),
        resources=dataclasses.replace(found.resources, environ=environ),
    )


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    """The state dir; at teardown the gate opens and every pilot still running is killed."""
    path = tmp_path / "state"
    yield path
    (tmp_path / "gate").touch()
    for entry_path in (path / "local" / "pilots").glob("*.json"):
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            pid = LocalPilot.from_json(entry_path.read_text()).pid
            if pid:
                os.killpg(pid, signal.SIGKILL)


def context(tmp_path: Path, monitor_url: str = "http://apfmon.example.org/api") -> SubmitContext:
    return SubmitContext(FID, "https://pandaserver.example.org:25443", str(tmp_path / "logs"), "",
                         monitor_url, "2026-03-01")  # fmt: skip


def submit(backend: LocalBackend, label: Label, n: int, ctx: SubmitContext) -> SubmitOutcome:
    return backend.submit([(label, n)], ctx)[label.name]


def seen_env(tmp_path: Path, job_id: str) -> dict[str, str]:
    path = tmp_path / "record" / f"{job_id}.json"
    wait_for(path.exists, 20, f"pilot {job_id} to start")
    wait_for(lambda: path.stat().st_size > 0, 20, f"pilot {job_id} to record its environment")
    found: dict[str, str] = json.loads(path.read_text())
    return found


def files_holding(root: Path, secrets: list[str]) -> list[Path]:
    return [
        path
        for path in root.rglob("*")
        if path.is_file() and any(s.encode() in path.read_bytes() for s in secrets)
    ]


def test_each_pilot_gets_its_own_key_also_one_that_waited_for_a_slot(
    tmp_path: Path, state: Path, label: Label
) -> None:
    backend = LocalBackend(FID, state, max_running=2, pilot_keys=True)

    outcome = submit(backend, label, 3, context(tmp_path))

    assert outcome.job_ids == ("1.0", "1.1", "1.2")
    keys = {job_id: seen_env(tmp_path, job_id).get("APFMON_KEY", "") for job_id in ("1.0", "1.1")}
    (tmp_path / "gate").touch()  # the first two end; a census starts the third, which waited
    wait_for(lambda: backend.census([label]) and (tmp_path / "record" / "1.2.json").exists(), 20)
    keys["1.2"] = seen_env(tmp_path, "1.2").get("APFMON_KEY", "")
    assert all(is_pilot_key(key) for key in keys.values()), keys
    assert len(set(keys.values())) == 3
    assert outcome.key_digests == {job_id: key_digest(key) for job_id, key in keys.items()}
    wait_for(lambda: backend.census([label]).total == 0, 20, "the pilots to finish")
    assert files_holding(state, list(keys.values())) == []  # registry, history, work dirs
    assert files_holding(tmp_path / "logs", list(keys.values())) == []


@pytest.mark.parametrize(
    ("pilot_keys", "monitor_url"), [(False, "http://apfmon.example.org/api"), (True, "")]
)
def test_no_key_when_off_or_without_a_monitor(
    tmp_path: Path, state: Path, label: Label, pilot_keys: bool, monitor_url: str
) -> None:
    backend = LocalBackend(FID, state, pilot_keys=pilot_keys)
    outcome = submit(backend, label, 1, context(tmp_path, monitor_url))
    assert outcome.key_digests == {}
    assert "APFMON_KEY" not in seen_env(tmp_path, "1.0")


def test_a_pilot_still_waiting_when_the_factory_restarts_starts_without_a_key(
    tmp_path: Path, state: Path, label: Label
) -> None:
    first = LocalBackend(FID, state, max_running=1, pilot_keys=True)
    outcome = submit(first, label, 2, context(tmp_path))
    assert set(outcome.key_digests) == {"1.0", "1.1"}  # 1.1 waits for the slot
    assert "APFMON_KEY" in seen_env(tmp_path, "1.0")

    restarted = LocalBackend(FID, state, max_running=1, pilot_keys=True)  # the key of 1.1 is gone
    (tmp_path / "gate").touch()
    wait_for(lambda: restarted.census([label]) and (tmp_path / "record" / "1.1.json").exists(), 20)
    assert "APFMON_KEY" not in seen_env(tmp_path, "1.1")


def test_a_reload_keeps_the_key_of_a_pilot_still_waiting(tmp_path: Path, state: Path, label: Label) -> None:
    """A reload builds a new backend in the same process: it takes over the keys of the pilots
    still waiting for a slot, which start with their own key (the digest announced)."""
    first = LocalBackend(FID, state, max_running=1, pilot_keys=True)
    outcome = submit(first, label, 2, context(tmp_path))
    assert "APFMON_KEY" in seen_env(tmp_path, "1.0")

    reloaded = LocalBackend(FID, state, max_running=1, pilot_keys=True)
    reloaded.take_over(first)
    (tmp_path / "gate").touch()
    wait_for(lambda: reloaded.census([label]) and (tmp_path / "record" / "1.1.json").exists(), 20)
    assert key_digest(seen_env(tmp_path, "1.1")["APFMON_KEY"]) == outcome.key_digests["1.1"]
