"""The real PanDA pilot 3, run by the real wrapper with the arguments the factory renders.

The pilot comes from the ``panda-pilot`` sdist (downloaded once with pip into the cache of
autopyfactory.demo.pilot3_tarball; the test skips, saying why, when that is impossible). The factory's
description is rendered from etc/factory.conf.example with only the PanDA server pointed at the
stand-in and the site's test settings in the queue section; its ``arguments`` and
``environment`` are decoded the way condor_submit hands them to the wrapper. Pilot 3 reads the
queue's schedconfig from CVMFS (a directory in ATLAS_SW_BASE, as on a worker node) and its
queuedata and DDM endpoints from the stand-in (its --queuedata-url/--storagedata-url), then asks
the stand-in for a job. The test stops the wrapper with SIGTERM as soon as the job request came.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import htcondor2
import pytest

from autopyfactory.batch.condor.submit import render_submit, validate
from autopyfactory.batch.interface import SubmitContext
from autopyfactory.config import loader as config
from autopyfactory.config.autoconfigure import build_labels
from autopyfactory.demo.pilot3_tarball import PILOT3_VERSION, tarball_from_sdist
from autopyfactory.domain.label import Label
from tests.support.condor_submit import decode_new_syntax
from tests.support.pilot3 import cached_pilot3_sdist
from tests.support.pilot3_panda import PandaStandIn
from tests.support.wrapper_harness import WRAPPER, clean_environ

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "etc" / "factory.conf.example"
CERN = json.loads((ROOT / "tests" / "data" / "cric_pandaqueue_CERN.json").read_text())


@pytest.fixture(scope="session")
def pilot3_sdist() -> Path:
    return cached_pilot3_sdist()


@pytest.fixture
def panda(pilot3_sdist: Path) -> Iterator[PandaStandIn]:
    standin = PandaStandIn(records={"CERN": CERN}, tarball=tarball_from_sdist(pilot3_sdist))
    standin.start()
    yield standin
    standin.stop()


def example_config(tmp_path: Path, panda: PandaStandIn, queue_lines: str) -> Path:
    """etc/factory.conf.example with the PanDA server replaced and ``queue_lines`` in [CERN]."""
    text = EXAMPLE.read_text()
    text, found = re.subn(r"(?m)^pandaserver = .*$", f"pandaserver = {panda.url}", text)
    assert found == 1
    text, found = re.subn(r"(?m)^\[CERN\]$", "[CERN]\n" + queue_lines, text)
    assert found == 1
    path = tmp_path / "factory.conf"
    path.write_text(text)
    return path


def rendered(path: Path, panda: PandaStandIn) -> tuple[Label, list[str], dict[str, str]]:
    """The first CERN label's wrapper arguments and environment, as condor_submit passes them."""
    cfg = config.load(path)
    labels = build_labels(cfg, {"CERN": CERN}).labels
    label = labels[0]
    context = SubmitContext(
        cfg.factory.identity.factory_id,
        cfg.factory.panda.server,
        "/logs",
        "",
        panda.url + "/api",
        "2026-03-01",
    )
    text = render_submit(label, 1, context)
    validate(text)
    description = htcondor2.Submit(text)
    words = decode_new_syntax(str(description.expand("arguments")))
    env = dict(e.partition("=")[::2] for e in decode_new_syntax(str(description.expand("environment"))))
    return label, words, env


def pilot3_parse(sdist_dir: Path, words: list[str]) -> dict[str, Any]:
    """Pilot 3's own argument parser (pilot.py get_args) applied to ``words``."""
    code = (
        "import importlib.util, json, sys\n"
        f"sys.path.insert(0, {str(sdist_dir)!r})\n"
        f"spec = importlib.util.spec_from_file_location('pilot_main', {str(sdist_dir / 'pilot.py')!r})\n"
        "main = importlib.util.module_from_spec(spec); spec.loader.exec_module(main)\n"
        "sys.argv = ['pilot.py'] + json.loads(sys.stdin.read())\n"
        "print(json.dumps({k: str(v) for k, v in vars(main.get_args()).items()}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(words), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    parsed: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return parsed


@pytest.fixture
def sdist_dir(pilot3_sdist: Path, tmp_path: Path) -> Path:
    subprocess.run(["tar", "-xzf", str(pilot3_sdist), "-C", str(tmp_path)], check=True, timeout=60)
    (found,) = tmp_path.glob("panda*pilot-*/pilot.py")
    return found.parent


def test_default_arguments_pass_pilot3s_own_parser(tmp_path: Path, panda: PandaStandIn, sdist_dir: Path):
    """With nothing but the example config and an empty queue section: what pilot.py is given
    (the wrapper keeps -r and -s for itself) and the whole line both parse as pilot 3 intends."""
    _label, words, _env = rendered(example_config(tmp_path, panda, ""), panda)
    port = panda.url.rsplit(":", 1)[1]
    assert words == [
        "-q", "CERN", "-r", "CERN", "-s", "CERN", "-j", "managed", "-i", "PR", "--pilot-user", "ATLAS",
        "--url", "http://127.0.0.1", "-p", port, "-w", "generic",
    ]  # fmt: skip
    to_pilot = ["-q", "CERN", "-j", "managed", "-i", "PR", *words[10:]]
    for argv in (words, to_pilot):
        args = pilot3_parse(sdist_dir, argv)
        assert (args["queue"], args["job_label"], args["version_tag"]) == ("CERN", "managed", "PR")
        assert (args["pilot_user"], args["url"], args["port"], args["workflow"]) == (
            "ATLAS",
            "http://127.0.0.1",
            port,
            "generic",
        )


def start_wrapper(tmp_path: Path, panda: PandaStandIn) -> tuple[Label, subprocess.Popen[bytes], Path]:
    """The real wrapper with the real pilot 3 and the factory's rendered arguments and environment,
    on a node whose CVMFS has the queue's CRIC record; its output goes to the returned file."""
    cvmfs = tmp_path / "cvmfs"
    etc = cvmfs / "atlas.cern.ch/repo/sw/local/etc"
    etc.mkdir(parents=True)
    (etc / "cric_pandaqueues.json").write_text(json.dumps({"CERN": CERN}))
    (etc / "cric_ddmendpoints.json").write_text("{}")
    # What a site without a proxy and without the production CRIC/PanDA caches sets for the queue.
    queue_lines = (
        f"pilotURL = {panda.url}/cache/pilot/pilot3.tar.gz\n"
        f"pilotExtraArgs = -t --queuedata-url {panda.url}/cache/schedconfig/{{pandaqueue}}.all.json"
        f" --storagedata-url {panda.url}/cache/ddmendpoints.json\n"
    )
    label, words, env = rendered(example_config(tmp_path, panda, queue_lines), panda)
    (tmp_path / "tmp").mkdir()
    environ = clean_environ()
    environ.update(env)
    environ.update(
        {
            "ATLAS_SW_BASE": str(cvmfs),
            "TMPDIR": str(tmp_path / "tmp"),
            "APF_PYTHON": sys.executable,
            # Pilot 3 kills every process of its user whose parent is init (ps -u; ppid 1) when it
            # cleans up after a job: on a test or factory host those are other people's daemons.
            "PILOT_NOKILL": "1",
        }
    )
    out = tmp_path / "wrapper.out"
    with out.open("wb") as stdout:
        proc = subprocess.Popen(
            ["bash", str(WRAPPER), *words], env=environ, cwd=tmp_path, stdout=stdout, stderr=subprocess.STDOUT
        )
    return label, proc, out


def test_wrapper_runs_real_pilot3_up_to_get_job(tmp_path: Path, panda: PandaStandIn):
    label, proc, out = start_wrapper(tmp_path, panda)
    try:
        asked = panda.wait_for_get_job(within=45)
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        elapsed = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = out.read_text(errors="replace")
    assert asked, output[-5000:]

    form = panda.get_jobs()[0]
    assert form["computingElement"] == [label.pq]
    assert form["siteName"] == [label.siteid]
    assert form["prodSourceLabel"] == ["managed"]
    assert "pilot fetched from " + panda.url + "/cache/pilot/pilot3.tar.gz" in output
    assert f"PILOTVERSION: {PILOT3_VERSION}" in output
    # signalled while it waits: forwarded, the pilot ends (or is killed) within the documented bound
    assert "got SIGTERM: forwarding it to the pilot" in output
    assert rc in (128 + signal.SIGTERM, 128 + signal.SIGKILL, 20), output[-3000:]
    assert elapsed < 5 + 3 + 1 + 3, elapsed
    states = [call["state"][0] for call in panda.monitor_calls()]
    assert states == ["running", "exiting"]
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_refused_get_job_is_not_reported_as_no_job(tmp_path: Path, panda: PandaStandIn):
    """The dispatcher refuses getJob with HTTP 403 (as panda-server does over plain http, or for a
    bad proxy or token): pilot 3 logs "fatal error in job download loop" and exits 0 without a
    job. The wrapper tells this from "no job": exit code and monitor rc 119, not 20."""
    panda.refuse_get_job = True
    _label, proc, out = start_wrapper(tmp_path, panda)
    try:
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = out.read_text(errors="replace")
    assert panda.get_jobs(), output[-5000:]
    assert "fatal error in job download loop" in output
    assert "==== pilot END: exit code 0 ====" in output  # pilot 3 itself says nothing is wrong
    assert rc == 119, output[-3000:]
    assert "pilot log:" in output
    assert "method getJob is forbidden" in output
    exits = [call for call in panda.monitor_calls() if call["state"] == ["exiting"]]
    assert [call["rc"] for call in exits] == [["119"]]
