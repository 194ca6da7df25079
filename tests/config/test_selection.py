"""Queue selection from CRIC (``queues = cric: ...`` in [Factory]): which PanDA queues are served,
that a queue section wins, what ``check`` says about every candidate, and the warning for a queue
another pilot system fills."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from autopyfactory.config import loader as config
from autopyfactory.config.autoconfigure import build_labels
from autopyfactory.config.loader import ConfigErrors
from autopyfactory.config.selection import parse_selection
from autopyfactory.domain.policy import ClassicOptions
from tests.support.check import run
from tests.support.e2e import Stand, per_label, write_config
from tests.support.e2e import run as run_factory
from tests.support.paths import DATA

WRAPPER = DATA.parent.parent / "wrappers" / "runpilot3-wrapper.sh"
SELECTION = "cric: pilot_manager=apf vo=atlas state=ACTIVE cloud=UK"


def uk_dump() -> dict[str, Any]:
    """The test dump's TEST-SITE record (one HTCondor-CE) as six UK-cloud-ish queues, and CERN."""
    dump = json.loads((DATA / "cric_dump.json").read_text())
    base = dump["TEST-SITE"] | {"status": "online", "vo_name": "atlas", "state": "ACTIVE", "cloud": "UK"}
    queues = {
        "UKI-A": {"pilot_manager": "APF"},
        "UKI-B": {"pilot_manager": "apf"},
        "UKI-C": {"pilot_manager": "Harvester"},
        "UKI-D": {"pilot_manager": "APF", "state": "INACTIVE"},
        "UKI-E": {"pilot_manager": "APF", "vo_name": None},
        "DE-A": {"pilot_manager": "APF", "cloud": "DE"},
    }
    records = {pq: copy.deepcopy(base) | {"nickname": pq, "siteid": pq} | o for pq, o in queues.items()}
    return records | {"CERN": dump["CERN"]}


FACTORY = f"""\
[Factory]
factoryId = test-factory
factoryOwner = ops@cern.ch
pandaserver = https://pandaserver.cern.ch:25443
schedconfig = file:///nonexistent/cric.json
queues = {SELECTION}

[QueueDefaults]
executable = {WRAPPER}
"""


def test_the_selection_is_parsed_with_clear_errors() -> None:
    selection = parse_selection("cric:  vo=atlas cloud=UK,DE pilot_manager!=Harvester")
    assert selection is not None
    assert str(selection) == "cric: vo=atlas cloud=UK,DE pilot_manager!=Harvester"
    assert [(c.field, c.values, c.negated) for c in selection.criteria] == [
        ("vo_name", ("atlas",), False),
        ("cloud", ("uk", "de"), False),
        ("pilot_manager", ("harvester",), True),
    ]
    assert parse_selection("  ") is None
    for text, error in (
        ("cloud=UK", "expected 'cric: field=value ...'"),
        ("cric:", "needs at least one field=value"),
        ("cric: cloud", "'cloud': expected field=value"),
        ("cric: cloud=UK,", "'cloud=UK,': expected field=value"),
    ):
        with pytest.raises(ValueError, match=error):
            parse_selection(text)


def test_a_bad_selection_is_a_factory_error_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "factory.conf"
    path.write_text(FACTORY.replace(SELECTION, "cric: cloud"))
    with pytest.raises(ConfigErrors) as raised:
        config.load(path)
    assert f"{path}:6: [Factory] queues: bad value: 'cloud': expected field=value" in str(raised.value)


def test_selected_queues_are_served_and_a_section_wins(tmp_path: Path) -> None:
    path = tmp_path / "factory.conf"
    path.write_text(FACTORY + "[UKI-B]\nnqueue = 3\n[CERN]\n")
    result = build_labels(config.load(path), uk_dump())
    assert result.problems == ()
    labels = {label.name: label for label in result.labels}
    assert sorted({label.queue for label in result.labels}) == ["CERN", "UKI-A", "UKI-B"]
    [uki_a] = [label for label in result.labels if label.queue == "UKI-A"]
    assert uki_a.name == "UKI-A-ce01.test.example-default"
    assert uki_a.pq == "UKI-A"
    assert uki_a.settings["executable"].value == str(WRAPPER)  # [QueueDefaults] applies
    assert labels["UKI-B-ce01.test.example-default"].policy.of(ClassicOptions).nqueue == 3
    assert uki_a.policy.of(ClassicOptions).nqueue == 20
    assert result.warnings == (
        "[CERN] CRIC says pilot_manager=Harvester for PanDA queue CERN: that system fills it too, and two"
        " factories would send pilots for the same jobs (have CRIC say pilot_manager=APF first, or leave"
        " the queue to that system)",
    )


def test_a_section_disabled_by_its_own_error_still_wins(tmp_path: Path) -> None:
    path = tmp_path / "factory.conf"
    path.write_text(FACTORY + "[UKI-A]\nnqeue = 3\n")
    result = build_labels(config.load(path), uk_dump())
    assert {label.queue for label in result.labels} == {"UKI-B"}  # not UKI-A: its section is broken
    assert "[UKI-A] nqeue: unknown key (did you mean 'nqueue'?)" in result.problems[0]


def test_an_unknown_field_selects_nothing(tmp_path: Path) -> None:
    path = tmp_path / "factory.conf"
    path.write_text(FACTORY.replace("cloud=UK", "clod=UK"))
    result = build_labels(config.load(path), uk_dump())
    assert result.labels == ()
    typo = SELECTION.replace("cloud=UK", "clod=UK")
    assert result.problems == (
        f"queues = {typo}: no record in schedconfig has a field 'clod' (did you mean 'cloud'?):"
        " no queue selected",
    )
    without = build_labels(config.load(path), None)
    assert without.problems == (f"queues = {typo}: schedconfig is not available, no queue selected",)


def test_check_lists_what_was_selected_and_why_the_others_were_not(tmp_path: Path) -> None:
    dump = tmp_path / "cric.json"
    dump.write_text(json.dumps(uk_dump()))
    path = tmp_path / "factory.conf"
    path.write_text(FACTORY + "[UKI-B]\nnqueue = 3\n")
    result = run("check", "-c", path, "--schedconfig", dump)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[1:7] == [
        f"queues = {SELECTION}: 1 of 7 PanDA queues selected: UKI-A",
        "  selected, served by their own queue section: UKI-B",
        "  not selected, pilot_manager is 'harvester', not apf: CERN, UKI-C",
        "  not selected, cloud is 'de', not UK: DE-A",
        "  not selected, state is 'inactive', not ACTIVE: UKI-D",
        "  not selected, vo_name is not set, not atlas: UKI-E",
    ]
    assert lines[7].startswith("UKI-B-ce01.test.example-default  PQ=UKI-B ")
    answer = json.loads(run("check", "-c", path, "--schedconfig", dump, "--json").stdout)
    assert answer["selection"]["selected"] == ["UKI-A"]
    assert answer["selection"]["not_selected"]["UKI-C"] == "pilot_manager is 'harvester', not apf"


def test_the_cycle_submits_for_the_selected_queues(tmp_path: Path, stand: Stand, condor) -> None:
    stand.dump = uk_dump()
    stand.stats = {pq: {"activated": 4} for pq in stand.dump}
    conf = write_config(tmp_path, stand, "[UKI-B]\nenabled = false\n", factory=f"queues = {SELECTION}\n")
    run_factory(conf, condor, "--once")
    assert set(per_label(condor.jobs())) == {"UKI-A-ce01.test.example-default"}
