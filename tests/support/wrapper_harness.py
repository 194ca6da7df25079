"""Running ``bash wrappers/runpilot3-wrapper.sh`` in a clean, test-controlled environment."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.paths import REPO
from tests.support.pilot_tarballs import make_tarball
from tests.support.wrapper_servers import RecordingServer

WRAPPER = REPO / "wrappers" / "runpilot3-wrapper.sh"
FID, CID = "testfactory", "12.3"
JOB_PATH = f"/api/jobs/{FID}:{CID}"
# The wrapper's arguments as the factory renders them by default (pilot 3's grammar), and what the
# wrapper hands to pilot.py (-r and -s are the wrapper's own).
ARGS = [
    "-q", "TEST_QUEUE", "-r", "TEST_QUEUE", "-s", "TEST_SITE", "-j", "managed", "-i", "PR",
    "--pilot-user", "ATLAS", "--url", "https://127.0.0.1", "-p", "25443", "-w", "generic",
]  # fmt: skip
PILOT_ARGV = [
    "-q", "TEST_QUEUE", "-j", "managed", "-i", "PR",
    "--pilot-user", "ATLAS", "--url", "https://127.0.0.1", "-p", "25443", "-w", "generic",
]  # fmt: skip
JOB_ID = "4001"  # the test pilot "runs" this PanDA job unless a test says otherwise

# Variables of the outer environment that would change what the wrapper does.
_DROP_PREFIXES = ("APF", "PILOT_", "ATLAS_", "VO_ATLAS", "TEST_PILOT", "X509")
_DROP_NAMES = {"TMPDIR", "OSG_WN_TMP", "FACTORYQUEUE", "GTAG", "PANDA_JSID"}


def clean_environ() -> dict[str, str]:
    env = {}
    for name, value in os.environ.items():
        if name.startswith(_DROP_PREFIXES) or name in _DROP_NAMES or "proxy" in name.lower():
            continue
        env[name] = value
    return env


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    elapsed: float
    marker_path: Path

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("WRAPPER ERROR:")]

    @property
    def ran_pilot(self) -> bool:
        return self.marker_path.exists()

    def marker(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.marker_path.read_text())
        return data

    def log_lines(self, text: str) -> list[str]:
        return [line for line in self.stdout.splitlines() if text in line]


class Wrapper:
    """Runs the wrapper; ``env`` starts as a working set-up (good source, fast timeouts)."""

    def __init__(self, tmp_path: Path, server: RecordingServer) -> None:
        self.tmp_path = tmp_path
        self.tmpdir = tmp_path / "tmp"
        self.tmpdir.mkdir()
        self.cwd = tmp_path / "cwd"
        self.cwd.mkdir()
        self.marker_path = tmp_path / "marker.json"
        self.good_url = server.serve("/pilot/pilot3.tar.gz", make_tarball("pilot3"))
        self.env = clean_environ()
        self.env.update(
            {
                "TMPDIR": str(self.tmpdir),
                "ATLAS_SW_BASE": str(tmp_path / "cvmfs"),
                "APFMON": server.base + "/api",
                "APFFID": FID,
                "APFCID": CID,
                "APFMON_CONNECT_TIMEOUT": "2",
                "APFMON_MAX_TIME": "5",
                "APFMON_RETRIES": "0",
                "APFMON_RETRY_DELAY": "0",
                "PILOT_HTTP_SOURCES": self.good_url,
                "PILOT_HTTP_CONNECT_TIMEOUT": "2",
                "PILOT_HTTP_MAX_TIME": "10",
                "PILOT_HTTP_RETRIES": "0",
                "PILOT_HTTP_RETRY_DELAY": "1",
                "TEST_PILOT_MARKER": str(self.marker_path),
                "TEST_PILOT_PANDAIDS": JOB_ID + "\n",
            }
        )

    def command(self, args: list[str] | None = None) -> list[str]:
        return ["bash", str(WRAPPER), *(ARGS if args is None else args)]

    def run(self, args: list[str] | None = None, cwd: Path | None = None, timeout: float = 60) -> Result:
        start = time.monotonic()
        proc = subprocess.run(
            self.command(args),
            env=self.env,
            cwd=cwd or self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start, self.marker_path)
