"""Parsing and counting ``condor_q -json`` output (shapes as the real tool prints them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopyfactory.batch import BatchError
from autopyfactory.condor.status import count_by_label, factory_constraint, parse_ads
from autopyfactory.model import JobStatus, Supply

FIXTURE = Path(__file__).parent / "data" / "condor" / "condor_q_factory.json"


def test_real_shape_is_parsed():
    pilots = parse_ads(FIXTURE.read_text(), "condor_q")
    assert [p.job_id for p in pilots] == ["4711.0", "4711.1", "4712.0", "4713.0", "4714.0"]
    held = pilots[2]
    assert held.status is JobStatus.HELD
    assert held.hold_reason_code == 2
    assert held.hold_reason.startswith("Error from ce504")
    assert pilots[0].hold_reason_code is None
    assert pilots[1].run_count == 1


def test_counts_per_label():
    counts = count_by_label(parse_ads(FIXTURE.read_text(), "condor_q"))
    assert counts == {
        "CERN-ce503.cern.ch-share": Supply(idle=1, running=1, held=0, total=2),
        # held 1, transferring output 1 (in the total), removed 1 (leaving: not counted)
        "CERN-ce504.cern.ch-share": Supply(idle=0, running=0, held=1, total=2),
    }


@pytest.mark.parametrize("empty", ["", "\n", "   \n"])
def test_empty_output_means_no_pilots(empty):
    # condor_q -json prints nothing at all when no job matches the constraint
    assert parse_ads(empty, "condor_q") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"ClusterId": 1,', "unparsable output"),
        ('{"ClusterId": 1}', "expected a JSON list"),
        ("[1, 2]", "a job ad is a int"),
        ('[{"ClusterId": 1, "ProcId": 0, "JobStatus": 9}]', "bad job ad"),
        ('[{"ClusterId": 1, "ProcId": 0, "JobStatus": "1"}]', "JobStatus='1' is not an integer"),
        ('[{"ClusterId": 1, "JobStatus": 1}]', "no ProcId"),
        ("Error: communication error\n", "unparsable output"),
    ],
)
def test_garbage_is_an_error_not_zero_pilots(text, message):
    with pytest.raises(BatchError, match=message):
        parse_ads(text, "condor_q")


def test_constraint_quotes_the_factory_id():
    assert factory_constraint("my-factory") == 'FactoryId == "my-factory"'
    assert factory_constraint('evil" || true || "') == 'FactoryId == "evil\\" || true || \\""'
