"""``mon-exiting``: the pilots that left the batch system, reported to the monitor.

Every backend reads its history since a checkpoint (``<stateDir>/mon-exiting.json``, one time per
source: a schedd, the local history; written atomically; the first run, or one after a long
pause, reads at most ``monExitingLookback`` seconds back). A completed pilot is reported
``done`` with its exit code, which also says whether the pilot ran (``common.PILOT_RAN``): a pilot
the monitor never heard from (all its wrapper's reports lost) is then DONE or FAULT by it. One
removed on an operator's request (``autopyfactory pilots remove``) is reported ``removed``, which
the monitor keeps apart from faults; any other removed one ``fault``, with the reason.

A pilot the monitor still has active (CREATED, RUNNING, EXITING), created more than
``awolGrace`` seconds ago, that no backend lists as queued or finished, is looked for in the
whole history of the backend of its label; one that backend says is lost (HTCondor: in neither
condor_q nor condor_history) is AWOL: ``fault``. Which backend a label belongs to comes from the
queue sections, with the factory's own naming rule (:func:`possible_label_names`); a label the
configuration alone cannot name (its CEs come from schedconfig) belongs to the default ``batch``.
The AWOL check runs only when every source answered.

When the monitor cannot be reached the command fails and the checkpoint stays where it was, so
the next run reads the same history again and nothing is lost.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from autopyfactory.batch.interface import Backend, BatchError, End
from autopyfactory.config import loader as config
from autopyfactory.config.autoconfigure import possible_label_names
from autopyfactory.cron.common import Report, report_of, send
from autopyfactory.edges.files import atomic_write_text
from autopyfactory.edges.monitor import MonitorClient, MonitoredJob

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "mon-exiting.json"
OVERLAP = 60  # seconds read again on each run: a replayed report changes nothing
#: How far ahead of this host's clock a checkpoint may be (clock adjustments), in seconds.
CHECKPOINT_SKEW = 300.0
ACTIVE = ("CREATED", "RUNNING", "EXITING")


@dataclass
class ExitingRun:
    """What one mon-exiting run saw and did."""

    reports: list[Report] = field(default_factory=list)
    checkpoint: dict[str, float] = field(default_factory=dict)
    in_queue: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    awol: int = 0


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


def checkpointed_sources(state_dir: Path) -> set[str]:
    """The sources the checkpoint in ``state_dir`` has a time for, whatever the time (which
    :func:`read_checkpoint` judges); none when it is missing or unreadable."""
    try:
        data = json.loads((state_dir / CHECKPOINT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {str(key) for key in data} if isinstance(data, dict) else set()


def collect_finished(
    backends: Mapping[str, Backend], saved: Mapping[str, float], now: float, lookback: float
) -> ExitingRun:
    """Every backend's finished pilots since each source's checkpoint (at most ``lookback``
    seconds back, and OVERLAP seconds again), and the ids still queued (for the AWOL check)."""
    run = ExitingRun()
    floor = now - lookback

    def since(source: str) -> float:
        return max(saved.get(source, floor), floor) - OVERLAP

    for backend in backends.values():
        finished = backend.finished(since)
        run.reports += [report_of(pilot) for pilot in finished.pilots]
        run.in_queue.update(finished.queued)
        run.problems += finished.problems
        run.checkpoint.update(dict.fromkeys(finished.sources, now))
    return run


def active_jobs(client: MonitorClient) -> dict[str, MonitoredJob]:
    """This factory's jobs the monitor has in CREATED, RUNNING or EXITING, by cid."""
    found: dict[str, MonitoredJob] = {}
    for label, counts in client.label_counts().items():
        for state in ACTIVE:
            if counts.get(state, 0):
                found.update((job.cid, job) for job in client.jobs(label, state))
    return found


def backend_of_label(loaded: config.FactoryConfig) -> Callable[[str], str]:
    """The ``batch`` of the queue section whose labels can have a name, else the default one."""
    named = {name: str(queue.get("batch")) for queue in loaded.queues for name in possible_label_names(queue)}
    default = str(loaded.queue_defaults["batch"].value)  # built-in, or [QueueDefaults]
    return lambda label: named.get(label, default)


def find_awol(
    loaded: config.FactoryConfig,
    backends: Mapping[str, Backend],
    run: ExitingRun,
    active: Mapping[str, MonitoredJob],
    now: float,
) -> None:
    """Active at the monitor, old enough, neither queued nor finished: each backend traces those
    of its labels (adds to ``run``; raises BatchError)."""
    seen = run.in_queue | {report.cid for report in run.reports}
    old = now - loaded.factory.cron.awol_grace
    batch_of = backend_of_label(loaded)
    missing: dict[str, list[str]] = {}
    for cid, job in sorted(active.items()):
        if cid not in seen and job.created_at <= old:
            missing.setdefault(batch_of(job.label), []).append(cid)
    for name, cids in missing.items():
        backend = backends.get(name)
        if backend is None:
            log.warning("%d active pilots of labels of batch %r: no such backend to ask", len(cids), name)
            continue
        traced = backend.trace(cids)
        run.reports += [report_of(pilot) for pilot in traced]
        run.awol += sum(1 for pilot in traced if pilot.end is End.LOST)


def mon_exiting(
    loaded: config.FactoryConfig, client: MonitorClient, backends: Mapping[str, Backend], now: float
) -> ExitingRun:
    """One run; the checkpoint is written only after the monitor took the reports."""
    f = loaded.factory
    path = Path(f.identity.state_dir) / CHECKPOINT_FILE
    saved = read_checkpoint(path, now)
    run = collect_finished(backends, saved, now, f.cron.exiting_lookback)
    if not run.problems:
        try:
            find_awol(loaded, backends, run, active_jobs(client), now)
        except BatchError as exc:
            run.problems.append(f"AWOL check skipped: {exc}")
    totals = send(client, run.reports)
    atomic_write_text(path, json.dumps({**saved, **run.checkpoint}, indent=1, sort_keys=True) + "\n")
    print(
        f"mon-exiting: {len(run.reports)} reports ({run.awol} AWOL) from {len(run.checkpoint)} sources;"
        f" monitor: changed={totals['changed']} unchanged={totals['unchanged']} unknown={totals['unknown']}"
    )
    return run
