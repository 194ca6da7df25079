"""``submitAttributes``: the site's own submit commands, checked at load time, shown by ``check -v``
with their source, written into each of the queue's labels' descriptions, and never one the factory
writes itself."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from autopyfactory.batch.condor.submit import STANDARD, render_submit, validate
from autopyfactory.batch.interface import SubmitContext
from autopyfactory.config import loader as config
from autopyfactory.config.autoconfigure import build_labels
from autopyfactory.config.submit_attributes import owned, parse_submit_attributes
from tests.support.check import DUMP, example_with, run
from tests.support.factory_conf import write_factory_conf

SITE = """submitAttributes =
    accounting_group = group_atlas.prod
    +AccountingGroup = "group_atlas.prod"
    requirements = (OpSysAndVer == "AlmaLinux9")
"""
CONTEXT = SubmitContext("f", "https://pandaserver.cern.ch:25443", "/var/log/apf", "", "", "2026-03-01")


def write(tmp_path: Path, queues: str, defaults: str = "") -> Path:
    return write_factory_conf(tmp_path, defaults=["scitokensFile = /tmp/token", defaults], queues=queues)


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), start=1) if line.startswith(text))


def test_a_queue_s_attributes_reach_its_labels_descriptions_after_the_factory_s_lines(tmp_path):
    path = write(tmp_path, f"[CERN]\n{SITE}[NDGF-T1]\n")
    loaded = config.load(path)
    assert loaded.errors == ()
    labels = {label.queue: label for label in build_labels(loaded, json.loads(DUMP.read_text())).labels}
    assert labels["CERN"].submit.site_attributes == (
        ("accounting_group", "group_atlas.prod"),
        ("+AccountingGroup", '"group_atlas.prod"'),
        ("requirements", '(OpSysAndVer == "AlmaLinux9")'),
    )
    assert labels["NDGF-T1"].submit.site_attributes == ()
    text = render_submit(labels["CERN"], 2, CONTEXT)
    validate(text)
    lines = text.splitlines()
    assert lines[-4:] == [
        "accounting_group = group_atlas.prod",
        '+AccountingGroup = "group_atlas.prod"',
        'requirements = (OpSysAndVer == "AlmaLinux9")',
        "queue 2",
    ]
    assert "accounting_group" not in render_submit(labels["NDGF-T1"], 1, CONTEXT)


def test_queue_defaults_give_them_to_every_queue_and_a_section_replaces_them(tmp_path):
    path = write(tmp_path, '[CERN]\n[NDGF-T1]\nsubmitAttributes = +Site = "ndgf"\n', defaults=SITE)
    labels = {
        label.queue: label for label in build_labels(config.load(path), json.loads(DUMP.read_text())).labels
    }
    assert len(labels["CERN"].submit.site_attributes) == 3
    assert labels["NDGF-T1"].submit.site_attributes == (("+Site", '"ndgf"'),)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('+FactoryId = "other"', "+FactoryId is written by the factory itself (the factory's own tag"),
        ('MY.Match_Apf_Queue = "x"', "is written by the factory itself"),
        ('+APF_PANDA_QUEUE = "x"', "is written by the factory itself"),
        ("periodic_remove = true", "the periodic policy is the factory's"),
        ("+PeriodicHold = false", "the periodic policy is the factory's"),
        ("x509userproxy = /tmp/x", "credentials are set with x509userproxy or scitokensFile"),
        ("scitokens_file = /tmp/t", "credentials are set with x509userproxy or scitokensFile"),
        ('environment = "A=1"', "the environment is schedconfig's environ"),
        ("getenv = true", "the environment is schedconfig's environ"),
        ("arguments = -x", "set arguments (the wrapper's) or pilotExtraArgs"),
        ("executable = /bin/sh", "set executable"),
        ("output = /tmp/o", "baseLogDir"),
        ("Log = /tmp/l", "baseLogDir"),
        ("universe = vanilla", "the CE comes from CRIC"),
        ("grid_resource = condor a b", "the CE comes from CRIC"),
        ("request_memory = 4000", "set maxrss"),
        ("+xcount = 8", "set corecount"),
        ('+remote_queue = "long"', "set ceQueue"),
        ("queue 5", "the factory decides how many pilots to queue"),
        ("accounting_group group_atlas", "expected 'key = value'"),
        ("9lives = 1", "is not a submit command or +Attribute name"),
        ("+Broken = (1 +", "not a ClassAd expression"),
        ("requirements = (a ==", "not a ClassAd expression"),
        ("rank =", "a value is required"),
    ],
)
def test_what_the_factory_owns_or_htcondor_refuses_is_a_config_error_with_its_line(tmp_path, line, message):
    path = write(tmp_path, f"[CERN]\nnqueue = 3\nsubmitAttributes =\n    accounting_group = a\n    {line}\n")
    errors = [str(error) for error in config.load(path).errors]
    assert len(errors) == 1, errors
    assert message in errors[0], errors
    at = line_of(path, "submitAttributes")
    assert errors[0].startswith(f"{path}:{at}: [CERN] submitAttributes: bad value: "), errors


def test_a_key_given_twice_is_an_error():
    with pytest.raises(ValueError, match="Requirements is already set"):
        parse_submit_attributes("requirements = true\nRequirements = false\n")


def test_every_key_the_factory_writes_is_owned(tmp_path):
    """A site attribute can never override a line the factory writes (apart from the transfer and
    notification defaults, which a site may change)."""
    path = write(
        tmp_path,
        "[CERN]\n[NDGF-T1]\nx509userproxy = /tmp/x509\n"
        "[MYLOCAL]\nautoconfigure = false\nceFlavour = LOCAL\ncorecount = 4\nmaxrss = 8000\nmaxwdir = 2000\n",
    )
    labels = build_labels(config.load(path), json.loads(DUMP.read_text())).labels
    standard = {line.split(" = ")[0].lower() for line in STANDARD}
    flavours = set()
    for label in labels:
        label = dataclasses.replace(label, resource_type="MCORE")
        flavours.add(label.ce.flavour)
        for line in render_submit(label, 1, CONTEXT).splitlines()[1:-1]:
            key = line.split(" = ")[0]
            assert key.lower() in standard or owned(key), key
    assert flavours == {"HTCONDOR-CE", "ARC-CE", "LOCAL"}


def test_check_v_shows_each_command_with_its_source(tmp_path):
    path, line = example_with(tmp_path, "[CERN]", SITE)
    result = run("check", "-v", "-c", path, "--schedconfig", DUMP)
    lines = result.stdout.splitlines()
    shown = [i for i, text in enumerate(lines) if text.split()[:1] == ["submitAttributes"]]
    assert len(shown) == 13  # one per label of CERN (13 CEs)
    for at in shown:
        assert lines[at].split() == ["submitAttributes", "local", "3", "commands", f"({path}:{line})"]
        assert [text.strip() for text in lines[at + 1 : at + 4]] == [
            "accounting_group = group_atlas.prod",
            '+AccountingGroup = "group_atlas.prod"',
            'requirements = (OpSysAndVer == "AlmaLinux9")',
        ]
