"""Fixtures for the pilot wrapper tests: a recording HTTP server on 127.0.0.1, a wrapper runner
(tests/support/wrapper_harness.py) and a directory nobody can write to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.wrapper_harness import Wrapper
from tests.support.wrapper_servers import RecordingServer


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    srv = RecordingServer()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def wrapper(tmp_path: Path, server: RecordingServer) -> Wrapper:
    return Wrapper(tmp_path, server)


def _unwritable(path: Path) -> bool:
    probe = path / "apf-write-probe"
    try:
        probe.mkdir()
    except OSError:
        return True
    probe.rmdir()
    return False


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory the wrapper cannot create anything in. chmod 555 does not stop root, so as
    root this is /proc (existing, not writable even for root)."""
    path = tmp_path / "readonly"
    path.mkdir()
    path.chmod(0o555)
    try:
        if _unwritable(path):
            yield path
        elif _unwritable(Path("/proc")):
            yield Path("/proc")
        else:
            pytest.skip("no unwritable directory available (root, and /proc is writable)")
    finally:
        path.chmod(0o755)
