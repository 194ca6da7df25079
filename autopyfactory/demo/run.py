"""``autopyfactory demo``: the whole system on one machine, on 127.0.0.1, with nothing else installed.

It starts:

* a PanDA and CRIC stand-in (:class:`StandIn`): job statistics from a small evolving scenario, a
  CRIC dump with three queues, PanDA's job dispatcher (``POST /server/panda/getJob``: a job of the
  pilot's site whose payload sleeps a few seconds, or ``StatusCode`` 20, no job), the pilot
  tarball and the pilots' log files. The tarball's ``pilot.py`` is a stand-in for pilot 3 that
  parses its arguments with pilot 3's grammar (a wrong argument fails as in pilot 3), asks for a
  job, and like pilot 3 exits 0 with or without one (the wrapper reports 20 for "no job").
  With ``--pilot3`` the tarball is the real pilot 3 (the panda-pilot sdist): it reads the queue
  from a CVMFS directory, its queuedata and DDM endpoints from the stand-in, takes a job and runs
  the job's payload (a sleep, with pilot 3's generic plug-in), with PILOT_NOKILL set;
* the monitoring webservice on SQLite (expiry in-process, EXITING -> DONE after a few seconds);
* the factory itself with ``batch = local``: pilots are local processes running the real wrapper,
  which fetches the tarball with curl and reports to the monitor.

Everything lives in a temporary directory that is removed at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import signal
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests

from autopyfactory.batch.local.backend import LocalBackend
from autopyfactory.config import loader as config
from autopyfactory.cycle.report import CycleReport
from autopyfactory.demo import panda_standin
from autopyfactory.demo.pilot3_tarball import cache_dir, download_sdist, tarball_from_sdist
from autopyfactory.domain.label import Label
from autopyfactory.edges.panda import DETAILED_PATH, STATS_PATH
from autopyfactory.runtime.service import RunOptions, Service, install_signal_handlers
from autopyfactory.runtime.systemd import Notifier

FACTORY_ID = "demo-factory"
NO_JOBS = 20  # PanDA's getJob StatusCode: no job for this pilot
#: The demo job's payload for the real pilot 3 (--pilot3): pilot 3's generic plug-in runs
#: ``./<transformation's file name> <jobPars>``, taking the file from $HARVESTER_WORKDIR when there.
PAYLOAD_NAME = "jobO.demo.tar.gz"
PAYLOAD = '#!/bin/sh\necho "demo payload: sleeping $1 s"\nsleep "$1"\n'
QUEUES = {"DEMO_A": ("online", 10), "DEMO_B": ("online", 4), "DEMO_TEST": ("test", 2)}  # status, jobs

PILOT = r'''"""A stand-in for PanDA pilot 3: its command-line grammar, one getJob, a sleep "payload".

It parses its arguments as pilot 3's pilot.py does (required -q and --pilot-user, -w from a fixed
list, flags without values; a wrong argument is a usage error, exit 2; -h prints the usage and
exits 0), asks the PanDA server given by --url and -p for a job (POST /server/panda/getJob), and
like pilot 3 exits 0 without a job id when there is none. With a job it writes the job id to
pandaIDs.out next to pilot.py, runs the payload (a sleep) and reports the job finished.
"""
import argparse, json, os, sys, time, urllib.parse, urllib.request

parser = argparse.ArgumentParser()
add = parser.add_argument
for flags in (("--no-pilot-log",), ("-d", "--debug"), ("-z", "--noserverupdate"),
              ("-t", "--noproxyverification"), ("-u", "--verifypayloadproxy"), ("--pod",),
              ("--use-realtime-logging",)):
    add(*flags, action="store_true")
add("-q", "--queue", required=True)
add("--pilot-user", required=True)
add("-w", "--workflow", default="generic", choices=[
    "generic", "generic_hpc", "production", "production_hpc", "analysis", "analysis_hpc",
    "eventservice_hpc", "stager", "payload_stageout"])
add("--resource-type", default="", choices=["SCORE", "MCORE", "SCORE_HIMEM", "MCORE_HIMEM"])
for flags in (("-l", "--lifetime"), ("-L", "--leasetime"), ("-v", "--getjobrequests"),
              ("-x", "--getjobfailures")):
    add(*flags, type=int)
add("-p", "--port", default=25443)
add("-j", "--joblabel", default="ptest")
add("-i", "--versiontag", default="PR")
for flags in (("-a", "--workdir"), ("-r", "--resource"), ("-s", "--site"), ("--url",), ("--cacert",),
              ("--capath",), ("--queuedata-url",), ("--storagedata-url",), ("--rucio-host",),
              ("--redirect-stdout",), ("--country-group",), ("--working-group",),
              ("--allow-other-country",), ("--allow-same-user",), ("--job-type",), ("--use-https",),
              ("--cleanup",)):
    add(*flags)
args = parser.parse_args()

server = "%s:%s/server/panda/" % (args.url or "https://pandaserver.cern.ch", args.port)
form = {"siteName": args.queue, "computingElement": args.queue, "prodSourceLabel": args.joblabel,
        "resourceType": args.resource_type, "node": os.uname()[1]}
with urllib.request.urlopen(server + "getJob", urllib.parse.urlencode(form).encode(), timeout=30) as answer:
    job = json.load(answer)
if job.get("StatusCode") != 0:
    print("no job for", args.queue, "(StatusCode %s)" % job.get("StatusCode"), flush=True)
    sys.exit(0)
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pandaIDs.out"), "a") as ids:
    ids.write("%d\n" % job["PandaID"])
print("running PanDA job", job["PandaID"], "at", args.queue, flush=True)
time.sleep(float(job["jobPars"]))
done = urllib.parse.urlencode({"jobId": job["PandaID"], "state": "finished"}).encode()
urllib.request.urlopen(server + "updateJob", done, timeout=30).close()
print("job done")
'''


def pilot_tarball() -> bytes:
    """The stand-in pilot as ``pilot3/pilot.py``, the layout of pilot 3's tarball."""
    data = PILOT.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("pilot3/pilot.py")
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def cric_dump() -> dict[str, dict[str, Any]]:
    return {
        name: {"nickname": name, "siteid": name, "panda_resource": name, "cloud": "DEMO", "status": status,
               "corecount": 1, "maxrss": 2000, "maxtime": 3600, "maxwdir": 1000, "environ": "",
               "queues": [{"ce_endpoint": "localhost", "ce_flavour": "HTCONDOR-CE", "ce_queue_name": "",
                           "ce_state": "ACTIVE", "ce_status": "production"}]}
        for name, (status, _jobs) in QUEUES.items()
    }  # fmt: skip


class Scenario:
    """Activated jobs per site: a few at the start, more arriving now and then; pilots take them."""

    def __init__(self, job_seconds: float) -> None:
        self.lock = threading.Lock()
        self.activated = {name: jobs for name, (_status, jobs) in QUEUES.items()}
        self.running: dict[int, str] = {}
        self.next_id = 4_000_000_001
        self.job_seconds = job_seconds
        self.started = time.monotonic()
        self.arrivals = 0

    def stats(self) -> dict[str, dict[str, int]]:
        with self.lock:
            waves = int((time.monotonic() - self.started) // 20)  # a new wave of jobs every 20 s
            while self.arrivals < waves:
                self.activated["DEMO_A"] += 5
                self.arrivals += 1
            running = {site: list(self.running.values()).count(site) for site in self.activated}
            return {
                s: {"activated": n, "assigned": 0, "running": running[s]} for s, n in self.activated.items()
            }

    def take(self, site: str) -> dict[str, Any]:
        with self.lock:
            if self.activated.get(site, 0) <= 0:
                return {}
            self.activated[site] -= 1
            self.next_id += 1
            self.running[self.next_id] = site
            return {"PandaID": self.next_id, "seconds": self.job_seconds}

    def finish(self, panda_id: int) -> None:
        with self.lock:
            self.running.pop(panda_id, None)


def get_job_answer(scenario: Scenario, form: dict[str, list[str]]) -> dict[str, Any]:
    """PanDA's getJob answer: a job of the pilot's site (``siteName``), else ``StatusCode`` 20."""
    job = scenario.take(form.get("siteName", [""])[0])
    if not job:
        return {"StatusCode": NO_JOBS}
    label = form.get("prodSourceLabel", ["managed"])[0]
    return {"StatusCode": 0, "PandaID": job["PandaID"], "prodSourceLabel": label, "jobsetID": 1,
            "taskID": 1, "attemptNr": 1, "coreCount": 1, "inFiles": "", "outFiles": "", "logFile": "",
            "swRelease": "", "homepackage": "", "transformation": "http://127.0.0.1/" + PAYLOAD_NAME,
            "jobPars": str(job["seconds"])}  # fmt: skip


class StandIn:
    """PanDA statistics, CRIC dump, pilot tarball and pilot logs on 127.0.0.1 (one thread).

    The statistics are answered as a real PanDA server answers them (see panda_standin): no job
    left is ``success: false``, JSON only for ``Accept: application/json``, and with ``lag`` the
    counts other than ``assigned`` refresh only every ``lag`` seconds (PanDA: 60).
    """

    def __init__(self, scenario: Scenario, log_dir: Path, lag: float = 0.0, tarball: bytes = b"") -> None:
        self.scenario, self.log_dir = scenario, log_dir
        self.lag, self._lag_lock = panda_standin.Lag(lag, time.monotonic), threading.Lock()
        self.tarball, self.dump = tarball or pilot_tarball(), json.dumps(cric_dump()).encode()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="stand-in", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def statistics(self, headers: Mapping[str, str], detailed: bool = False) -> bytes:
        """PanDA's answer to ``active_job_(detailed_)stats_by_site`` for these request headers
        (the demo's jobs are all SCORE and managed)."""
        sites: dict[str | None, dict[str, int]] = {site: n for site, n in self.scenario.stats().items()}
        live = panda_standin.from_sites(sites)
        with self._lag_lock:  # the server answers in threads
            jobs = self.lag.view(live)
        data = panda_standin.detailed_job_stats(jobs) if detailed else panda_standin.job_stats(jobs)
        payload = panda_standin.envelope(data, detailed)
        return panda_standin.render(payload, headers.get("Accept"), headers.get("Content-Type"))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        """The request handler class bound to this stand-in (the server makes one per request)."""
        return type("Handler", (_StandInHandler,), {"stand_in": self})


class _StandInHandler(BaseHTTPRequestHandler):
    """The HTTP side of a :class:`StandIn`: PanDA, CRIC, the pilot tarball and the pilot logs."""

    stand_in: StandIn

    def do_GET(self) -> None:
        path = urlparse(self.path).path
        if path in (STATS_PATH, DETAILED_PATH):
            body = self.stand_in.statistics(dict(self.headers.items()), detailed=path == DETAILED_PATH)
            self._send(200, body, "text/plain")
        elif path == "/cric.json":
            self._send(200, self.stand_in.dump, "application/json")
        elif path == "/cache/pilot/pilot3.tar.gz":
            self._send(200, self.stand_in.tarball, "application/gzip")
        elif path.startswith("/cache/schedconfig/") and path.endswith(".all.json"):
            # pilot 3's queuedata (--queuedata-url): the queue's CRIC record
            record = pilot3_queues().get(path[len("/cache/schedconfig/") : -len(".all.json")])
            self._send(200 if record else 404, json.dumps(record or {}).encode(), "application/json")
        elif path == "/cache/ddmendpoints.json":  # pilot 3's --storagedata-url: none
            self._send(200, b"{}", "application/json")
        elif path.startswith("/logs/"):
            self._log_file(path[len("/logs/") :])
        else:
            self._send(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        path = urlparse(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode(errors="replace") if length else "")
        if path == "/server/panda/getJob":
            answer = get_job_answer(self.stand_in.scenario, form)
            self._send(200, json.dumps(answer).encode(), "application/json")
        elif path in ("/server/panda/updateJob", "/server/panda/updateJobsInBulk"):
            job_id = form.get("jobId", [""])[0]
            if job_id.isdigit() and form.get("state", [""])[0] in ("finished", "failed"):
                self.stand_in.scenario.finish(int(job_id))
            self._send(200, json.dumps({"StatusCode": 0}).encode(), "application/json")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _log_file(self, relative: str) -> None:
        root = self.stand_in.log_dir.resolve()
        target = (root / relative).resolve()
        if root not in target.parents or not target.is_file():
            self._send(404, b"not found\n", "text/plain")
            return
        self._send(200, target.read_bytes(), "text/plain; charset=utf-8")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


class Monitor:
    """The monitoring webservice on SQLite in a thread, with fast expiry so pilots reach DONE."""

    def __init__(self, db_path: Path) -> None:
        import uvicorn

        from autopyfactory.monitor_service.app import create_app
        from autopyfactory.monitor_service.db import Database
        from autopyfactory.monitor_service.migrations import upgrade
        from autopyfactory.monitor_service.settings import ExpiryRules, MonitorSettings, database_url
        from autopyfactory.monitor_service.store import Store

        url = database_url(str(db_path))
        db = Database.open(url)
        try:
            upgrade(db.engines.write)
            self.token = Store(db, MonitorSettings(url).clock).add_factory(FACTORY_ID)
        finally:
            db.close()
        settings = MonitorSettings(url, expiry=ExpiryRules(exiting=timedelta(seconds=3)), expire_every=1.0)
        config_ = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning",
                                 access_log=False)  # fmt: skip
        self._server = uvicorn.Server(config_)
        self._thread = threading.Thread(target=self._server.run, name="monitor", daemon=True)
        self.url = ""

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the monitoring webservice did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self._server.servers[0].sockets[0].getsockname()[1]}"

    def counts(self) -> dict[str, int]:
        try:
            answer = requests.get(f"{self.url}/api/factories/{FACTORY_ID}", timeout=5)
            counts: dict[str, int] = answer.json()["counts"]
        except (requests.RequestException, ValueError, KeyError):
            return {}
        return counts

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


def factory_conf(
    work: Path, stand_in: StandIn, monitor: Monitor, wrapper: Path, sleep: int, pilot3: bool = False
) -> Path:
    path = work / "factory.conf"
    queues = "\n".join(f"[{name}]" for name in QUEUES)
    environ = (
        f"PILOT_HTTP_SOURCES={stand_in.url}/cache/pilot/pilot3.tar.gz APFMON_RETRIES=5 APFMON_RETRY_DELAY=1"
    )
    extra = ""
    if pilot3:
        environ += f" ATLAS_SW_BASE={work}/cvmfs HARVESTER_WORKDIR={work}/payload PILOT_NOKILL=1"
        extra = f"""# the real pilot 3: generic plug-in, queuedata and DDM endpoints from the stand-in
pilotUser = generic
pilotExtraArgs = -t --queuedata-url {stand_in.url}/cache/schedconfig/{{pandaqueue}}.all.json \
 --storagedata-url {stand_in.url}/cache/ddmendpoints.json
"""
    path.write_text(f"""# Written by `autopyfactory demo`.
[Factory]
factoryId = {FACTORY_ID}
factoryOwner = demo@localhost
pandaserver = {stand_in.url}
schedconfig = {stand_in.url}/cric.json
baseLogDir = {work}/logs
baseLogDirUrl = {stand_in.url}/logs
stateDir = {work}/state
sleep = {sleep}
httpRetries = 0
monitorURL = {monitor.url}/api
monitorToken = {monitor.token}
logMinFreeGB = 0

[QueueDefaults]
batch = local
executable = {wrapper}
# one pilot per activated job, at most 4 running per queue; a test queue gets its one test pilot
schedplugin = Ready, StatusTest, MaxToRun
sched.maxtorun.maximum = 4
environ = {environ}
{extra}
{queues}
""")
    return path


def packaged_wrapper(work: Path) -> Path:
    """A private, executable copy of the wrapper shipped in the package (or in a checkout)."""
    shipped = resources.files("autopyfactory") / "data" / "runpilot3-wrapper.sh"
    source = Path(str(shipped))
    if not source.is_file():
        source = Path(__file__).resolve().parent.parent / "wrappers" / "runpilot3-wrapper.sh"
    target = work / "runpilot3-wrapper.sh"
    shutil.copyfile(source, target)
    target.chmod(0o755)
    return target


class Printer:
    """A cycle observer printing one line per cycle with the monitor's view."""

    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor

    def cycle_done(self, report: CycleReport, labels: Sequence[Label]) -> None:
        print(f"{report.summary()} | monitor: {format_counts(self._monitor.counts())}", flush=True)


def format_counts(counts: dict[str, int]) -> str:
    states = ("CREATED", "RUNNING", "EXITING", "DONE", "FAULT")
    return " ".join(f"{state}={counts.get(state, 0)}" for state in states) if counts else "unreachable"


def run_demo(args: argparse.Namespace) -> int:
    tarball = real_pilot3() if args.pilot3 else b""
    if tarball is None:
        return 1
    work = Path(tempfile.mkdtemp(prefix="autopyfactory-demo-"))
    if args.pilot3:
        worker_node(work)
    scenario = Scenario(args.job_seconds)
    stand_in = StandIn(scenario, work / "logs", args.panda_lag, tarball)
    monitor = Monitor(work / "monitor.sqlite")
    stand_in.start()
    monitor.start()
    path = factory_conf(work, stand_in, monitor, packaged_wrapper(work), args.sleep, args.pilot3)
    print(f"demo directory:        {work}")
    jobs = ", ".join(f"{queue} {n}" for queue, (_status, n) in QUEUES.items())
    print(f"PanDA/CRIC stand-in:   {stand_in.url}  (activated jobs: {jobs})")
    print(f"monitoring webservice: {monitor.url}/  (API {monitor.url}/api, docs {monitor.url}/docs)")
    print(f"factory config:        {path}")
    print("the factory runs pilots as local processes; Ctrl-C stops everything", flush=True)
    service = Service(
        path, config.load(path), RunOptions(cycles=args.cycles), Notifier(None), [Printer(monitor)]
    )
    install_signal_handlers(service)
    try:
        service.run()
        _drain(monitor, timeout=(90 if args.pilot3 else 30) if args.cycles else 5)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _stop_pilots(service, work)
        monitor.stop()
        stand_in.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def real_pilot3() -> bytes | None:
    """The real pilot 3's tarball (the panda-pilot sdist, downloaded with pip on first use)."""
    try:
        sdist = download_sdist(cache_dir())
        print(f"pilot:                 PanDA pilot 3 from {sdist}", flush=True)
        return tarball_from_sdist(sdist)
    except RuntimeError as exc:
        print(f"autopyfactory demo --pilot3: {exc}", file=sys.stderr)
        return None


def pilot3_queues() -> dict[str, dict[str, Any]]:
    """The demo's CRIC records as pilot 3 reads them: it runs only on an ``ACTIVE`` queue."""
    return {
        name: record | {"state": "ACTIVE", "site": name, "atlas_site": name}
        for name, record in cric_dump().items()
    }


def worker_node(work: Path) -> None:
    """What pilot 3 finds on a worker node: the CRIC dumps on CVMFS, and the demo job's payload."""
    etc = work / "cvmfs" / "atlas.cern.ch" / "repo" / "sw" / "local" / "etc"
    etc.mkdir(parents=True)
    (etc / "cric_pandaqueues.json").write_text(json.dumps(pilot3_queues()))
    (etc / "cric_ddmendpoints.json").write_text("{}")
    payload = work / "payload" / PAYLOAD_NAME
    payload.parent.mkdir()
    payload.write_text(PAYLOAD)
    payload.chmod(0o755)


def _drain(monitor: Monitor, timeout: float) -> None:
    """Wait (bounded) until the pilots have finished and the monitor has them DONE or FAULT."""
    deadline = time.monotonic() + timeout
    counts = monitor.counts()
    while time.monotonic() < deadline and any(counts.get(s, 0) for s in ("CREATED", "RUNNING", "EXITING")):
        time.sleep(0.5)
        counts = monitor.counts()
    print(f"final: monitor: {format_counts(counts)}", flush=True)


def _stop_pilots(service: Service, work: Path) -> None:
    """Stop the pilots still running (they are detached processes and would outlive the demo)."""
    if service.last_report is None:
        return
    labels = [result.plan.label for result in service.last_report.results]
    backend = LocalBackend(FACTORY_ID, work / "state", kill_grace=2.0)
    census = backend.census(labels)
    for label in labels:
        left = [pilot.job_id for pilot in census.pilots.get(label.name, ())]
        if left:
            print(f"stopping {len(left)} pilots of {label.name}", file=sys.stderr)
            backend.remove(label, left)
