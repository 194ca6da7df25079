"""Log cleanup: the pure planner on synthetic trees, then real files under tmp_path with only the
free-space probe faked (a "small filesystem" whose free space is capacity minus what the tree
uses), compression, trees that change while being scanned, and the schedule."""

from __future__ import annotations

import gzip
import logging
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from autopyfactory.cycle import logcleanup
from autopyfactory.cycle.logcleanup import (
    ANY_DAY,
    GB,
    CleanupPlan,
    CleanupPolicy,
    CleanupSchedule,
    CleanupSummary,
    DayDir,
    Deletion,
    LabelDir,
    Why,
    apply,
    dirs_in_use,
    format_bytes,
    plan_cleanup,
    run_cleanup,
    scan,
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
    assert plan.kept == () and plan.compressions == () and plan.notes == ()


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
    assert plan.deletions == () and plan.compressions == ()
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
    assert plan.min_free_bytes == 10 * GB and plan.notes == ()


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


# ---- real trees -------------------------------------------------------------------------------


def pilots(base: Path, day_name: str, label: str, n: int = 5, text: str = "pilot log line\n") -> Path:
    directory = base / day_name / label
    directory.mkdir(parents=True, exist_ok=True)
    for proc in range(n):
        for ext in ("out", "err", "log"):
            (directory / f"1234.{proc}.{ext}").write_text(f"{label} {proc} {ext}\n" + text * (proc + 1))
    (directory / "submit.jdl").write_text("executable = runpilot3-wrapper.sh\nqueue 5\n")
    return directory


def du(base: Path) -> int:
    """Bytes on disk below ``base``, as the scan counts them."""
    total = 0
    for root, _dirs, files in os.walk(base):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            total += st.st_blocks * 512 or st.st_size
    return total


def small_filesystem(base: Path, free_now: int) -> logcleanup.FreeSpaceProbe:
    """A filesystem whose free space is ``free_now`` now and grows by whatever gets deleted."""
    capacity = du(base) + free_now

    def probe(path: Path) -> int:
        assert path == base
        return capacity - du(base)

    return probe


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    base = tmp_path / "pilots"
    for n in (45, 35, 20, 10, 2, 0):
        for label in ("CERN-A", "CERN-B", "NDGF"):
            pilots(base, ago(n), label)
    (base / "latest").mkdir()  # not a date: never touched
    (base / "latest" / "x.out").write_text("keep me")
    (base / "2026-13-01").mkdir()  # looks like a date, is not one
    (base / "README").write_text("pilot logs")
    (base / ago(400)).symlink_to(base / ago(45))  # a symlink named like a date: never followed
    return base


def snapshot(base: Path) -> set[str]:
    return {str(p.relative_to(base)) for p in base.rglob("*")}


def test_scan(tree: Path) -> None:
    days = scan(tree)
    assert [d.name for d in days] == [ago(n) for n in (45, 35, 20, 10, 2, 0)]
    first = days[0]
    assert [lbl.label for lbl in first.labels] == ["CERN-A", "CERN-B", "NDGF"]
    assert all(lbl.files == 16 and lbl.uncompressed == 16 for lbl in first.labels)
    assert sum(lbl.size for d in days for lbl in d.labels) == sum(du(tree / d.name) for d in days)
    assert all(lbl.size >= 16 * 20 for d in days for lbl in d.labels)


def test_scan_of_a_missing_base_dir(tmp_path: Path) -> None:
    assert scan(tmp_path / "nope") == []


def test_age_cleanup_on_real_files(tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    before = snapshot(tree)
    policy = CleanupPolicy(keep_days=30, keep_days_by_label={"NDGF": 40, "CERN-B": 15})
    in_use = {(ago(45), "CERN-A")}
    with caplog.at_level(logging.INFO, logger="autopyfactory.cycle.logcleanup"):
        plan, summary = run_cleanup(tree, TODAY, policy, in_use, small_filesystem(tree, 100 * GB))
    assert summary.deleted == (
        f"{ago(45)}/CERN-B", f"{ago(45)}/NDGF", f"{ago(35)}/CERN-A", f"{ago(35)}/CERN-B",
        f"{ago(20)}/CERN-B",
    )  # fmt: skip
    assert summary.errors == () and summary.bytes_freed > 0
    assert summary.free_before is not None and summary.free_after is not None
    assert summary.free_after == summary.free_before + summary.bytes_freed
    for gone in summary.deleted:
        assert not (tree / gone).exists()
    assert (tree / ago(45) / "CERN-A" / "1234.0.out").exists()  # in use
    assert (tree / ago(35) / "NDGF").is_dir() and (tree / ago(20) / "CERN-A").is_dir()
    for untouched in ("latest/x.out", "2026-13-01", "README", ago(400)):
        assert untouched in before
        assert (tree / untouched).is_symlink() or (tree / untouched).exists()
    assert (tree / "latest" / "x.out").read_text() == "keep me"
    assert f"kept {ago(45)}/CERN-A, in use by pilots in the queue" in caplog.text
    assert "leaving" in caplog.text and "latest" in caplog.text
    assert "log cleanup: deleted 5 dirs" in caplog.text
    assert plan.notes == ()


def test_space_cleanup_on_a_small_filesystem(tree: Path) -> None:
    label_size = du(tree / ago(20) / "NDGF")
    probe = small_filesystem(tree, free_now=label_size // 2)
    policy = CleanupPolicy(keep_days=0, min_free_bytes=int(2.2 * label_size))
    in_use = {(ago(45), "CERN-A")}
    _plan, summary = run_cleanup(tree, TODAY, policy, in_use, probe)
    assert summary.deleted == (f"{ago(45)}/CERN-B", f"{ago(45)}/NDGF")
    assert (tree / ago(45) / "CERN-A").is_dir() and (tree / ago(35) / "CERN-A").is_dir()
    assert summary.free_after is not None and summary.free_after >= policy.min_free_bytes
    assert summary.skipped == ()  # the day dir is not even planned: CERN-A in it is kept


def test_apply_stops_space_deletions_once_the_real_free_space_suffices(tree: Path) -> None:
    probe = small_filesystem(tree, free_now=0)
    need = du(tree / ago(45) / "CERN-A")  # deleting the first dir is enough, whatever the plan says
    plan = CleanupPlan(
        deletions=tuple(
            Deletion(ago(45), label, 1, Why.SPACE, "space: test") for label in ("CERN-A", "CERN-B", "NDGF")
        ),
        min_free_bytes=need,
    )
    summary = apply(tree, plan, probe)
    assert summary.deleted == (f"{ago(45)}/CERN-A",)
    assert [s.split(":")[0] for s in summary.skipped] == [f"{ago(45)}/CERN-B", f"{ago(45)}/NDGF"]
    assert (tree / ago(45) / "NDGF").is_dir()


def test_a_failing_probe_means_no_space_cleanup_but_age_still_runs(
    tree: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(path: Path) -> int:
        raise PermissionError(13, "Permission denied")

    policy = CleanupPolicy(keep_days=40, min_free_bytes=10**15)
    plan, summary = run_cleanup(tree, TODAY, policy, set(), broken)
    assert summary.deleted == (f"{ago(45)}/CERN-A", f"{ago(45)}/CERN-B", f"{ago(45)}/NDGF", ago(45))
    assert plan.notes == ("free space unknown: no cleanup by space",)
    assert "free space of" in caplog.text and "Permission denied" in caplog.text
    assert len(summary.errors) == 2  # before and after: reported, never raised


def test_deletion_errors_are_counted_not_raised(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stuck = "1234.2.err"
    real_unlink = os.unlink

    # shutil.rmtree unlinks by name relative to a directory fd; fail one file of CERN-A only
    seen: list[str] = []

    def unlink_once(path: str, *args: object, **kwargs: object) -> None:
        if os.fspath(path) == stuck and not seen:
            seen.append(path)
            raise PermissionError(13, "Permission denied", path)
        real_unlink(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "unlink", unlink_once)
    plan = CleanupPlan(
        deletions=(
            Deletion(ago(45), "CERN-A", 10, Why.AGE, "age: test"),
            Deletion(ago(45), "CERN-B", 10, Why.AGE, "age: test"),
            Deletion(ago(45), None, 0, Why.EMPTY, "empty after cleanup"),
        )
    )
    summary = apply(tree, plan, small_filesystem(tree, GB))
    assert seen == [stuck]
    assert summary.deleted == (f"{ago(45)}/CERN-B",)
    assert summary.bytes_freed == 10
    assert summary.errors == (
        f"cannot delete {tree / ago(45) / 'CERN-A' / stuck}: Permission denied",
        f"cannot delete {tree / ago(45) / 'CERN-A'}: Directory not empty",
    )
    assert (tree / ago(45) / "CERN-A" / stuck).exists()
    assert not (tree / ago(45) / "CERN-B").exists()
    assert summary.skipped == (f"{ago(45)}: not removed (Directory not empty)",)
    assert f"{len(summary.errors)} errors" in summary.line()


def test_missing_base_dir_is_nothing_to_do(tmp_path: Path) -> None:
    plan, summary = run_cleanup(tmp_path / "nope", TODAY, CleanupPolicy(keep_days=1), set(), lambda p: 0)
    assert plan == CleanupPlan() and summary == CleanupSummary()


def test_unknown_census_deletes_nothing_on_disk(tree: Path) -> None:
    before = snapshot(tree)
    policy = CleanupPolicy(keep_days=1, min_free_bytes=10**15, compress_days=1)
    run_cleanup(tree, TODAY, policy, None, small_filesystem(tree, 0))
    assert snapshot(tree) == before


# ---- compression on real files ----------------------------------------------------------------


def contents(directory: Path) -> dict[str, bytes]:
    result = {}
    for path in sorted(directory.iterdir()):
        data = path.read_bytes()
        name = path.name
        if name.endswith(".gz"):
            data, name = gzip.decompress(data), name.removesuffix(".gz")
        result[name] = data
    return result


def test_compression_preserves_contents_and_is_idempotent(tree: Path) -> None:
    target = tree / ago(20) / "NDGF"
    original = contents(target)
    os.chmod(target / "1234.0.out", 0o640)
    os.utime(target / "1234.0.out", (1_700_000_000, 1_700_000_000))
    policy = CleanupPolicy(keep_days=0, compress_days=7)
    in_use = {(ago(20), "CERN-A")}
    plan, summary = run_cleanup(tree, TODAY, policy, in_use, small_filesystem(tree, GB))
    assert [c.relpath for c in plan.compressions] == [
        f"{ago(d)}/{lbl}" for d in (45, 35) for lbl in ("CERN-A", "CERN-B", "NDGF")
    ] + [f"{ago(20)}/CERN-B", f"{ago(20)}/NDGF", f"{ago(10)}/CERN-A", f"{ago(10)}/CERN-B", f"{ago(10)}/NDGF"]
    assert summary.compressed_files == 11 * 16 and summary.errors == ()
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{name}.gz" for name in original)
    assert contents(target) == original
    st = (target / "1234.0.out.gz").stat()
    assert (st.st_mode & 0o777, int(st.st_mtime)) == (0o640, 1_700_000_000)
    assert not any(p.name.endswith(".gz") for p in (tree / ago(20) / "CERN-A").iterdir())  # in use
    assert not any(p.name.endswith(".gz") for p in (tree / ago(2) / "NDGF").iterdir())  # too recent

    after_first = snapshot(tree)
    plan, summary = run_cleanup(tree, TODAY, policy, in_use, small_filesystem(tree, GB))
    assert plan.compressions == () and summary.compressed_files == 0
    assert snapshot(tree) == after_first and contents(target) == original


def test_compression_recovers_from_an_interrupted_run(tree: Path) -> None:
    target = tree / ago(20) / "NDGF"
    original = contents(target)
    (target / "1234.0.out.gz.tmp").write_bytes(b"half a gzip")  # crash while writing
    (target / "1234.1.out.gz").write_bytes(
        gzip.compress((target / "1234.1.out").read_bytes())
    )  # after rename
    (target / "9999.0.out.gz.tmp").write_bytes(b"orphan")  # its original is gone
    _plan, summary = run_cleanup(
        tree, TODAY, CleanupPolicy(keep_days=0, compress_days=7), set(), lambda p: GB
    )
    assert summary.errors == ()
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{name}.gz" for name in original)
    assert contents(target) == original


# ---- a tree that changes while it is scanned --------------------------------------------------


def test_entries_vanishing_while_scanning_are_not_counted(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_scandir = os.scandir
    vanish = {
        str(tree): tree / ago(10),  # a whole day dir goes after the base dir is listed
        str(tree / ago(20)): tree / ago(20) / "CERN-B",  # a label dir goes after its day is listed
        str(tree / ago(35) / "NDGF"): tree / ago(35) / "NDGF" / "1234.4.out",  # a file goes before stat
    }

    class Listing:
        def __init__(self, path: str) -> None:
            self._inner = real_scandir(path)
            self._path = str(path)

        def __enter__(self) -> Iterator[os.DirEntry[str]]:
            entries = list(self._inner)
            victim = vanish.pop(self._path, None)
            if victim is not None:
                if victim.is_dir():
                    shutil.rmtree(victim)
                else:
                    victim.unlink()
            return iter(entries)

        def __exit__(self, *exc: object) -> None:
            self._inner.close()

    monkeypatch.setattr(os, "scandir", Listing)
    days = scan(tree)
    assert vanish == {}
    by_name = {d.name: d for d in days}
    assert ago(10) not in by_name
    assert [lbl.label for lbl in by_name[ago(20)].labels] == ["CERN-A", "CERN-B", "NDGF"]
    vanished_label = by_name[ago(20)].labels[1]
    assert (vanished_label.size, vanished_label.files) == (0, 0)
    assert by_name[ago(35)].labels[2].files == 15


def test_files_vanishing_while_compressing_are_skipped(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tree / ago(20) / "NDGF"
    real_open = open
    victim = str(target / "1234.3.err")

    def flaky_open(path: str | os.PathLike[str], *args: object, **kwargs: object) -> object:
        if os.fspath(path) == victim:
            os.unlink(victim)
        return real_open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", flaky_open)
    plan = plan_cleanup(scan(tree), TODAY, CleanupPolicy(keep_days=0, compress_days=15), None, set())
    summary = apply(tree, plan, lambda p: GB)
    monkeypatch.undo()
    assert summary.errors == ()
    assert not (target / "1234.3.err.gz").exists() and not (target / "1234.3.err.gz.tmp").exists()
    assert (target / "1234.3.out.gz").exists()


# ---- the schedule -----------------------------------------------------------------------------


def test_schedule_runs_at_most_once_per_interval() -> None:
    now = [1000.0]
    schedule = CleanupSchedule(interval=3600, clock=lambda: now[0])
    assert schedule.due() and schedule.claim()
    assert not schedule.due() and not schedule.claim()
    now[0] += 3599
    assert not schedule.claim()
    now[0] += 1
    assert schedule.due() and schedule.claim()
    assert not schedule.claim()


def test_schedule_rejects_negative_interval() -> None:
    with pytest.raises(ValueError, match="negative"):
        CleanupSchedule(interval=-1)
