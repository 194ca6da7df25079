"""pytest plugin: the ``condor`` fixture (enabled by ``pytest_plugins`` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .driver import CondorEmulator


@pytest.fixture
def condor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CondorEmulator]:
    """An emulated HTCondor, already first on PATH for this test (os.environ is patched).

    Patching PATH here rather than in each test means no test can reach a real condor_submit on
    a developer's machine by forgetting to. ``condor.env`` is the same environment as a dict.
    """
    emulator = CondorEmulator(tmp_path / "condor")
    emulator.patch_env(monkeypatch)
    yield emulator
    emulator.kill_hanging()
