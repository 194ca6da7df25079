"""End to end: a PanDA/CRIC stand-in on 127.0.0.1, the factory.conf that points the real
``autopyfactory run`` at it and at the HTCondor emulator, and running that command.

The ``stand`` fixture (tests/conftest.py) gives a :class:`Stand` on pytest-httpserver's server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from autopyfactory.demo import panda_standin
from autopyfactory.edges.panda import DETAILED_PATH, STATS_PATH
from tests.support.condor_emulator.driver import CondorEmulator
from tests.support.factory_conf import Settings, cric_dump, write_factory_conf
from tests.support.paths import REPO

DUMP = cric_dump()
WRAPPER = REPO / "wrappers" / "runpilot3-wrapper.sh"
CERN_CES = [q["ce_endpoint"].split(":")[0] for q in DUMP["CERN"]["queues"]]
FACTORY_ID = "e2e-factory"
#: A pilot token that never expires (header.payload., no signature): ARC-CE labels need a credential.
TOKEN = "eyJhbGciOiJub25lIn0.eyJleHAiOjQxMDI0NDQ4MDB9.\n"


class Stand:
    """PanDA statistics and the CRIC dump, served from mutable state.

    PanDA answers as the real server does (see autopyfactory.demo.panda_standin): no job left at
    all is ``success: false``, sites without jobs are left out, JSON only for ``Accept:
    application/json``. ``script`` (one ``{site: {status: n}}`` per request, the last one repeated)
    lets the jobs change between the cycles of one ``run --cycles N``.
    """

    def __init__(self, httpserver: HTTPServer) -> None:
        self.server = httpserver
        self.stats: dict[str | None, dict[str, int]] = {}
        self.script: list[dict[str | None, dict[str, int]]] = []
        self.jobs: panda_standin.Jobs | None = None  # per resource type and job label; beats stats
        self.dump = DUMP
        self.panda_status = 200
        self.panda_body: str | None = None  # raw body overriding the JSON answer
        httpserver.expect_request(STATS_PATH).respond_with_handler(lambda r: self._panda(r, detailed=False))
        httpserver.expect_request(DETAILED_PATH).respond_with_handler(lambda r: self._panda(r, detailed=True))
        httpserver.expect_request("/cric.json").respond_with_handler(
            lambda _r: Response(json.dumps(self.dump))
        )

    def _panda(self, request: Request, detailed: bool) -> Response:
        if self.panda_body is not None:
            return Response(self.panda_body, status=self.panda_status)
        if self.script:
            self.stats = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        jobs = self.jobs if self.jobs is not None else panda_standin.from_sites(self.stats)
        data = panda_standin.detailed_job_stats(jobs) if detailed else panda_standin.job_stats(jobs)
        payload = panda_standin.envelope(data, detailed)
        body = panda_standin.render(
            payload, request.headers.get("Accept"), request.headers.get("Content-Type")
        )
        return Response(body, status=self.panda_status, content_type="text/plain")

    @property
    def panda_url(self) -> str:
        return str(self.server.url_for("/")).rstrip("/")

    @property
    def cric_url(self) -> str:
        return str(self.server.url_for("/cric.json"))


def write_config(
    tmp_path: Path,
    stand: Stand,
    queues: Mapping[str, Settings] | str,
    defaults: Settings = "",
    factory: Settings = "",
) -> Path:
    """``tmp_path/factory.conf`` for a factory that asks ``stand``, keeps its logs and state under
    ``tmp_path``, cycles every second, gives up on condor after 3 s and on HTTP after 2 s without a
    retry, and sends 5 pilots per label with the real wrapper unless the test says otherwise; the
    pilots carry a token (``tmp_path/pilot.token``) that never expires."""
    token = tmp_path / "pilot.token"
    token.write_text(TOKEN)
    own = {
        "factoryId": FACTORY_ID,
        "pandaserver": stand.panda_url,
        "schedconfig": stand.cric_url,
        "baseLogDir": f"{tmp_path}/logs",
        "baseLogDirUrl": "http://logs.example.org/pilots",
        "stateDir": f"{tmp_path}/state",
        "sleep": 1,
        "condorTimeout": 3,
        "httpTimeout": 2,
        "httpRetries": 0,
        "logMinFreeGB": 0,
    }
    return write_factory_conf(
        tmp_path,
        factory=_merged(own, factory),
        defaults=_merged({"executable": WRAPPER, "nqueue": 5, "scitokensFile": token}, defaults),
        queues=queues,
    )


def _merged(base: dict[str, object], extra: Settings) -> Settings:
    """``base`` with the test's settings: a mapping overrides, a text is added as it is."""
    return (
        {**base, **extra}
        if isinstance(extra, Mapping)
        else [base, *([extra] if isinstance(extra, str) else extra)]
    )


def run(
    conf: Path, condor: CondorEmulator, *args: str, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """``python -m autopyfactory run -c conf *args`` against the emulator; it must exit 0."""
    result = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "run", "-c", str(conf), *args],
        env=condor.env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def per_label(jobs: Iterable[Mapping[str, Any]]) -> Counter[str]:
    """How many of ``jobs`` (job ads) each label has."""
    return Counter(job["MATCH_APF_QUEUE"] for job in jobs)


def job_ids(jobs: Iterable[Mapping[str, Any]]) -> list[str]:
    """``cluster.proc`` of each job ad."""
    return [f"{job['ClusterId']}.{job['ProcId']}" for job in jobs]
