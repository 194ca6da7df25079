"""The factory.conf builder the tests share: the layout tests of file:line rely on, and that what it
writes is what the config loader reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopyfactory.config import loader
from autopyfactory.config.loader import ConfigError
from tests.support.factory_conf import REQUIRED, factory_conf, labels_from, write_factory_conf


def test_alone_it_is_the_five_lines_factory_requires() -> None:
    lines = factory_conf().splitlines()
    assert lines == ["[Factory]", *(f"{key} = {value}" for key, value in REQUIRED.items())]


def test_sections_in_order_after_one_blank_line_with_values_as_the_loader_reads_them(tmp_path: Path) -> None:
    text = factory_conf(
        factory={"factoryId": "mine", "sleep": 7},
        defaults={"holdRerun": False, "arguments": "-a\n-b"},
        queues={"CERN": {"nqueue": 3}, "NDGF-T1": "# the exact text\nnqueue = 4"},
    )
    assert text.splitlines()[:7] == [
        "[Factory]",
        "factoryId = mine",  # a required key keeps its line
        "factoryOwner = ops@example.org",
        "pandaserver = https://pandaserver.example.org:25443",
        "schedconfig = file:///nonexistent/cric.json",
        "sleep = 7",
        "",
    ]
    assert text.endswith("\n\n[CERN]\nnqueue = 3\n\n[NDGF-T1]\n# the exact text\nnqueue = 4\n")
    cfg = loader.load(write_factory_conf(tmp_path, text))
    assert cfg.errors == ()
    assert (cfg.factory.identity.factory_id, cfg.factory.identity.sleep) == ("mine", 7)
    cern, ndgf = cfg.queues
    assert (cern.get("nqueue"), ndgf.get("nqueue")) == (3, 4)
    assert cern.get("holdRerun") is False
    assert cern.get("arguments") == "-a\n-b"


def test_none_leaves_a_key_out_and_text_is_added_as_it_is(tmp_path: Path) -> None:
    text = factory_conf(factory=[{"factoryOwner": None}, "maxPilots = 30"], queues="[CERN]\nnqeue = 3")
    assert text.splitlines()[1:] == [
        "factoryId = test-factory",
        "pandaserver = https://pandaserver.example.org:25443",
        "schedconfig = file:///nonexistent/cric.json",
        "maxPilots = 30",
        "",
        "[CERN]",
        "nqeue = 3",
    ]
    with pytest.raises(ConfigError, match="factoryOwner: missing required key"):
        loader.load(write_factory_conf(tmp_path, text))


def test_labels_from_builds_the_labels_of_the_cric_records(tmp_path: Path) -> None:
    labels = labels_from(write_factory_conf(tmp_path, queues={"NDGF-T1": {}}))
    assert [label.name for label in labels] == [
        "NDGF-T1-arc01.ndgf.org-atlas",
        "NDGF-T1-arc02.ndgf.org-atlas",
    ]
