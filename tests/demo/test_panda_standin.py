"""The PanDA stand-in (demo and test fixtures) reproduces what the real server answers."""

from __future__ import annotations

import json

import pytest

from autopyfactory.demo import panda_standin as ps
from autopyfactory.domain.job_labels import pilots_take
from autopyfactory.domain.model import QueueStatus
from autopyfactory.edges.panda import parse_stats


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_no_job_left_is_a_failure_with_empty_data():
    for jobs in ({}, ps.from_sites({"CERN": {"activated": 0, "running": 0}})):
        assert ps.envelope(ps.job_stats(jobs)) == {
            "success": False,
            "message": "Database failure getting the job statistics",
            "data": {},
        }
    assert ps.envelope(ps.detailed_job_stats({}), detailed=True)["message"] == (
        "Database failure getting the job statistics with resource_type and prodsourcelabel"
    )


def test_sites_without_jobs_are_left_out_and_listed_ones_are_zero_filled():
    jobs = ps.from_sites(
        {"CERN": {"holding": 2, "merging": 5}, "AGLT2": {"activated": 0}, None: {"assigned": 1}}
    )
    assert ps.job_stats(jobs) == {
        "CERN": {"holding": 2, "activated": 0, "assigned": 0, "running": 0},
        "null": {"assigned": 1, "activated": 0, "running": 0},
    }
    # what the factory makes of it: the jobs without a site are no queue
    assert set(parse_stats(ps.envelope(ps.job_stats(jobs)))) == {"CERN"}


def test_detailed_answer_is_site_resource_type_job_label_status():
    jobs = {
        ("CERN", "SCORE", "managed", "activated"): 3,
        ("CERN", "MCORE", "managed", "activated"): 2,
        ("CERN", "MCORE", "user", "running"): 1,
        ("CERN", None, "managed", "activated"): 4,
    }
    assert ps.detailed_job_stats(jobs) == {
        "CERN": {
            "SCORE": {"managed": {"activated": 3, "assigned": 0, "running": 0}},
            "MCORE": {
                "managed": {"activated": 2, "assigned": 0, "running": 0},
                "user": {"running": 1, "activated": 0, "assigned": 0},
            },
            "null": {"managed": {"activated": 4, "assigned": 0, "running": 0}},
        }
    }
    assert ps.job_stats(jobs)["CERN"] == {"activated": 9, "running": 1, "assigned": 0}


def test_json_only_for_exactly_application_json():
    payload = ps.envelope({"CERN": {"activated": 1}})
    assert json.loads(ps.render(payload, "application/json")) == payload
    assert json.loads(ps.render(payload, None, "application/json")) == payload
    for accept in ("application/json, */*", "*/*", None, "application/json;q=1"):
        assert ps.render(payload, accept) == str(payload).encode()


def test_lag_freezes_summarised_counts_but_not_assigned():
    clock = Clock()
    lag = ps.Lag(60, clock)
    first = ps.from_sites({"CERN": {"activated": 10, "assigned": 1}})
    assert lag.view(first) == first
    clock.now = 59
    later = ps.from_sites({"CERN": {"activated": 0, "assigned": 7}})
    assert ps.job_stats(lag.view(later)) == {"CERN": {"activated": 10, "assigned": 7, "running": 0}}
    clock.now = 60
    assert ps.job_stats(lag.view(later)) == {"CERN": {"assigned": 7, "activated": 0, "running": 0}}
    assert ps.Lag(0, clock).view(later) == later


def test_getjob_gives_a_pilot_only_jobs_of_its_site_label_and_type():
    table = ps.JobTable()
    table.add("ANALY", 2, "SCORE", "user")
    table.add("PROD", 1, "MCORE", "managed")
    table.add("PROD", 1, "SCORE", "rc_test2")
    assert table.get_job("ANALY", "managed") is None  # a managed pilot at an analysis queue: no job
    assert table.get_job("ANALY", "user") == ("ANALY", "SCORE", "user")
    assert table.get_job("ANALY", "unified", "SCORE") == ("ANALY", "SCORE", "user")
    assert table.get_job("ANALY", "user") is None  # both taken
    assert table.get_job("PROD", "managed", "SCORE") is None  # the managed job is MCORE
    assert table.get_job("PROD", "rc_test2") == ("PROD", "SCORE", "rc_test2")
    assert table.get_job("PROD", "managed", queue_status="test") is None  # test queues: test jobs only
    assert table.get_job("PROD", "managed") == ("PROD", "MCORE", "managed")
    assert table.jobs()[("ANALY", "SCORE", "user", "running")] == 2
    table.finish(("ANALY", "SCORE", "user"))
    assert table.jobs()[("ANALY", "SCORE", "user", "running")] == 1


@pytest.mark.parametrize("asked", ["managed", "user", "unified", "test", "ptest", "rc_test2", "rc_alrb", ""])
@pytest.mark.parametrize("status", ["online", "test"])
def test_the_factory_counts_what_the_server_gives(asked, status):
    """The factory's rule (domain/job_labels.py) against the stand-in's, written from the server."""
    queue_status = QueueStatus.from_schedconfig(status)
    # pilot 3 itself asks for test at a test queue unless it asks ptest; the server adds nothing more
    expected = ps.getjob_labels("test" if status == "test" and asked != "ptest" else asked, status)
    assert set(pilots_take(asked, "PR", queue_status)) == expected
