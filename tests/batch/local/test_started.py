"""The local backend's count of pilots that started within pandaLag (``Supply.started``), with
real pilot processes held running by a gate file (they stop when it appears, or after 10 s)."""

from __future__ import annotations

from pathlib import Path

from autopyfactory.batch.local.backend import LocalBackend
from autopyfactory.domain.model import Supply
from tests.batch.local.test_backend import (
    FID,
    A,
    load_labels,
    make_context,
    submit,
    wait_for,
    with_pilot,
    write_pilot,
)


def test_running_pilots_started_within_the_lag(tmp_path: Path):
    gate = tmp_path / "gate"
    label = with_pilot(load_labels(tmp_path)[A], str(write_pilot(tmp_path)), {"PILOT_GATE": str(gate)})
    now = [1000.0]
    backend = LocalBackend(FID, tmp_path / "state", lambda: now[0], max_running=2)
    try:
        assert len(submit(backend, label, 3, make_context(tmp_path)).job_ids) == 3  # two start at 1000
        now[0] = 1100.0
        census = backend.census([label], started_since=1100.0 - 120)
        assert census.supply[A] == Supply(idle=1, running=2, started=2)
        now[0] = 1200.0
        assert backend.census([label], started_since=1200.0 - 120).supply[A].started == 0
        assert backend.census([label]).supply[A].started == 0  # no threshold: none counted
    finally:
        gate.touch()
    wait_for(lambda: backend.census([label]).total == 0, 20, "the pilots to end")
