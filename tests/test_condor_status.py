"""Parsing and counting ``condor_q -json`` output (shapes as the real tool prints them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autopyfactory.batch import BatchError
from autopyfactory.condor.status import count_by_label, factory_constraint, parse_ads, read_census
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


# ---- the cycle's census: one pass, objects only for what housekeeping needs --------------------


def test_census_counts_like_the_pilot_objects_do():
    text = FIXTURE.read_text()
    census = read_census(text, "condor_q")
    assert census.supply == count_by_label(parse_ads(text, "condor_q"))
    assert census.total == sum(s.all for s in census.supply.values())
    pilots = {p.job_id: p for p in parse_ads(text, "condor_q")}
    held = [p.job_id for found in census.pilots.values() for p in found]
    assert held == [j for j, p in pilots.items() if p.status is JobStatus.HELD]
    assert census.pilots["CERN-ce504.cern.ch-share"][0] == pilots[held[0]]


def ad(cluster: int, label: str, status: int, qdate: int) -> dict[str, object]:
    return {"ClusterId": cluster, "ProcId": 0, "JobStatus": status, "MATCH_APF_QUEUE": label,
            "QDate": qdate, "EnteredCurrentStatus": qdate}  # fmt: skip


def test_census_keeps_idle_pilots_only_for_labels_that_need_them():
    text = json.dumps([ad(1, "A", 1, 1000), ad(2, "B", 1, 1000), ad(3, "B", 2, 1000)])
    census = read_census(text, "condor_q", keep_idle={"B"})
    assert {label: [p.job_id for p in found] for label, found in census.pilots.items()} == {"B": ["2.0"]}
    assert census.supply["B"] == Supply(idle=1, running=1)


def test_census_queue_hours_and_recent_pilots():
    hour = 3600 * 500_000
    text = json.dumps(
        [
            ad(1, "A", 2, hour + 5),
            ad(2, "A", 1, hour + 7300),
            ad(3, "B", 1, hour + 3700),
            ad(4, "B", 0 + 1, 0),
        ]
    )
    census = read_census(text, "condor_q")
    assert census.queued == {"A": {hour, hour + 7200}, "B": {hour + 3600, 0}}
    assert census.recent == {"A": ["2.0"], "B": ["3.0"]}  # within an hour of the newest (hour + 7300)


@pytest.mark.parametrize(
    "bad", ['[{"JobStatus": "2", "QDate": 1}]', '[{"JobStatus": 9, "QDate": 1}]', "[1]", '{"a": 1}', "[{"]
)
def test_census_rejects_what_it_cannot_count(bad):
    with pytest.raises(BatchError):
        read_census(bad, "condor_q")
