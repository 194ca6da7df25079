"""Fixtures shared by every test directory. Test support code lives in tests/support/ (importable
as ``tests.support``); a test module imports from there, never from another test module.

- ``condor``: the HTCondor emulator (tests/support/condor_emulator/plugin.py); ``real_condor``: a
  real HTCondor personal pool (tests/support/htcondor_pool.py, skipped without one);
- ``stand``: the PanDA/CRIC stand-in on pytest-httpserver's 127.0.0.1 server (tests/support/e2e.py);
- ``daemons``: the ``autopyfactory run`` daemons a test started (tests/support/daemon.py), killed
  if the test left them running.

The monitor service's fixtures (a service per module and database backend, a fresh factory per
test) are in tests/monitor_service/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer

from tests.support.daemon import Daemon
from tests.support.e2e import Stand

pytest_plugins = ["tests.support.condor_emulator.plugin", "tests.support.htcondor_pool"]


@pytest.fixture
def stand(httpserver: HTTPServer) -> Stand:
    return Stand(httpserver)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()
