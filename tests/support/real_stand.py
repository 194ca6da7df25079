"""The world around a real-pool factory run: PanDA and CRIC stand-ins, factory.conf, the CLI.

The factory runs as the pool's user (``HTCondorPool.command``) in a work directory that user
owns; PanDA statistics and the CRIC dump are served from this process on 127.0.0.1 (the
``httpserver`` fixture). Pilots run the real wrapper with a test ``pilot.py``
(tests/support/pilot_tarballs.py) fetched from a ``file://`` tarball, so a pilot's life is a few
seconds unless the test steers it otherwise (``TEST_PILOT_*`` variables through the queue's
``environ``).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from werkzeug import Request, Response

from autopyfactory.demo import panda_standin
from autopyfactory.edges.panda import DETAILED_PATH, STATS_PATH
from tests.support.factory_conf import write_factory_conf
from tests.support.htcondor_pool import Ad, HTCondorPool
from tests.support.paths import REPO
from tests.support.pilot_tarballs import write_tarball

WRAPPER = REPO / "wrappers" / "runpilot3-wrapper.sh"
HELD, IDLE, RUNNING, COMPLETED = 5, 1, 2, 4


class RealStand:
    """PanDA/CRIC stand-ins and a factory.conf for one test, in a pool-owned work directory."""

    def __init__(self, pool: HTCondorPool, httpserver: Any, name: str) -> None:
        self.pool = pool
        self.work = pool.workdir(name)
        self.stats: dict[str, dict[str, int]] = {}
        self.dump: dict[str, Any] = {}
        self.tarball = write_tarball(self.work / "pilot3.tar.gz")
        self.server = httpserver
        httpserver.expect_request(STATS_PATH).respond_with_handler(lambda r: self._panda(r, detailed=False))
        httpserver.expect_request(DETAILED_PATH).respond_with_handler(lambda r: self._panda(r, detailed=True))
        httpserver.expect_request("/cric.json").respond_with_handler(self._cric)

    def _panda(self, request: Request, detailed: bool) -> Response:
        """PanDA's answer for ``stats`` (the same stand-in as the emulator tests use)."""
        jobs = panda_standin.from_sites(self.stats)
        data = panda_standin.detailed_job_stats(jobs) if detailed else panda_standin.job_stats(jobs)
        payload = panda_standin.envelope(data, detailed)
        body = panda_standin.render(
            payload, request.headers.get("Accept"), request.headers.get("Content-Type")
        )
        return Response(body, content_type="text/plain")

    def _cric(self, request: Request) -> Response:
        return Response(json.dumps(self.dump), content_type="application/json")

    def pilot_environ(self, **extra: str) -> str:
        """The ``environ`` value that makes the wrapper fetch and run the test pilot."""
        values = {
            "PILOT_HTTP_SOURCES": f"file://{self.tarball}",
            "PILOT_HTTP_RETRIES": "0",
            "APF_PYTHON": self.pool.python,
            "TEST_PILOT_MARKER": "/dev/null",
            "TEST_PILOT_PANDAIDS": "4242",  # a pilot that ran no job makes the wrapper exit 20
            **extra,
        }
        return " ".join(f"{k}={v}" for k, v in values.items())

    def ce_record(
        self, pq: str, environ: str = "", flavour: str = "HTCONDOR-CE", endpoint: str | None = None
    ) -> dict[str, Any]:
        """A CRIC record whose one CE is the pool's CE schedd (HTCondor-C)."""
        ce = {
            "ce_endpoint": endpoint or self.pool.ce_endpoint,
            "ce_flavour": flavour,
            "ce_queue_name": "",
            "ce_state": "ACTIVE",
            "ce_status": "production",
            "ce_jobmanager": "condor",
        }
        return {
            "status": "online",
            "siteid": pq,
            "corecount": 1,
            "environ": environ or self.pilot_environ(),
            "queues": [ce],
        }

    def write_config(
        self,
        queues: str,
        defaults: Mapping[str, object] | None = None,
        factory: str = "",
        factory_id: str = "real-pool-factory",
        condor_timeout: int = 30,
    ) -> Path:
        """factory.conf: ``queues`` as written, [QueueDefaults] = wrapper, nqueue 3, ``defaults``."""
        own = {
            "factoryId": factory_id,
            "pandaserver": self.server.url_for("/").rstrip("/"),
            "schedconfig": self.server.url_for("/cric.json"),
            "baseLogDir": f"{self.work}/logs",
            "baseLogDirUrl": "http://logs.example.org/pilots",
            "stateDir": f"{self.work}/state",
            "sleep": 1,
            "condorTimeout": condor_timeout,
            "httpTimeout": 5,
            "httpRetries": 0,
            "logMinFreeGB": 0,
        }
        defaults = {"executable": WRAPPER, "nqueue": 3, **(defaults or {})}
        path = write_factory_conf(self.work, factory=[own, factory], defaults=defaults, queues=queues)
        return path

    def factory(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``python -m autopyfactory <args>`` as the pool user, in the work directory."""
        argv = self.pool.python_command(["-m", "autopyfactory", *args], {"HOME": str(self.work)})
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.work)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def cycle(self, conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return self.factory("run", "-c", str(conf), "--once", *args)


def ours(jobs: list[Ad], label: str | None = None) -> list[Ad]:
    """The factory's pilots (of one label) among ``jobs``."""
    return [j for j in jobs if "MATCH_APF_QUEUE" in j and (label is None or j["MATCH_APF_QUEUE"] == label)]


def job_id(ad: Mapping[str, Any]) -> str:
    return f"{ad['ClusterId']}.{ad['ProcId']}"


def by_status(jobs: list[Ad]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for job in jobs:
        counts[int(job["JobStatus"])] = counts.get(int(job["JobStatus"]), 0) + 1
    return counts


def logged_census(stderr: str, label: str) -> dict[str, int] | None:
    """The factory's own census of ``label`` from its cycle log line (None: not in the log)."""
    match = re.search(rf"^.* {re.escape(label)} pq=\S+ .*?idle=(\d+) running=(\d+) held=(\d+)", stderr, re.M)
    if match is None:
        return None
    return {"idle": int(match[1]), "running": int(match[2]), "held": int(match[3])}


def condor_census(jobs: list[Ad], label: str) -> dict[str, int]:
    """The same counts from condor_q's own answer."""
    statuses = by_status(ours(jobs, label))
    return {"idle": statuses.get(IDLE, 0), "running": statuses.get(RUNNING, 0), "held": statuses.get(HELD, 0)}


def census_agrees(stand: RealStand, conf: Path, labels: list[str]) -> dict[str, dict[str, int]]:
    """A dry-run cycle's census equals condor_q's, taken just before and after it (retried
    while pilots change state during the cycle)."""
    pool = stand.pool
    for _ in range(20):
        before = pool.jobs()
        result = stand.cycle(conf, "--dry-run")
        after = pool.jobs()
        expected = {label: condor_census(before, label) for label in labels}
        if expected == {label: condor_census(after, label) for label in labels}:
            assert {label: logged_census(result.stderr, label) for label in labels} == expected, result.stderr
            return expected
    raise AssertionError("the pilots never held still for one cycle")
