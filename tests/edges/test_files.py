"""atomic_write_text: readers see the old file or the new one, never a mixture or a leftover."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from autopyfactory.edges import files
from autopyfactory.edges.files import atomic_write_text


def test_writes_new_file_creating_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.json"
    atomic_write_text(path, "héllo\n")
    assert path.read_bytes() == "héllo\n".encode()
    assert os.listdir(path.parent) == ["state.json"]


def test_replaces_existing_file_and_sets_mode(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old")
    os.chmod(path, 0o600)
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    atomic_write_text(path, "newer", mode=0o640)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["state.json"]


def test_replacement_is_a_rename_of_a_complete_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    path.write_text("old")
    seen: list[tuple[str, str, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        # at the moment of the rename the target is untouched and the source is complete
        seen.append((Path(src).read_text(), Path(dst).read_text(), str(Path(src).parent)))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", spy)
    atomic_write_text(path, "new")
    assert seen == [("new", "old", str(tmp_path))]
    assert path.read_text() == "new"


def test_failure_keeps_the_old_file_and_removes_the_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    path.write_text("old")

    def broken(_src: str, _dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", broken)
    with pytest.raises(OSError, match="No space left on device"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_failure_while_writing_removes_the_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"

    def broken(_fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files.os, "fsync", broken)
    with pytest.raises(OSError, match="Input/output error"):
        atomic_write_text(path, "new")
    assert os.listdir(tmp_path) == []


def test_interrupt_removes_the_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"

    def interrupted(_fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "new")
    assert os.listdir(tmp_path) == []
