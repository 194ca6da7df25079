"""One cycle observer's failure never stops the others: a state file that cannot be
written is a warning and a metric, the metrics and the monitor observer still hear of the cycle.
The real Service, its real StateWriter and metrics, the HTCondor emulator and the PanDA/CRIC
stand-in of test_e2e_cycle."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from autopyfactory.config import loader as config
from autopyfactory.cycle.report import CycleReport
from autopyfactory.domain.label import Label
from autopyfactory.runtime.service import RunOptions, Service
from autopyfactory.runtime.systemd import Notifier
from tests.support.e2e import write_config


class Recorder:
    """An observer after the state writer and the metrics (where the monitor client sits)."""

    def __init__(self) -> None:
        self.cycles: list[int] = []

    def cycle_done(self, report: CycleReport, labels: Sequence[Label]) -> None:
        self.cycles.append(report.cycle)


def test_an_unwritable_state_file_is_a_warning_and_a_metric(tmp_path: Path, stand, condor, caplog):
    stand.stats = {"NDGF-T1": {"activated": 10}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]")
    (tmp_path / "state" / "status.json").mkdir(parents=True)  # cannot be replaced by a file
    recorder = Recorder()
    service = Service(conf, config.load(conf), RunOptions(cycles=2), Notifier(None), [recorder])
    with caplog.at_level(logging.WARNING):
        assert service.run() == 2
    assert recorder.cycles == [0, 1], "the observers after the state writer heard of every cycle"
    registry = service.metrics.registry
    assert registry.get_sample_value("apf_observer_errors_total", {"observer": "StateWriter"}) == 2
    assert registry.get_sample_value("apf_cycles_total") == 2
    assert "observer StateWriter failed: IsADirectoryError" in caplog.text
    assert len(condor.jobs()) == 10  # the cycle itself went on
