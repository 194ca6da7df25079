"""The cycle's label source: factory.conf's queues with the real SchedconfigSource reading a dump
from a file; labels rebuilt only for another snapshot, and without schedconfig the queues that
need none, with the problem said."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import requests

from autopyfactory.config import loader as config
from autopyfactory.config.schedconfig_labels import SchedconfigLabels
from autopyfactory.edges.schedconfig import SchedconfigSource
from tests.support.factory_conf import write_factory_conf
from tests.support.paths import DATA


class Clock:
    def __init__(self) -> None:
        self.now = 1_780_000_000.0

    def __call__(self) -> float:
        return self.now


def setup(tmp_path: Path) -> tuple[Path, Clock, SchedconfigLabels]:
    dump = tmp_path / "cric.json"
    shutil.copy(DATA / "cric_dump.json", dump)
    conf = write_factory_conf(
        tmp_path,
        factory={
            "factoryId": "f",
            "pandaserver": "http://127.0.0.1:9",
            "schedconfig": dump,
            "stateDir": tmp_path / "state",
        },
        queues={"CERN": {}, "LOCALQ": {"batch": "local", "autoconfigure": False}},
    )
    clock = Clock()
    source = SchedconfigSource(str(dump), tmp_path / "copy.json", 600, requests.Session(), 5.0, clock)
    return dump, clock, SchedconfigLabels(config.load(conf), source)


def test_labels_are_rebuilt_only_for_another_snapshot(tmp_path: Path) -> None:
    dump, clock, labels = setup(tmp_path)
    first = labels.read()
    assert first.schedconfig_problem == ""
    assert len(first.label_set.labels) == 14  # 13 CERN CEs and the local queue
    clock.now += 60  # within schedconfigRefresh: the same snapshot
    assert labels.read().label_set is first.label_set
    record = json.loads(dump.read_text())
    record["CERN"]["queues"] = record["CERN"]["queues"][:1]
    dump.write_text(json.dumps(record))
    clock.now += 600  # refreshed: another snapshot
    assert len(labels.read().label_set.labels) == 2


def test_without_schedconfig_the_queues_that_need_none_are_served(tmp_path: Path) -> None:
    dump, _clock, labels = setup(tmp_path)
    dump.unlink()
    reading = labels.read()
    assert reading.schedconfig_problem.startswith(f"schedconfig: {dump}: ")
    assert "no last-good copy either" in reading.schedconfig_problem
    assert [label.name for label in reading.label_set.labels] == ["LOCALQ-local"]
    assert reading.label_set.problems == ("[CERN] skipped: schedconfig is not available",)
