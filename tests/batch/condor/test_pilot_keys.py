"""Pilot keys through the HTCondor path (emulator): each pilot of a label's cluster gets its own
key in its own environment, the factory learns each job's key digest, and the request file kept
beside the pilot logs holds no key. The same against a real schedd: tests/htcondor/test_pilot_keys_real.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from autopyfactory.batch.condor.bulk import read_lines, submit_batch
from autopyfactory.batch.condor.command import Schedd
from autopyfactory.batch.interface import SubmitContext
from autopyfactory.domain.label import Label
from autopyfactory.domain.pilot_keys import is_pilot_key, key_digest
from tests.support.condor_emulator.driver import CondorEmulator
from tests.support.factory_conf import labels_from, write_factory_conf

CERN = ["CERN-ce503.cern.ch-share", "CERN-ce504.cern.ch-share"]
MONITOR = "http://apfmon.example.org/api"
_KEY = re.compile(r"APFMON_KEY=(\S*)")


@pytest.fixture
def labels(tmp_path: Path) -> dict[str, Label]:
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text("#!/bin/sh\n")
    path = write_factory_conf(
        tmp_path, factory={"factoryId": "keys-factory"}, defaults={"executable": wrapper}, queues={"CERN": {}}
    )
    return {label.name: label for label in labels_from(path)}


def context(tmp_path: Path, monitor_url: str = MONITOR) -> SubmitContext:
    return SubmitContext("keys-factory", "https://pandaserver.cern.ch:25443", str(tmp_path / "logs"),
                         "", monitor_url, "2026-03-01")  # fmt: skip


def keys_of(condor: CondorEmulator) -> dict[str, str]:
    """Each job's APFMON_KEY as its job ad's Environment holds it ("" for none)."""
    found = {}
    for job in condor.jobs():
        match = _KEY.search(str(job.get("Environment", "")))
        found[f"{job['ClusterId']}.{job['ProcId']}"] = match[1] if match else ""
    return found


def test_each_pilot_of_a_cluster_gets_its_own_key_and_the_factory_its_digest(labels, tmp_path, condor):
    result = submit_batch(
        [(labels[CERN[0]], 3), (labels[CERN[1]], 1)], context(tmp_path), Schedd(), 30, pilot_keys=True
    )

    first, second = result.outcomes[CERN[0]], result.outcomes[CERN[1]]
    assert (first.job_ids, second.job_ids) == (("1.0", "1.1", "1.2"), ("2.0",))  # N jobs, not N per key
    keys = keys_of(condor)
    assert sorted(keys) == ["1.0", "1.1", "1.2", "2.0"]
    assert all(is_pilot_key(key) for key in keys.values())
    assert len(set(keys.values())) == 4
    digests = {**first.key_digests, **second.key_digests}
    assert digests == {job_id: key_digest(key) for job_id, key in keys.items()}


def test_the_request_file_says_keys_but_holds_none(labels, tmp_path, condor):
    result = submit_batch([(labels[CERN[0]], 2)], context(tmp_path), Schedd(), 30, pilot_keys=True)

    text = Path(result.outcomes[CERN[0]].submit_file).read_text()
    entry = json.loads(text)["labels"][0]
    assert entry["keys"] is True
    assert "APFMON_KEY=$(APF_PILOT_KEY)" in entry["description"]
    assert "apfp_" not in text
    for path in (tmp_path / "logs").rglob("*"):
        assert not path.is_file() or "apfp_" not in path.read_text(errors="replace"), path


@pytest.mark.parametrize(("pilot_keys", "monitor_url"), [(False, MONITOR), (True, "")])
def test_no_keys_when_off_or_without_a_monitor(labels, tmp_path, condor, pilot_keys, monitor_url):
    result = submit_batch(
        [(labels[CERN[0]], 2)], context(tmp_path, monitor_url), Schedd(), 30, pilot_keys=pilot_keys
    )

    assert result.outcomes[CERN[0]].job_ids == ("1.0", "1.1")
    assert result.outcomes[CERN[0]].key_digests == {}
    assert keys_of(condor) == {"1.0": "", "1.1": ""}
    request = json.loads(Path(result.outcomes[CERN[0]].submit_file).read_text())
    assert "keys" not in request["labels"][0]
    assert "APF_PILOT_KEY" not in request["labels"][0]["description"]


def test_a_submitted_line_whose_digests_do_not_fit_its_jobs_is_not_used() -> None:
    line = {"label": "L", "outcome": "submitted", "cluster": 7, "first": 0, "count": 2}
    good = {**line, "key_sha256": [key_digest("a"), key_digest("b")]}
    short = {**line, "key_sha256": [key_digest("a")]}
    raw = {**line, "key_sha256": ["apfp_" + "x" * 43, key_digest("b")]}
    for item, used in ((good, True), (short, False), (raw, False), (line, True)):
        found, stray = read_lines(json.dumps(item) + "\n", {"L"})
        assert ("L" in found, len(stray)) == (used, 0 if used else 1), item
