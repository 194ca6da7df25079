"""Which jobs a label's pilots can take: pilot 3's ask, panda-server's rewrite and matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autopyfactory.domain.job_labels import (
    counted_job_labels,
    default_job_label,
    pilots_take,
    requested_label,
    takeable,
    untakeable,
)
from autopyfactory.domain.model import QueueStatus

ONLINE, TEST = QueueStatus.ONLINE, QueueStatus.TEST
PRODUCTION = ("managed", "test", "prod_test", "install")
ANALYSIS = ("user", "panda", "install")


@pytest.mark.parametrize(
    ("pilot_type", "queue_type", "catchall", "expected"),
    [
        ("PR", "unified", "", "unified"),
        ("PR", "production", "grandly_unified", "unified"),
        ("PR", "analysis", "", "user"),
        ("PR", "production", "", "managed"),
        ("PR", "", "", "managed"),  # no CRIC record (a local queue)
        ("RC", "analysis", "", "rc_test2"),
        ("rc", "unified", "", "rc_test2"),
        ("ALRB", "production", "", "rc_alrb"),
        ("PT", "unified", "", "ptest"),
    ],
)
def test_default_job_label(pilot_type, queue_type, catchall, expected):
    assert default_job_label(pilot_type, queue_type, catchall) == expected


@pytest.mark.parametrize(
    ("job_label", "pilot_type", "status", "asked"),
    [
        ("managed", "PR", ONLINE, "managed"),
        ("unified", "PR", ONLINE, "unified"),
        ("rc_test2", "RC", ONLINE, "rc_test2"),
        ("rc_test2", "RC", TEST, "rc_test2"),  # pilot 3 keeps an RC ask in test status
        ("ptest", "RC", ONLINE, "ptest"),
        ("ptest", "RCM", ONLINE, "rcm_test2"),
        ("managed", "ALRB", ONLINE, "rc_alrb"),  # -i ALRB asks rc_alrb whatever -j says
        ("managed", "RC", ONLINE, "managed"),  # -i RC alone changes nothing
        ("managed", "PR", TEST, "test"),
        ("unified", "PR", TEST, "test"),
        ("user", "PR", TEST, "test"),
        ("rc_test2", "PR", TEST, "test"),
        ("ptest", "PR", TEST, "ptest"),
    ],
)
def test_what_a_pilot_asks_for(job_label, pilot_type, status, asked):
    assert requested_label(job_label, pilot_type, status) == asked


@pytest.mark.parametrize(
    ("asked", "takes"),
    [
        ("managed", PRODUCTION),
        ("", PRODUCTION),
        ("user", ANALYSIS),
        ("unified", (*PRODUCTION, "user", "panda")),
        ("test", ("prod_test", "install", "test")),
        ("rc_test2", ("rc_test2",)),
        ("rc_alrb", ("rc_alrb",)),
        ("ptest", ("ptest",)),
    ],
)
def test_what_panda_gives_for_an_ask(asked, takes):
    assert takeable(asked) == takes


def test_an_analysis_queues_pilots_take_its_user_jobs():
    job_label = default_job_label("PR", "analysis")
    assert "user" in pilots_take(job_label, "PR", ONLINE)


def test_rc_pilots_are_not_sent_for_managed_jobs():
    job_label = default_job_label("RC", "production")
    assert counted_job_labels(job_label, "RC", ONLINE) == ("rc_test2",)
    assert untakeable(job_label, "RC", ("managed",)) == ("managed",)


job_labels = st.sampled_from(["managed", "user", "unified", "test", "ptest", "rc_test2", "rc_alrb", "panda"])
pilot_types = st.sampled_from(["PR", "RC", "RCM", "ALRB", "PT"])
statuses = st.sampled_from(list(QueueStatus))


@given(
    job_label=job_labels,
    pilot_type=pilot_types,
    status=statuses,
    narrowed=st.lists(job_labels | st.just("prod_test"), max_size=4, unique=True),
)
def test_a_label_counts_only_jobs_its_pilots_can_take(job_label, pilot_type, status, narrowed):
    counted = counted_job_labels(job_label, pilot_type, status, tuple(narrowed))
    assert set(counted) <= set(pilots_take(job_label, pilot_type, status))
    refused = untakeable(job_label, pilot_type, tuple(narrowed))
    assert not set(refused) & set(pilots_take(job_label, pilot_type, ONLINE))
    if narrowed:  # demandJobLabels only narrows; what it names is either counted online or refused
        assert set(counted) <= set(narrowed)
        online = counted_job_labels(job_label, pilot_type, ONLINE, tuple(narrowed))
        assert set(refused) | set(online) == set(narrowed)
