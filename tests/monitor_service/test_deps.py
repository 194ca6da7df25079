"""The bulk create's one-call validation (``valid_jobs``) keeps :class:`JobIn`'s rules and answers."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from autopyfactory.monitor_service.deps import valid_items, valid_jobs
from autopyfactory.monitor_service.schemas import JobIn

_VALUES = st.one_of(
    st.sampled_from(["1.0", "123.45", "1.", ".0", "1.0x", "f", "f-1", "L_1", "a b", "x" * 65, ""]),
    st.text(max_size=8),
    st.integers(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
_DIGESTS = st.one_of(st.sampled_from(["", "0" * 64, "A" * 64, "f" * 63]), _VALUES)
_GOOD = {"cid": st.just("7.0"), "label": st.just("L1"), "factory": st.just("f1")}
_ITEMS = st.one_of(
    st.fixed_dictionaries(_GOOD, optional={"extra": _VALUES, "key_sha256": _DIGESTS}),
    st.fixed_dictionaries({"cid": _VALUES, "label": _VALUES, "factory": _VALUES}),
    st.dictionaries(st.sampled_from(["cid", "label", "factory", "extra", "key_sha256"]), _VALUES),
    st.integers(),
    st.text(max_size=4),
)


def _as_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    jobs, rejected = valid_items(JobIn, items)
    return [job.model_dump(exclude_unset=True) for job in jobs] + [r.model_dump() for r in rejected]


@settings(max_examples=300, deadline=None)
@given(items=st.lists(_ITEMS, max_size=6))
def test_valid_jobs_answers_as_item_by_item_validation(items: list[Any]) -> None:
    jobs, rejected = valid_jobs(items)
    assert [dict(job) for job in jobs] + [r.model_dump() for r in rejected] == _as_rows(items)


def test_all_valid_jobs_come_back_as_dicts_in_order() -> None:
    items = [{"cid": f"7.{n}", "label": "CERN-PROD_ce1", "factory": "f1"} for n in range(3)]
    assert valid_jobs(items) == (items, [])


def test_an_unknown_field_is_refused_also_when_all_else_is_valid() -> None:
    jobs, rejected = valid_jobs([{"cid": "7.0", "label": "L", "factory": "f1", "state": "RUNNING"}])
    assert jobs == []
    assert [(r.index, r.detail) for r in rejected] == [(0, "state: Extra inputs are not permitted")]


def test_one_bad_job_costs_only_itself() -> None:
    items = [
        {"cid": "7.0", "label": "L", "factory": "f1"},
        {"cid": "7.x", "label": "L", "factory": "f1"},
        {"cid": "7.2", "label": "L", "factory": "f1", "state": "RUNNING"},
        {"cid": "7.3", "label": "L", "factory": "f1"},
    ]
    jobs, rejected = valid_jobs(items)
    assert [job["cid"] for job in jobs] == ["7.0", "7.3"]
    assert [(r.index, r.errors[0].where, r.errors[0].type) for r in rejected] == [
        (1, "cid", "string_pattern_mismatch"),
        (2, "state", "extra_forbidden"),
    ]
