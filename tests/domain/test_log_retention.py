"""Log retention: the pure planner on synthetic trees (what to delete and compress, and why)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from autopyfactory.domain.log_retention import (
    ANY_DAY,
    GB,
    CleanupPlan,
    CleanupPolicy,
    DayDir,
    LabelDir,
    Why,
    dirs_in_use,
    format_bytes,
    plan_cleanup,
)

TODAY = date(2026, 10, 31)


def ago(n: int) -> str:
    return (TODAY - timedelta(days=n)).isoformat()


def day(n: int, *labels: tuple[str, int], other: int = 0) -> DayDir:
    return DayDir(TODAY - timedelta(days=n), tuple(LabelDir(lbl, size, 3, 3) for lbl, size in labels), other)


def relpaths(plan: CleanupPlan) -> list[str]:
    return [d.relpath for d in plan.deletions]


# ---- the pure planner: age --------------------------------------------------------------------


def test_age_with_per_label_overrides() -> None:
    days = [day(n, ("A", 10), ("LONG", 10), ("SHORT", 10), ("FOREVER", 10)) for n in (70, 40, 31, 30, 5, 0)]
    policy = CleanupPolicy(keep_days=30, keep_days_by_label={"LONG": 60, "SHORT": 3, "FOREVER": 0})
    plan = plan_cleanup(days, TODAY, policy, free_bytes=None, in_use=set())
    assert [(d.relpath, d.reason) for d in plan.deletions if d.why is Why.AGE] == [
        (f"{ago(70)}/A", f"age: {ago(70)} older than 30 days"),
        (f"{ago(70)}/LONG", f"age: {ago(70)} older than 60 days"),
        (f"{ago(70)}/SHORT", f"age: {ago(70)} older than 3 days"),
        (f"{ago(40)}/A", f"age: {ago(40)} older than 30 days"),
        (f"{ago(40)}/SHORT", f"age: {ago(40)} older than 3 days"),
        (f"{ago(31)}/A", f"age: {ago(31)} older than 30 days"),
        (f"{ago(31)}/SHORT", f"age: {ago(31)} older than 3 days"),
        (f"{ago(30)}/SHORT", f"age: {ago(30)} older than 3 days"),
        (f"{ago(5)}/SHORT", f"age: {ago(5)} older than 3 days"),
    ]
    assert not [d for d in plan.deletions if d.why is not Why.AGE]  # FOREVER keeps every day dir
    assert plan.kept == ()
    assert plan.compressions == ()
    assert plan.notes == ()


def test_keep_days_zero_means_no_age_limit() -> None:
    plan = plan_cleanup([day(4000, ("A", 1))], TODAY, CleanupPolicy(keep_days=0), None, set())
    assert plan.deletions == ()


def test_in_use_dirs_are_kept_however_old() -> None:
    days = [day(90, ("A", 1), ("B", 1)), day(60, ("A", 1))]
    in_use = {(ago(90), "A"), (ago(60), "B")}
    plan = plan_cleanup(days, TODAY, CleanupPolicy(keep_days=30), None, in_use)
    assert relpaths(plan) == [f"{ago(90)}/B", f"{ago(60)}/A", ago(60)]
    [kept] = plan.kept
    assert (kept.day, kept.label, kept.reason) == (ago(90), "A", "in use by pilots in the queue")
    assert kept.wanted == f"age: {ago(90)} older than 30 days"


def test_any_day_protects_every_day_of_a_label() -> None:
    days = [day(90, ("A", 1), ("B", 1)), day(60, ("A", 1), ("B", 1))]
    plan = plan_cleanup(days, TODAY, CleanupPolicy(keep_days=30), None, {(ANY_DAY, "A")})
    assert relpaths(plan) == [f"{ago(90)}/B", f"{ago(60)}/B"]
    assert [(k.day, k.label) for k in plan.kept] == [(ago(90), "A"), (ago(60), "A")]


def test_unknown_census_plans_nothing() -> None:
    policy = CleanupPolicy(keep_days=1, min_free_bytes=10 * GB, compress_days=1)
    plan = plan_cleanup([day(90, ("A", 1))], TODAY, policy, 0, in_use=None)
    assert plan.deletions == ()
    assert plan.compressions == ()
    assert plan.notes == ("census of pilots unknown: nothing deleted or compressed",)


def test_empty_day_dirs_go_unless_something_else_is_in_them() -> None:
    days = [day(90, ("A", 1)), day(80, ("A", 1), other=1), day(70), day(3), day(0)]
    plan = plan_cleanup(days, TODAY, CleanupPolicy(keep_days=30), None, set())
    assert [(d.relpath, d.why, d.reason) for d in plan.deletions] == [
        (f"{ago(90)}/A", Why.AGE, f"age: {ago(90)} older than 30 days"),
        (f"{ago(80)}/A", Why.AGE, f"age: {ago(80)} older than 30 days"),
        (ago(90), Why.EMPTY, "empty after cleanup"),
        (ago(70), Why.EMPTY, "empty"),
        (ago(3), Why.EMPTY, "empty"),  # today's stays, even empty: pilots are about to go there
    ]


# ---- the pure planner: space ------------------------------------------------------------------


def test_space_deletes_oldest_days_first_and_stops_when_enough_is_projected() -> None:
    days = [day(n, ("B", 2 * GB), ("A", 2 * GB)) for n in (3, 9, 5, 1)]  # unsorted on purpose
    policy = CleanupPolicy(keep_days=30, min_free_bytes=10 * GB)
    plan = plan_cleanup(days, TODAY, policy, free_bytes=int(3.1 * GB), in_use=set())
    assert [(d.relpath, d.why, d.reason) for d in plan.deletions] == [
        (f"{ago(9)}/A", Why.SPACE, "space: free 3.1 GB < 10 GB"),
        (f"{ago(9)}/B", Why.SPACE, "space: free 5.1 GB < 10 GB"),
        (f"{ago(5)}/A", Why.SPACE, "space: free 7.1 GB < 10 GB"),
        (f"{ago(5)}/B", Why.SPACE, "space: free 9.1 GB < 10 GB"),
        (ago(9), Why.EMPTY, "empty after cleanup"),  # day dirs last: rmdir once their labels are gone
        (ago(5), Why.EMPTY, "empty after cleanup"),
    ]
    assert plan.min_free_bytes == 10 * GB
    assert plan.notes == ()


def test_enough_free_space_deletes_nothing() -> None:
    policy = CleanupPolicy(keep_days=30, min_free_bytes=10 * GB)
    assert plan_cleanup([day(9, ("A", GB))], TODAY, policy, 10 * GB, set()).deletions == ()


def test_age_deletions_count_towards_the_free_space() -> None:
    days = [day(40, ("A", 5 * GB)), day(10, ("A", GB)), day(5, ("A", GB))]
    policy = CleanupPolicy(keep_days=30, min_free_bytes=10 * GB)
    plan = plan_cleanup(days, TODAY, policy, free_bytes=4 * GB, in_use=set())
    assert [(d.relpath, d.reason) for d in plan.deletions] == [
        (f"{ago(40)}/A", f"age: {ago(40)} older than 30 days"),
        (f"{ago(10)}/A", "space: free 9 GB < 10 GB"),
        (ago(40), "empty after cleanup"),
        (ago(10), "empty after cleanup"),
    ]


def test_space_never_deletes_in_use_or_todays_dirs_and_says_when_it_falls_short() -> None:
    days = [day(9, ("A", GB), ("B", GB)), day(2, ("A", GB)), day(0, ("A", 50 * GB))]
    policy = CleanupPolicy(keep_days=30, min_free_bytes=100 * GB)
    plan = plan_cleanup(days, TODAY, policy, free_bytes=GB, in_use={(ago(9), "A")})
    assert relpaths(plan) == [f"{ago(9)}/B", f"{ago(2)}/A", ago(2)]
    [kept] = plan.kept
    assert (kept.label, kept.wanted) == ("A", "space: free 1 GB < 100 GB")
    assert plan.notes == (
        "space: free 3 GB < 100 GB even after deleting every past log directory not in use",
    )


def test_unknown_free_space_skips_the_space_stage_only() -> None:
    policy = CleanupPolicy(keep_days=30, min_free_bytes=GB)
    plan = plan_cleanup([day(40, ("A", 1)), day(3, ("A", 1))], TODAY, policy, None, set())
    assert relpaths(plan) == [f"{ago(40)}/A", ago(40)]
    assert plan.notes == ("free space unknown: no cleanup by space",)


# ---- the pure planner: compression ------------------------------------------------------------


def test_compression_plan() -> None:
    days = [
        day(40, ("A", 1)),  # deleted by age: not compressed
        DayDir(
            TODAY - timedelta(days=10),
            (LabelDir("A", 1, 3, 0), LabelDir("B", 1, 3, 2), LabelDir("C", 1, 3, 3)),
        ),
        day(7, ("A", 1)),
        day(6, ("A", 1)),
    ]
    policy = CleanupPolicy(keep_days=30, compress_days=6)
    plan = plan_cleanup(days, TODAY, policy, None, in_use={(ago(10), "C")})
    assert [(c.relpath, c.files, c.reason) for c in plan.compressions] == [
        (f"{ago(10)}/B", 2, f"compress: {ago(10)} older than 6 days"),
        (f"{ago(7)}/A", 3, f"compress: {ago(7)} older than 6 days"),
    ]
    [kept] = plan.kept
    assert (kept.day, kept.label, kept.wanted) == (ago(10), "C", f"compress: {ago(10)} older than 6 days")


def test_compression_off_by_default() -> None:
    assert plan_cleanup([day(20, ("A", 1))], TODAY, CleanupPolicy(), None, set()).compressions == ()


# ---- pure helpers -----------------------------------------------------------------------------


def test_dirs_in_use_from_qdate_and_label() -> None:
    noon = int(datetime(2026, 10, 30, 12, 0, tzinfo=UTC).timestamp())
    just_after_midnight = int(datetime(2026, 10, 31, 0, 10, tzinfo=UTC).timestamp())
    used = dirs_in_use([(noon, "A"), (just_after_midnight, "B"), (0, "C")], unknown_labels=["D"])
    assert used == {
        ("2026-10-30", "A"),
        ("2026-10-31", "B"),
        ("2026-10-30", "B"),  # the cycle that submitted it may have started before midnight
        (ANY_DAY, "C"),
        (ANY_DAY, "D"),
    }
    assert dirs_in_use([]) == set()


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (999, "999 B"), (1000, "1 kB"), (512_000, "512 kB"), (3_140_000_000, "3.1 GB"),
     (10 * GB, "10 GB"), (2.5e12, "2.5 TB")],
)  # fmt: skip
def test_format_bytes(n: float, text: str) -> None:
    assert format_bytes(n) == text


def test_policy_rejects_negative_values() -> None:
    with pytest.raises(ValueError, match=r"keep_days=-1, keep_days\[X\]=-2"):
        CleanupPolicy(keep_days=-1, keep_days_by_label={"X": -2, "Y": 3})
    assert CleanupPolicy(keep_days=7, keep_days_by_label={"Y": 3}).keep_days_for("Y") == 3
    assert CleanupPolicy(keep_days=7).keep_days_for("Z") == 7
