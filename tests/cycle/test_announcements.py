"""Every pilot the factory queues reaches the monitor, as soon as its submission returns, and
also when the factory dies between the submission and the announcement: the real ``autopyfactory
run`` against the HTCondor emulator, with a monitor on 127.0.0.1 that records what it is told."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence

from werkzeug import Request, Response

from autopyfactory.batch.condor.bulk import SUBMITTER
from autopyfactory.config import loader as config
from autopyfactory.cycle.report import CycleReport
from autopyfactory.domain.label import Label
from autopyfactory.domain.model import EdgeKind
from autopyfactory.runtime.service import RunOptions, build_factory, http_session, schedconfig_source
from tests.support.daemon import start
from tests.support.e2e import job_ids, write_config
from tests.support.waiting import wait_for


class RecordingMonitor:
    """The monitor's API under ``/mon`` on the stand's server: answers every request, keeps the
    pilots announced (``PUT /jobs``)."""

    def __init__(self, stand) -> None:
        self.announced: list[str] = []
        self.down = False  # answers 503 to everything
        stand.server.expect_request(re.compile("/mon/.*")).respond_with_handler(self._answer)
        self.url = stand.server.url_for("/mon")

    def _answer(self, request: Request) -> Response:
        if self.down:
            return Response("down", status=503)
        if request.method == "PUT" and request.path == "/mon/jobs":
            self.announced.extend(item["cid"] for item in request.get_json())
        return Response("{}", content_type="application/json")


def monitored_config(tmp_path, stand, monitor: RecordingMonitor, **factory: object):
    settings = {"monitorURL": monitor.url, "monitorToken": "t", **factory}
    return write_config(tmp_path, stand, "[NDGF-T1]", factory=settings)


def test_pilots_queued_by_a_submission_the_factory_died_in_are_announced_after_a_restart(
    tmp_path, stand, condor, daemons
):
    """SIGKILL while condor_submit hangs after queueing the pilots (nothing announced), then three
    failed censuses after the restart: the first good census announces every pilot condor has."""
    stand.stats = {"NDGF-T1": {"activated": 50}}
    monitor = RecordingMonitor(stand)
    conf = monitored_config(tmp_path, stand, monitor, condorTimeout=60)
    condor.fail_next(SUBMITTER, "queued-hang", seconds=60)
    first = start(daemons, conf, condor, tmp_path / "first.log")
    wait_for(lambda: len(condor.jobs()) > 0, what="pilots queued by the hanging submission")
    first.process.kill()
    first.process.wait(10)
    condor.kill_hanging()
    queued = job_ids(condor.jobs())
    assert not set(queued) & set(monitor.announced)

    condor.fail_next("condor_q", "exit", count=3)
    second = start(daemons, conf, condor, tmp_path / "second.log")
    wait_for(lambda: set(queued) <= set(monitor.announced), 60, "the pilots of the killed submission")
    assert "its last submission is settled: the census lists" in second.text()
    second.wait_log(" labels, decided ", count=5)
    assert set(job_ids(condor.jobs())) <= set(monitor.announced)  # and those it submitted itself
    assert second.stop() == 0


def test_pilots_announced_while_the_monitor_is_down_are_sent_after_a_stop_and_a_restart(
    tmp_path, stand, condor, daemons
):
    stand.stats = {"NDGF-T1": {"activated": 50}}
    monitor = RecordingMonitor(stand)
    monitor.down = True
    conf = monitored_config(tmp_path, stand, monitor)
    first = start(daemons, conf, condor, tmp_path / "first.log")
    first.wait_log(" labels, decided ", count=2)
    assert first.stop() == 0  # SIGTERM: the announcements cannot be sent
    queued = job_ids(condor.jobs())
    assert queued
    assert not monitor.announced

    monitor.down = False
    condor.fail_next("condor_q", "exit", count=100)  # the restarted factory submits nothing more
    second = start(daemons, conf, condor, tmp_path / "second.log")
    wait_for(lambda: set(queued) <= set(monitor.announced), 60, "the announcements of the stopped factory")
    assert "pilot announcements kept in" in first.text()
    assert second.stop() == 0


class Recorder:
    """An observer that is also a pilot listener: what it heard, in order, and when."""

    def __init__(self) -> None:
        self.heard: list[tuple[float, str, tuple[str, ...]]] = []

    def pilots_created(
        self, label: str, job_ids: Sequence[str], key_digests: Mapping[str, str] | None = None
    ) -> None:
        self.heard.append((time.monotonic(), label, tuple(job_ids)))

    def cycle_done(self, report: CycleReport, labels: Sequence[Label]) -> None:
        self.heard.append((time.monotonic(), "cycle done", ()))


def test_each_schedds_pilots_are_announced_when_its_submission_returns(tmp_path, stand, condor):
    """Two schedds submitted to at once, one of them slow (3 s): the other's pilots are announced
    without waiting for it, and all before the cycle ends."""
    stand.stats = {"NDGF-T1": {"activated": 50}, "TEST-SITE": {"activated": 5}}
    condor.add_schedd("schedd2.example.org")
    queues = "[NDGF-T1]\ncondorSchedd = schedd2.example.org\n[TEST-SITE]\n"
    cfg = config.load(write_config(tmp_path, stand, queues, factory={"condorTimeout": 30}))
    condor.fail_next(SUBMITTER, "hang", seconds=3)  # whichever schedd comes first
    recorder = Recorder()
    options = RunOptions(cycles=1)
    with http_session(cfg.factory.http) as session:
        build_factory(cfg, options, session, schedconfig_source(cfg, options, session), [recorder]).run_cycle(
            0
        )
    *pilots, (_, last, _) = recorder.heard
    assert last == "cycle done"
    queued = job_ids(condor.jobs()) + job_ids(condor.jobs("schedd2.example.org"))
    assert sorted(cid for _, _, ids in pilots for cid in ids) == sorted(queued)
    by_schedd = {
        "schedd2": [when for when, label, _ in pilots if label.startswith("NDGF-T1")],
        "local": [when for when, label, _ in pilots if label.startswith("TEST-SITE")],
    }
    assert all(by_schedd.values())
    assert abs(max(by_schedd["schedd2"]) - max(by_schedd["local"])) > 2  # the quick one did not wait


def test_unsettled_labels_that_cannot_be_read_are_a_problem_and_nothing_is_submitted(tmp_path, stand, condor):
    """An unsettled.json that cannot be read (here a directory; EACCES or EIO alike) is neither
    set aside nor taken for no labels: the cycle runs, says so, and submits nothing."""
    stand.stats = {"NDGF-T1": {"activated": 50}}
    cfg = config.load(write_config(tmp_path, stand, "[NDGF-T1]"))
    (tmp_path / "state" / "unsettled.json").mkdir(parents=True)
    options = RunOptions(cycles=1)
    with http_session(cfg.factory.http) as session:
        report = build_factory(
            cfg, options, session, schedconfig_source(cfg, options, session), []
        ).run_cycle(0)
    assert [problem.kind for problem in report.problems] == [EdgeKind.STATE]
    assert "cannot read the unsettled labels" in report.problems[0].message
    assert report.results
    assert {result.outcome.error.split(":")[0] for result in report.results} == {"nothing submitted"}
    assert condor.jobs() == []
    assert (tmp_path / "state" / "unsettled.json").is_dir()
