"""The cron helpers ``mon-exiting`` and ``mon-stale``: the batch system's view of this factory's
pilots, reported to the monitor with ``POST <monitorURL>/factories/<factoryId>/jobs``.

``mon-exiting`` reads ``condor_history`` of this factory's pilots (``FactoryId == "<id>"``) in
each of its schedds since a checkpoint (``<stateDir>/mon-exiting.json``, written atomically; the
first run, or one after a long pause, reads at most ``monExitingLookback`` seconds back) and
reports Completed as ``done`` with the exit code and Removed as ``fault``. Pilots of batch = local
labels are read from the local backend's history. A pilot the monitor still has active, created
more than ``awolGrace`` seconds ago, found in no schedd's queue and no history is AWOL: ``fault``.
The AWOL check covers HTCondor labels only, and runs only when every schedd answered.

``mon-stale`` reports pilots idle longer than ``staleIdle`` or running longer than
``staleRunning`` as ``flag`` (the monitor keeps their state and flags them; its expiry makes a
job flagged for a day FAULT, unless the pilot reports). With ``staleRemove = true`` it also
removes them with ``condor_rm``, oldest first, at most ``staleRemoveMax`` per run.

The schedds are the factory's own: ``[Factory] condorSchedd/condorPool`` plus every queue
section's ``condorSchedd/condorPool`` override, read from the configuration without schedconfig.
Both commands are idempotent (a report the monitor already has changes nothing). Every call has a
timeout. When the monitor cannot be reached the command fails and the checkpoint stays where it
was, so the next run reads the same history again and nothing is lost.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from autopyfactory.batch.condor.census import factory_constraint, query_pilots
from autopyfactory.batch.condor.command import Schedd, run_condor
from autopyfactory.batch.condor.history import history_ads
from autopyfactory.batch.condor.schedds import MEMORY_FILE, SubmissionMemory
from autopyfactory.batch.interface import BatchError
from autopyfactory.batch.local.backend import FinishedPilot, LocalBackend
from autopyfactory.config import loader as config
from autopyfactory.config.autoconfigure import LOCAL_CE, label_name_for
from autopyfactory.domain.model import JobStatus, Pilot
from autopyfactory.edges.files import atomic_write_text

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "mon-exiting.json"
LOCAL_KEY = "batch=local"
OVERLAP = 60  # seconds read again on each run: a replayed report changes nothing
HISTORY_ATTRIBUTES = (
    "ClusterId", "ProcId", "JobStatus", "EnteredCurrentStatus", "ExitCode", "ExitBySignal", "ExitSignal",
    "RemoveReason",
)  # fmt: skip
SEND_CHUNK = 1000
IDS_PER_QUERY = 100
PAGE = 1000
ACTIVE = ("CREATED", "RUNNING", "EXITING")


class ReportError(Exception):
    """The run cannot complete (monitor unreachable, no monitor configured); nothing advanced."""


@dataclass(frozen=True)
class Report:
    """One pilot's state as the batch system sees it, in the monitor's terms."""

    cid: str
    state: str  # done, exiting, fault, flag
    rc: int | None = None
    reason: str = ""

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"cid": self.cid, "state": self.state, "reason": self.reason[:256]}
        return body | ({"rc": self.rc} if self.rc is not None else {})


# --- the monitor ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveJob:
    cid: str
    label: str
    created_at: float


class MonitorApi:
    """The few monitor calls the helpers need; every failure is a :class:`ReportError`."""

    def __init__(
        self, url: str, token: str, factory_id: str, timeout: float, session: requests.Session
    ) -> None:
        if not url:
            raise ReportError("monitorURL is not set in [Factory]: there is no monitor to report to")
        self._url, self._token, self._fid = url.rstrip("/"), token, factory_id
        self._timeout, self._session = timeout, session

    def _call(
        self, method: str, path: str, body: object = None, params: Mapping[str, str | int] | None = None
    ) -> Any:
        try:
            answer = self._session.request(
                method, self._url + path, json=body, params=params, timeout=self._timeout,
                headers={"Authorization": f"Bearer {self._token}"},
            )  # fmt: skip
        except requests.RequestException as exc:
            raise ReportError(f"monitor {self._url} unreachable: {exc}") from None
        if answer.status_code >= 400:
            raise ReportError(f"monitor {method} {path}: HTTP {answer.status_code} {answer.text[:200]}")
        try:
            return answer.json()
        except ValueError:
            raise ReportError(f"monitor {method} {path}: the answer is not JSON") from None

    def active_jobs(self) -> dict[str, ActiveJob]:
        """This factory's jobs the monitor has in CREATED, RUNNING or EXITING, by cid."""
        labels = self._call("GET", f"/factories/{quote(self._fid, safe='')}/labels")
        found: dict[str, ActiveJob] = {}
        for label in labels:
            for state in ACTIVE:
                if label["counts"].get(state, 0):
                    found.update((job.cid, job) for job in self._jobs(label["name"], state))
        return found

    def _jobs(self, label: str, state: str) -> Iterable[ActiveJob]:
        path = "/labels/" + quote(f"{self._fid}:{label}", safe=":@=+") + "/jobs"
        offset = 0
        while True:
            page = self._call("GET", path, params={"state": state, "limit": PAGE, "offset": offset})
            for job in page["jobs"]:
                yield ActiveJob(job["cid"], label, datetime.fromisoformat(job["created_at"]).timestamp())
            offset += len(page["jobs"])
            if not page["jobs"] or offset >= page["total"]:
                return

    def send(self, reports: Sequence[Report]) -> dict[str, int]:
        """Send the reports in chunks; the monitor's counts (changed, unchanged, unknown) summed."""
        totals = {"changed": 0, "unchanged": 0, "unknown": 0}
        for start in range(0, len(reports), SEND_CHUNK):
            chunk = reports[start : start + SEND_CHUNK]
            for _attempt in range(3):
                answer = self._call("POST", f"/factories/{quote(self._fid, safe='')}/jobs",
                                    [report.body() for report in chunk])  # fmt: skip
                for key in totals:
                    totals[key] += int(answer[key])
                for item in answer.get("rejected", []):  # the monitor applied the others
                    log.warning("monitor refused report %s: %s", chunk[item["index"]].cid, item["detail"])
                retry = {job["cid"] for job in answer["jobs"] if job["result"] == "retry"}
                chunk = [report for report in chunk if report.cid in retry]
                if not chunk:
                    break
            else:
                raise ReportError(f"monitor: {len(chunk)} jobs kept changing concurrently; run again")
        return totals


# --- the batch systems ---------------------------------------------------------------------------


def factory_schedds(loaded: config.FactoryConfig) -> list[Schedd]:
    """[Factory] condorSchedd/condorPool, then every queue's override, then the schedds the
    factory submitted to before (``<stateDir>/schedds.json``: a queue that moved leaves its
    pilots in the old one, and they must be neither lost nor AWOL), each once."""
    f = loaded.factory
    schedds = [Schedd(f.condor.schedd, f.condor.pool)]
    for queue in loaded.queues:
        if queue.get("batch") == "local":
            continue
        name = str(queue.get("condorSchedd") or f.condor.schedd)
        pool = str(queue.get("condorPool") or f.condor.pool)
        schedds.append(Schedd(name, pool))
    schedds += SubmissionMemory(
        Path(f.identity.state_dir) / MEMORY_FILE, time.time, 0.0, read_only=True
    ).schedds()
    return list(dict.fromkeys(schedds))


def local_labels(loaded: config.FactoryConfig) -> set[str]:
    """The names of the labels the factory makes for its ``batch = local`` queues."""
    return {label_name_for(queue.name, LOCAL_CE) for queue in loaded.queues if queue.get("batch") == "local"}


def schedd_key(schedd: Schedd) -> str:
    return f"{schedd.name or '(local schedd)'}@{schedd.pool or '(local pool)'}"


def read_history(schedd: Schedd, constraint: str, timeout: float, since: float | None = None) -> list[Report]:
    """This factory's pilots in one schedd's history matching ``constraint``, as reports."""
    args = ["-constraint", constraint, "-attributes", ",".join(HISTORY_ATTRIBUTES)]
    if since is not None:
        args[2:2] = ["-since", f"EnteredCurrentStatus < {int(since)}"]
    return [report for ad in history_ads(schedd, args, timeout) if (report := ad_report(ad)) is not None]


def ad_report(ad: Mapping[str, Any]) -> Report | None:
    """Completed -> done with its exit code; Removed -> fault with the remove reason."""
    cid = f"{ad.get('ClusterId')}.{ad.get('ProcId')}"
    status = ad.get("JobStatus")
    if status == JobStatus.REMOVED:
        return Report(cid, "fault", None, f"Removed: {ad.get('RemoveReason', '')}".strip(": "))
    if status != JobStatus.COMPLETED:
        return None
    if ad.get("ExitBySignal"):
        return Report(cid, "done", None, f"Completed, killed by signal {ad.get('ExitSignal')}")
    code = ad.get("ExitCode")
    rc = code if isinstance(code, int) and 0 <= code <= 255 else None
    return Report(cid, "done", rc, f"Completed, exit code {code}")


def local_report(pilot: FinishedPilot) -> Report:
    if pilot.removed:
        return Report(pilot.job_id, "fault", None, f"Removed: {pilot.reason}")
    rc = pilot.rc if pilot.rc is not None and 0 <= pilot.rc <= 255 else None
    return Report(pilot.job_id, "done", rc, f"Completed: {pilot.reason}")


def ids_constraint(factory_id: str, cids: Sequence[str]) -> str:
    pairs = (cid.split(".") for cid in cids)
    ids = " || ".join(f"(ClusterId == {int(c)} && ProcId == {int(p)})" for c, p in pairs)
    return f"{factory_constraint(factory_id)} && ({ids})"


# --- mon-exiting ---------------------------------------------------------------------------------


@dataclass
class ExitingRun:
    """What one mon-exiting run saw and did."""

    reports: list[Report] = field(default_factory=list)
    checkpoint: dict[str, float] = field(default_factory=dict)
    in_queue: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    awol: int = 0


#: How far ahead of this host's clock a checkpoint may be (clock adjustments), in seconds.
CHECKPOINT_SKEW = 300.0


def read_checkpoint(path: Path, now: float) -> dict[str, float]:
    """The saved time per source. A value that is not a finite time at most CHECKPOINT_SKEW
    ahead of ``now`` (NaN, infinities, 1e400, a boolean, the far future) is rejected with a
    warning: that source starts again from the bounded look-back (monExitingLookback), so a
    corrupt checkpoint neither crashes every run nor silently skips a window."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("checkpoint %s unreadable (%s): starting from the look-back window", path, exc)
        return {}
    if not isinstance(data, dict):
        log.warning("checkpoint %s is not a JSON object: starting from the look-back window", path)
        return {}
    saved: dict[str, float] = {}
    for key, value in data.items():
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value <= now + CHECKPOINT_SKEW
        ):
            saved[str(key)] = float(value)
        else:
            log.warning(
                "checkpoint %s: %s=%r rejected (not a time up to now): %s starts from the look-back window",
                path,
                key,
                value,
                key,
            )
    return saved


def collect_finished(loaded: config.FactoryConfig, saved: Mapping[str, float], now: float) -> ExitingRun:
    """Read every schedd's history since its checkpoint (and its queue, for the AWOL check)."""
    f = loaded.factory
    run = ExitingRun()
    floor = now - f.cron.exiting_lookback
    for schedd in factory_schedds(loaded):
        key = schedd_key(schedd)
        since = max(saved.get(key, floor), floor)
        try:
            run.reports += read_history(
                schedd, factory_constraint(f.identity.factory_id), f.condor.timeout, since - OVERLAP
            )
            run.in_queue.update(
                p.job_id for p in query_pilots(schedd, f.identity.factory_id, f.condor.timeout)
            )
        except BatchError as exc:
            run.problems.append(str(exc))
            continue
        run.checkpoint[key] = now
    if local_labels(loaded):
        since = max(saved.get(LOCAL_KEY, floor), floor)
        run.reports += [
            local_report(p)
            for p in LocalBackend(f.identity.factory_id, Path(f.identity.state_dir)).history(since - OVERLAP)
        ]
        run.checkpoint[LOCAL_KEY] = now
    return run


def find_awol(
    loaded: config.FactoryConfig, run: ExitingRun, active: Mapping[str, ActiveJob], now: float
) -> None:
    """Active at the monitor, old enough, in no queue and no history: AWOL (adds to ``run``)."""
    f = loaded.factory
    seen = run.in_queue | {report.cid for report in run.reports}
    local = local_labels(loaded)
    missing = sorted(
        cid for cid, job in active.items()
        if cid not in seen and job.label not in local and job.created_at <= now - f.cron.awol_grace
    )  # fmt: skip
    for schedd in factory_schedds(loaded):
        for start in range(0, len(missing), IDS_PER_QUERY):
            part = missing[start : start + IDS_PER_QUERY]
            found = read_history(schedd, ids_constraint(f.identity.factory_id, part), f.condor.timeout)
            run.reports += found
            seen.update(report.cid for report in found)
        missing = [cid for cid in missing if cid not in seen]
    run.reports += [
        Report(cid, "fault", None, "AWOL: in neither condor_q nor condor_history") for cid in missing
    ]
    run.awol = len(missing)


def mon_exiting(loaded: config.FactoryConfig, api: MonitorApi, now: float) -> ExitingRun:
    """One run; the checkpoint is written only after the monitor took the reports."""
    path = Path(loaded.factory.identity.state_dir) / CHECKPOINT_FILE
    saved = read_checkpoint(path, now)
    run = collect_finished(loaded, saved, now)
    if not run.problems:
        try:
            find_awol(loaded, run, api.active_jobs(), now)
        except BatchError as exc:
            run.problems.append(f"AWOL check skipped: {exc}")
    totals = api.send(run.reports)
    atomic_write_text(path, json.dumps({**saved, **run.checkpoint}, indent=1, sort_keys=True) + "\n")
    print(
        f"mon-exiting: {len(run.reports)} reports ({run.awol} AWOL) from {len(run.checkpoint)} sources;"
        f" monitor: changed={totals['changed']} unchanged={totals['unchanged']} unknown={totals['unknown']}"
    )
    return run


# --- mon-stale -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StalePilot:
    schedd: Schedd
    pilot: Pilot
    age: int

    @property
    def what(self) -> str:
        return f"{self.pilot.status.name.lower()} for {self.age / 3600:.1f} h"


def stale_pilots(loaded: config.FactoryConfig, now: float, problems: list[str]) -> list[StalePilot]:
    """Idle > staleIdle or running > staleRunning, oldest first; unreadable schedds in ``problems``."""
    f = loaded.factory
    limits = {JobStatus.IDLE: f.cron.stale_idle, JobStatus.RUNNING: f.cron.stale_running}
    found = []
    for schedd in factory_schedds(loaded):
        try:
            pilots = query_pilots(schedd, f.identity.factory_id, f.condor.timeout)
        except BatchError as exc:
            problems.append(str(exc))
            continue
        for pilot in pilots:
            age = int(now) - pilot.entered_status
            if pilot.status in limits and age > limits[pilot.status]:
                found.append(StalePilot(schedd, pilot, age))
    return sorted(found, key=lambda s: (-s.age, s.pilot.job_id))


def remove_stale(stale: Sequence[StalePilot], limit: int, timeout: float, problems: list[str]) -> set[str]:
    """condor_rm the first ``limit`` of ``stale``, one call per schedd; the ids removed."""
    by_schedd: dict[Schedd, list[str]] = {}
    for item in stale[:limit]:
        by_schedd.setdefault(item.schedd, []).append(item.pilot.job_id)
    removed: set[str] = set()
    for schedd, ids in by_schedd.items():
        try:
            run_condor(
                "condor_rm", schedd, ["-reason", "autopyfactory mon-stale: stale pilot", *ids], timeout
            )
        except BatchError as exc:
            problems.append(str(exc))
            continue
        removed.update(ids)
    return removed


def mon_stale(loaded: config.FactoryConfig, api: MonitorApi, now: float) -> list[str]:
    """One run; returns the problems met (unreadable schedds, failed removals)."""
    f = loaded.factory
    problems: list[str] = []
    stale = stale_pilots(loaded, now, problems)
    removed = (
        remove_stale(stale, f.cron.stale_remove_max, f.condor.timeout, problems)
        if f.cron.stale_remove
        else set()
    )
    reports = [
        Report(
            s.pilot.job_id,
            "flag",
            None,
            f"stale: {s.what}" + (", removed" if s.pilot.job_id in removed else ""),
        )
        for s in stale
    ]
    summary = (
        f"mon-stale: {len(stale)} stale pilots, {len(removed)} removed (staleRemove={f.cron.stale_remove},"
        f" at most {f.cron.stale_remove_max}); monitor: "
    )
    try:
        totals = api.send(reports)
    except ReportError as exc:
        if not removed:
            raise  # nothing done: "nothing was advanced" is true
        print(summary + "not told")
        ids = ", ".join(sorted(removed))
        problems.append(
            f"removed {len(removed)} stale pilot{'s' if len(removed) != 1 else ''} ({ids}) but could not"
            f" tell the monitor: {exc}; mon-exiting reports them from condor_history once it is back"
        )
        return problems
    print(
        summary + f"flagged={totals['changed']} unchanged={totals['unchanged']} unknown={totals['unknown']}"
    )
    return problems


# --- the commands --------------------------------------------------------------------------------


def run_command(args: argparse.Namespace) -> int:
    """``autopyfactory mon-exiting|mon-stale -c FILE``: 0 when everything was read and reported.

    Without a monitor (``monitorURL`` unset, as shipped) there is nothing to report to: one
    informational line and exit 0, so the cron entries installed by the RPM stay harmless.
    """
    loaded = config.load(args.config)
    f = loaded.factory
    if not f.monitor.url:
        print(f"autopyfactory {args.command}: no monitorURL in [Factory], nothing to report")
        return 0
    with requests.Session() as session:
        try:
            api = MonitorApi(f.monitor.url, f.monitor.token, f.identity.factory_id, f.http.timeout, session)
            if args.command == "mon-exiting":
                problems = mon_exiting(loaded, api, time.time()).problems
            else:
                problems = mon_stale(loaded, api, time.time())
        except ReportError as exc:
            print(
                f"autopyfactory {args.command}: {exc}; nothing was advanced, run again later", file=sys.stderr
            )
            return 1
    for problem in problems:
        print(f"autopyfactory {args.command}: {problem}", file=sys.stderr)
    return 1 if problems else 0
