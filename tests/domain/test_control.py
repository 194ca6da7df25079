"""The control file's content (control.json) is checked field by field, as strictly as factory.conf."""

from __future__ import annotations

import json
from typing import Any

import pytest

from autopyfactory.domain.control import Controls, Disable, Removal, controls_from_json

GOOD_DISABLE: dict[str, Any] = {
    "name": "PQA",
    "reason": "CE upgrade",
    "since": 1.0e9,
    "until": 2.0e9,
    "by": "ops",
}
GOOD_REMOVAL: dict[str, Any] = {
    "id": "ab12cd34", "requested": 1.0e9, "label": "", "pq": "PQA", "ce": "", "idle_only": False,
    "by": "ops", "reason": "CE retired",
}  # fmt: skip


def record(disabled: dict[str, Any] | None = None, removal: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"format": 1, "disabled": [disabled or GOOD_DISABLE], "removals": [removal or GOOD_REMOVAL]}


def test_what_the_commands_write_reads_back_the_same() -> None:
    controls = Controls(
        (Disable("PQA", "why", 1.0, None, "ops"), Disable("PQB", "", 2.0, 3.0)),
        (Removal("r1", 1.0, pq="PQA", idle_only=True, by="ops", reason="drain"),),
    )
    assert controls_from_json(json.loads(json.dumps(controls.to_json()))) == controls
    assert controls_from_json(record()).disabled[0].until == 2.0e9


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("until", "tomorrow", 'disabled[0].until: "tomorrow" is not a time'),
        ("until", float("nan"), "disabled[0].until: nan is not a finite time"),
        ("until", float("inf"), "disabled[0].until: inf is not a finite time"),
        ("until", 10**400, "disabled[0].until: 1000"),
        ("until", True, "disabled[0].until: true is not a time"),
        ("until", 1e300, "disabled[0].until: 1e\\+300 is not a time between 1970 and 9999"),
        ("since", -5, "disabled[0].since: -5 is not a time between 1970 and 9999"),
        ("since", None, "disabled[0].since: null is not a time"),
        ("name", ["PQA"], 'disabled[0].name: ["PQA"] is not a non-empty string'),
        ("name", "", 'disabled[0].name: "" is not a non-empty string'),
        ("reason", 3, "disabled[0].reason: 3 is not a string"),
        ("by", {"u": 1}, 'disabled[0].by: {"u": 1} is not a string'),
        ("untill", 5, "disabled[0].untill: unknown key"),
    ],
)
def test_a_wrong_field_of_a_disable_is_named(field: str, value: object, said: str) -> None:
    with pytest.raises(ValueError, match="^" + said.replace("[", r"\[").replace("{", r"\{")):
        controls_from_json(record(disabled=GOOD_DISABLE | {field: value}))


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("reason", ["CE", "retired"], 'removals[0].reason: ["CE", "retired"] is not a string'),
        ("idle_only", "yes", 'removals[0].idle_only: "yes" is not true or false'),
        ("requested", "now", 'removals[0].requested: "now" is not a time'),
        ("id", 7, "removals[0].id: 7 is not a non-empty string"),
        ("pq", None, "removals[0].pq: null is not a string"),
        ("label", 1.5, "removals[0].label: 1.5 is not a string"),
    ],
)
def test_a_wrong_field_of_a_removal_is_named(field: str, value: object, said: str) -> None:
    with pytest.raises(ValueError, match="^" + said.replace("[", r"\[")):
        controls_from_json(record(removal=GOOD_REMOVAL | {field: value}))


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ([], "not an autopyfactory control file"),
        ({"format": True, "disabled": []}, "format: True"),
        ({"format": 2}, "format: 2"),
        ({"format": 1, "disabled": {"name": "PQA"}}, 'disabled: {"name": "PQA"} is not a list'),
        ({"format": 1, "disabled": ["PQA"]}, 'disabled\\[0\\]: "PQA" is not a JSON object'),
        ({"format": 1, "disabled": [{"name": "PQA"}]}, "disabled\\[0\\]: reason, since missing"),
        ({"format": 1, "removals": [{"id": "x"}]}, "removals\\[0\\]: requested missing"),
        ({"format": 1, "disable": []}, "disable: unknown key"),
    ],
)
def test_a_wrong_shape_is_named(content: object, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        controls_from_json(content)
