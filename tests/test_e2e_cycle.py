"""End to end: the real ``autopyfactory run`` against the HTCondor emulator and a PanDA/CRIC
stand-in on 127.0.0.1. Every test runs the command as an operator would and looks at what
arrived in the (emulated) schedd."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from werkzeug import Request, Response

from autopyfactory.panda import STATS_PATH
from tests.support.condor_emulator.ads import JobStatus

ROOT = Path(__file__).resolve().parent.parent
DUMP = json.loads((ROOT / "tests" / "data" / "cric_dump.json").read_text())
WRAPPER = ROOT / "wrappers" / "runpilot3-wrapper.sh"
CERN_CES = [q["ce_endpoint"].split(":")[0] for q in DUMP["CERN"]["queues"]]


class Stand:
    """PanDA statistics and the CRIC dump, served from mutable state."""

    def __init__(self, httpserver) -> None:
        self.server = httpserver
        self.stats: dict[str, dict[str, int]] = {}
        self.panda_status = 200
        self.panda_body: str | None = None  # raw body overriding the JSON answer
        httpserver.expect_request(STATS_PATH).respond_with_handler(self._panda)
        httpserver.expect_request("/cric.json").respond_with_json(DUMP)

    def _panda(self, request: Request) -> Response:
        if self.panda_body is not None:
            return Response(self.panda_body, status=self.panda_status)
        body = json.dumps({"success": True, "message": "", "data": self.stats})
        return Response(body, status=self.panda_status, content_type="application/json")

    @property
    def panda_url(self) -> str:
        return self.server.url_for("/").rstrip("/")

    @property
    def cric_url(self) -> str:
        return self.server.url_for("/cric.json")


@pytest.fixture
def stand(httpserver):
    return Stand(httpserver)


def write_config(tmp_path: Path, stand: Stand, queues: str, defaults: str = "", factory: str = "") -> Path:
    path = tmp_path / "factory.conf"
    path.write_text(f"""
[Factory]
factoryId = e2e-factory
factoryOwner = ops@example.org
pandaserver = {stand.panda_url}
schedconfig = {stand.cric_url}
baseLogDir = {tmp_path}/logs
baseLogDirUrl = http://logs.example.org/pilots
stateDir = {tmp_path}/state
sleep = 1
condorTimeout = 3
httpTimeout = 2
httpRetries = 0
logMinFreeGB = 0
{factory}

[QueueDefaults]
executable = {WRAPPER}
nqueue = 5
{defaults}

{queues}
""")
    return path


def run(conf: Path, condor, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "run", "-c", str(conf), *args],
        env=condor.env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def per_label(jobs) -> Counter[str]:
    return Counter(job["MATCH_APF_QUEUE"] for job in jobs)


def job_ids(jobs) -> list[str]:
    return [f"{job['ClusterId']}.{job['ProcId']}" for job in jobs]


# --- the main job ------------------------------------------------------------------------------


def test_pilots_reach_every_ce_with_tags_environment_and_resources(tmp_path, stand, condor):
    stand.stats = {"CERN": {"activated": 26, "assigned": 0, "running": 100}}
    conf = write_config(tmp_path, stand, "[CERN]")
    result = run(conf, condor, "--once")
    jobs = condor.jobs()
    counts = per_label(jobs)
    assert counts == {f"CERN-{host}-share": 5 for host in CERN_CES}
    job = next(j for j in jobs if j["MATCH_APF_QUEUE"] == "CERN-ce503.cern.ch-share")
    assert job["GridResource"] == "condor ce503.cern.ch ce503.cern.ch:9619"
    assert job["FactoryId"] == "e2e-factory"
    assert job["APF_PANDA_QUEUE"] == "CERN"
    assert (job["xcount"], job["maxMemory"], job["remote_queue"]) == (8, 32000, "share")
    cid = f"{job['ClusterId']}.{job['ProcId']}"
    environment = job["Environment"]
    for expected in (
        "APFFID=e2e-factory",
        f"APFCID={cid}",
        "FACTORYQUEUE=CERN-ce503.cern.ch-share",
        "PANDA_JSID=e2e-factory",
        f"/CERN-ce503.cern.ch-share/{cid}.out",
    ):
        assert expected in environment
    assert job["Out"].startswith(f"{tmp_path}/logs/")
    assert job["Out"].endswith(f"/CERN-ce503.cern.ch-share/{cid}.out")
    assert (
        "CERN-ce503.cern.ch-share pq=CERN activated=26 share=2 idle=0 running=0 held=0 decision=5"
        in result.stderr
    )
    assert "submitted 65" in result.stderr


def test_condor_is_asked_once_per_cycle_and_submitted_once_per_label(tmp_path, stand, condor):
    stand.stats = {"CERN": {"activated": 26}}
    run(write_config(tmp_path, stand, "[CERN]"), condor, "--once")
    assert len(condor.calls("condor_q")) == 1
    assert len(condor.calls("condor_submit")) == 13
    [query] = condor.calls("condor_q")
    assert 'FactoryId == "e2e-factory"' in query.argv
    assert "-json" in query.argv


def test_depth_is_kept_as_pilots_start(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 50}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]")
    run(conf, condor, "--once")
    assert per_label(condor.jobs()) == {"NDGF-T1-arc01.ndgf.org-atlas": 5, "NDGF-T1-arc02.ndgf.org-atlas": 5}

    run(conf, condor, "--once")  # 5 pending of nqueue 5 each: activated > pending, < 2 x nqueue: 5 more
    assert len(condor.jobs()) == 20
    run(conf, condor, "--once")  # 10 pending = nqueue x depthboost: nothing
    assert len(condor.jobs()) == 20

    started = "NDGF-T1-arc01.ndgf.org-atlas"
    for cid in job_ids(j for j in condor.jobs() if j["MATCH_APF_QUEUE"] == started):
        condor.set_status(cid, JobStatus.RUNNING)
    run(conf, condor, "--once")  # the label whose pilots all started gets nqueue more; the other none
    idle = per_label(j for j in condor.jobs() if j["JobStatus"] == JobStatus.IDLE)
    assert idle == {started: 5, "NDGF-T1-arc02.ndgf.org-atlas": 10}


def test_a_queue_without_activated_jobs_idles_with_one_pilot_per_ce(tmp_path, stand, condor):
    stand.stats = {"AGLT2": {"activated": 4}}  # nothing for NDGF-T1
    run(write_config(tmp_path, stand, "[NDGF-T1]"), condor, "--once")
    assert per_label(condor.jobs()) == {"NDGF-T1-arc01.ndgf.org-atlas": 1, "NDGF-T1-arc02.ndgf.org-atlas": 1}


def test_offline_gets_nothing_and_test_gets_its_test_pilot(tmp_path, stand, condor):
    stand.stats = {"DOWN-SITE": {"activated": 100}, "TEST-SITE": {"activated": 100}}
    conf = write_config(tmp_path, stand, "[DOWN-SITE]\n[TEST-SITE]")
    result = run(conf, condor, "--once")
    assert per_label(condor.jobs()) == {"TEST-SITE-ce01.test.example-default": 1}
    assert "DOWN-SITE-ce01.down.example-default pq=DOWN-SITE" in result.stderr
    assert "Classic: in=0 status=offline -> 0" in result.stderr
    run(conf, condor, "--once")  # the test pilot is pending: no second one
    assert len(condor.jobs()) == 1


def test_two_ces_of_one_pq_share_the_activated_jobs(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 3}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]\nschedplugin = Ready\n")
    run(conf, condor, "--once")
    assert len(condor.jobs()) == 3  # one pilot per activated job, not one per job per CE
    assert sorted(per_label(condor.jobs()).values()) == [1, 2]


# --- never over-submit ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, "internal error"),
        (200, "{'CERN': {'activated': 26}}"),
        (200, '{"success": false, "message": "x"}'),
    ],
    ids=["http-500", "python-repr", "success-false"],
)
def test_no_panda_data_no_pilots_and_the_factory_keeps_cycling(tmp_path, stand, condor, status, body):
    stand.panda_status, stand.panda_body = status, body
    result = run(write_config(tmp_path, stand, "[CERN]"), condor, "--cycles", "2")
    assert condor.jobs() == []
    assert result.stderr.count("NoData: in=0 PanDA job statistics unknown or stale -> 0") == 26
    assert "cycle 1:" in result.stderr


@pytest.mark.parametrize("kind", ["exit", "garbage", "hang"])
def test_condor_q_failing_means_nothing_is_submitted(tmp_path, stand, condor, kind):
    stand.stats = {"NDGF-T1": {"activated": 50}}
    condor.fail_next("condor_q", kind)
    result = run(write_config(tmp_path, stand, "[NDGF-T1]"), condor, "--once")
    assert condor.jobs() == []
    assert condor.calls("condor_submit") == []
    assert "NoData: in=0 pilot counts unknown or stale -> 0" in result.stderr


def test_one_failing_schedd_does_not_stop_the_other(tmp_path, stand, condor):
    condor.add_schedd("schedd2.example.org")
    stand.stats = {"NDGF-T1": {"activated": 50}, "TEST-SITE": {"activated": 5}}
    queues = "[NDGF-T1]\ncondorSchedd = schedd2.example.org\n[TEST-SITE]\n"
    condor.fail_next("condor_q", "exit")  # the first query fails: NDGF's schedd comes first
    run(write_config(tmp_path, stand, queues), condor, "--once")
    assert condor.jobs("schedd2.example.org") == []
    assert per_label(condor.jobs()) == {"TEST-SITE-ce01.test.example-default": 1}


def test_a_failing_condor_submit_is_not_retried_and_the_rest_goes_on(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 50}}
    condor.fail_next("condor_submit", "exit", count=1)
    result = run(write_config(tmp_path, stand, "[NDGF-T1]"), condor, "--once")
    assert len(condor.calls("condor_submit")) == 2  # one per label, no retry
    assert len(condor.jobs()) == 5
    assert "submitted=0 error='condor_submit (local schedd) exited 1" in result.stderr


def test_max_pilots_holds_across_cycles(tmp_path, stand, condor):
    stand.stats = {"CERN": {"activated": 1000}}
    conf = write_config(tmp_path, stand, "[CERN]", factory="maxPilots = 30\nmaxPerCycle = 20")
    run(conf, condor, "--once")
    assert len(condor.jobs()) == 20
    run(conf, condor, "--once")
    assert len(condor.jobs()) == 30
    run(conf, condor, "--once")
    assert len(condor.jobs()) == 30


def test_a_broken_queue_section_disables_only_that_queue(tmp_path, stand, condor):
    stand.stats = {"TEST-SITE": {"activated": 5}, "NDGF-T1": {"activated": 5}}
    result = run(write_config(tmp_path, stand, "[NDGF-T1]\nnqeue = 3\n[TEST-SITE]"), condor, "--once")
    assert set(per_label(condor.jobs())) == {"TEST-SITE-ce01.test.example-default"}
    assert "[NDGF-T1] nqeue: unknown key (did you mean 'nqueue'?)" in result.stderr


def test_dry_run_writes_only_to_its_own_directory(tmp_path, stand, condor):
    """Issue 14.2: no monitor traffic, the live state and pilot log tree untouched, the
    directory it wrote to printed."""
    stand.stats = {"CERN": {"activated": 26}}
    monitor = f"{stand.server.url_for('/mon')}"
    conf = write_config(tmp_path, stand, "[CERN]", factory=f"monitorURL = {monitor}\nmonitorToken = t\n")
    live = tmp_path / "state" / "status.json"
    live.parent.mkdir()
    live.write_text("the live daemon's state\n")
    env = {**condor.env, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "run", "-c", str(conf), "--once", "--dry-run"],
        env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert condor.calls("condor_submit") == []
    assert not [r for r, _ in stand.server.log if r.path.startswith("/mon")]
    assert live.read_text() == "the live daemon's state\n"
    assert sorted(p.name for p in live.parent.iterdir()) == ["status.json"]  # no schedconfig copy
    assert not (tmp_path / "logs").exists()
    [own] = list((tmp_path / "tmp").iterdir())
    assert str(own) in result.stdout
    assert "dry run" in result.stdout
    files = sorted(own.glob("logs/*/*/submit-*.sub"))
    assert {f.parent.name for f in files} == {f"CERN-{host}-share" for host in CERN_CES}
    text = next(f for f in files if f.parent.name == "CERN-ce504.cern.ch-share").read_text()
    assert "grid_resource = condor ce504.cern.ch ce504.cern.ch:9619" in text
    assert '+MATCH_APF_QUEUE = "CERN-ce504.cern.ch-share"' in text
    assert text.rstrip().endswith("queue 5")
    assert json.loads((own / "status.json").read_text())["labels"]
    assert "stopped after 1 cycle\n" in result.stderr  # issue 14.11: not "1 cycles"


def test_dry_run_directory_can_be_given(tmp_path, stand, condor):
    stand.stats = {"CERN": {"activated": 26}}
    own = tmp_path / "mine"
    conf = write_config(tmp_path, stand, "[CERN]")
    result = run(conf, condor, "--once", "--dry-run", "--dry-run-dir", str(own))
    assert str(own) in result.stdout
    assert sorted(own.glob("logs/*/*/submit-*.sub"))
    assert not (tmp_path / "logs").exists()
