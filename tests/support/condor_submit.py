"""Rendered HTCondor submit descriptions read as HTCondor reads them: the values after
condor_submit's own parser and macro expansion, and its "new syntax" for arguments and environment
decoded by the rules of the condor_submit manual; plus the labels and the submit context the
submit tests render for."""

from __future__ import annotations

from pathlib import Path

import htcondor2

from autopyfactory.batch.interface import SubmitContext
from autopyfactory.domain.label import Label
from tests.support.factory_conf import factory_conf, labels_from, write_factory_conf

#: CERN and NDGF-T1 from CRIC, NDGF-T1 again as an 8-core queue, and a queue configured by hand
#: (no CRIC record) for the local schedd; all with a proxy.
SUBMIT_CONF = factory_conf(
    defaults={"x509userproxy": "/tmp/x509up_u1000"},
    queues={
        "CERN": {},
        "NDGF-T1": {},
        "NDGF-MCORE": {"wmsqueue": "NDGF-T1", "corecount": 8},
        "MYLOCAL": {
            "autoconfigure": False,
            "ceFlavour": "LOCAL",
            "corecount": 4,
            "maxrss": 8000,
            "maxwdir": 20000,
            "holdRerun": True,
        },
    },
)

CONTEXT = SubmitContext(
    factory_id="test-factory",
    pandaserver="https://pandaserver.cern.ch:25443",
    base_log_dir="/var/log/apf/pilots",
    base_log_dir_url="http://factory.example.org/pilots",
    monitor_url="http://apfmon.example.org/api",
    date="2026-03-01",
)


def submit_labels(directory: Path) -> list[Label]:
    """The labels of :data:`SUBMIT_CONF` (factory.conf written to ``directory``)."""
    return labels_from(write_factory_conf(directory, SUBMIT_CONF))


def expanded(text: str, key: str) -> str:
    """The value of ``key`` after condor_submit's macro expansion ($(DOLLAR) -> $)."""
    return str(htcondor2.Submit(text).expand(key))


def decode_new_syntax(text: str) -> list[str]:
    """Condor's new syntax for arguments/environment, decoded by the manual's rules:
    outer double quotes, "" is a literal ", whitespace separates, '...' groups, '' inside is '."""
    assert text.startswith('"'), text
    assert text.endswith('"'), text
    inner = text[1:-1].replace('""', '"')
    words: list[str] = []
    current: str | None = None
    quoted = False
    i = 0
    while i < len(inner):
        c = inner[i]
        if quoted and c == "'" and inner[i + 1 : i + 2] == "'":
            current = (current or "") + "'"
            i += 2
            continue
        if c == "'":
            quoted = not quoted
            current = current or ""
        elif c.isspace() and not quoted:
            if current is not None:
                words.append(current)
            current = None
        else:
            current = (current or "") + c
        i += 1
    assert not quoted, text
    return [*words, current] if current is not None else words
