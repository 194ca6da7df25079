"""The pilot log tree: real files under tmp_path with only the free-space probe faked (a "small
filesystem" whose free space is capacity minus what the tree uses), compression, trees that change
while being scanned, and the schedule."""

from __future__ import annotations

import gzip
import logging
import os
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from autopyfactory.domain.log_retention import (
    GB,
    CleanupPlan,
    CleanupPolicy,
    Deletion,
    Why,
    plan_cleanup,
)
from autopyfactory.edges import pilot_logs
from autopyfactory.edges.pilot_logs import (
    CleanupSchedule,
    CleanupSummary,
    apply,
    run_cleanup,
    scan,
)

TODAY = date(2026, 10, 31)


def ago(n: int) -> str:
    return (TODAY - timedelta(days=n)).isoformat()


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


def small_filesystem(base: Path, free_now: int) -> pilot_logs.FreeSpaceProbe:
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
    with caplog.at_level(logging.INFO, logger="autopyfactory.edges.pilot_logs"):
        plan, summary = run_cleanup(tree, TODAY, policy, in_use, small_filesystem(tree, 100 * GB))
    assert summary.deleted == (
        f"{ago(45)}/CERN-B", f"{ago(45)}/NDGF", f"{ago(35)}/CERN-A", f"{ago(35)}/CERN-B",
        f"{ago(20)}/CERN-B",
    )  # fmt: skip
    assert summary.errors == ()
    assert summary.bytes_freed > 0
    assert summary.free_before is not None
    assert summary.free_after is not None
    assert summary.free_after == summary.free_before + summary.bytes_freed
    for gone in summary.deleted:
        assert not (tree / gone).exists()
    assert (tree / ago(45) / "CERN-A" / "1234.0.out").exists()  # in use
    assert (tree / ago(35) / "NDGF").is_dir()
    assert (tree / ago(20) / "CERN-A").is_dir()
    for untouched in ("latest/x.out", "2026-13-01", "README", ago(400)):
        assert untouched in before
        assert (tree / untouched).is_symlink() or (tree / untouched).exists()
    assert (tree / "latest" / "x.out").read_text() == "keep me"
    assert f"kept {ago(45)}/CERN-A, in use by pilots in the queue" in caplog.text
    assert "leaving" in caplog.text
    assert "latest" in caplog.text
    assert "log cleanup: deleted 5 dirs" in caplog.text
    assert plan.notes == ()


def test_space_cleanup_on_a_small_filesystem(tree: Path) -> None:
    label_size = du(tree / ago(20) / "NDGF")
    probe = small_filesystem(tree, free_now=label_size // 2)
    policy = CleanupPolicy(keep_days=0, min_free_bytes=int(2.2 * label_size))
    in_use = {(ago(45), "CERN-A")}
    _plan, summary = run_cleanup(tree, TODAY, policy, in_use, probe)
    assert summary.deleted == (f"{ago(45)}/CERN-B", f"{ago(45)}/NDGF")
    assert (tree / ago(45) / "CERN-A").is_dir()
    assert (tree / ago(35) / "CERN-A").is_dir()
    assert summary.free_after is not None
    assert summary.free_after >= policy.min_free_bytes
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
    assert "free space of" in caplog.text
    assert "Permission denied" in caplog.text
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
    assert plan == CleanupPlan()
    assert summary == CleanupSummary()


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
    assert summary.compressed_files == 11 * 16
    assert summary.errors == ()
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{name}.gz" for name in original)
    assert contents(target) == original
    st = (target / "1234.0.out.gz").stat()
    assert (st.st_mode & 0o777, int(st.st_mtime)) == (0o640, 1_700_000_000)
    assert not any(p.name.endswith(".gz") for p in (tree / ago(20) / "CERN-A").iterdir())  # in use
    assert not any(p.name.endswith(".gz") for p in (tree / ago(2) / "NDGF").iterdir())  # too recent

    after_first = snapshot(tree)
    plan, summary = run_cleanup(tree, TODAY, policy, in_use, small_filesystem(tree, GB))
    assert plan.compressions == ()
    assert summary.compressed_files == 0
    assert snapshot(tree) == after_first
    assert contents(target) == original


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
    assert not (target / "1234.3.err.gz").exists()
    assert not (target / "1234.3.err.gz.tmp").exists()
    assert (target / "1234.3.out.gz").exists()


# ---- the schedule -----------------------------------------------------------------------------


def test_schedule_runs_at_most_once_per_interval() -> None:
    now = [1000.0]
    schedule = CleanupSchedule(interval=3600, clock=lambda: now[0])
    assert schedule.due()
    assert schedule.claim()
    assert not schedule.due()
    assert not schedule.claim()
    now[0] += 3599
    assert not schedule.claim()
    now[0] += 1
    assert schedule.due()
    assert schedule.claim()
    assert not schedule.claim()


def test_schedule_rejects_negative_interval() -> None:
    with pytest.raises(ValueError, match="negative"):
        CleanupSchedule(interval=-1)
