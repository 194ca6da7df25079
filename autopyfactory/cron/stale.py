"""``mon-stale``: pilots idle or running too long, flagged at the monitor (and maybe removed).

Every backend lists its pilots idle longer than ``staleIdle`` or running longer than
``staleRunning``; they are reported as ``flag`` (the monitor keeps their state and flags them;
its expiry makes a job flagged for a day FAULT, unless the pilot reports). With
``staleRemove = true`` the oldest of them, at most ``staleRemoveMax`` per run over all backends,
are also removed by their backend (HTCondor: condor_rm with a reason).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from autopyfactory.batch.interface import Backend, StalePilot
from autopyfactory.config import loader as config
from autopyfactory.cron.common import Report, ReportError, send
from autopyfactory.domain.model import JobStatus
from autopyfactory.edges.monitor import MonitorClient, MonitorError

REMOVE_REASON = "autopyfactory mon-stale: stale pilot"

#: A stale pilot and the name of the backend that has it.
Found = tuple[str, StalePilot]


def stale_pilots(
    loaded: config.FactoryConfig, backends: Mapping[str, Backend], now: float, problems: list[str]
) -> list[Found]:
    """Idle > staleIdle or running > staleRunning, oldest first; what could not be read in ``problems``."""
    f = loaded.factory
    limits = {JobStatus.IDLE: f.cron.stale_idle, JobStatus.RUNNING: f.cron.stale_running}
    found: list[Found] = []
    for name, backend in backends.items():
        stale = backend.stale(now, limits)
        found += [(name, pilot) for pilot in stale.pilots]
        problems += stale.problems
    return sorted(found, key=lambda item: (-item[1].age, item[1].job_id))


def remove_stale(backends: Mapping[str, Backend], stale: Sequence[Found], problems: list[str]) -> set[str]:
    """Each backend removes its part of ``stale``; the ids removed."""
    by_backend: dict[str, list[StalePilot]] = {}
    for name, pilot in stale:
        by_backend.setdefault(name, []).append(pilot)
    removed: set[str] = set()
    for name, pilots in by_backend.items():
        removal = backends[name].remove_stale(pilots, REMOVE_REASON)
        removed |= removal.removed
        problems += removal.problems
    return removed


def mon_stale(
    loaded: config.FactoryConfig, client: MonitorClient, backends: Mapping[str, Backend], now: float
) -> list[str]:
    """One run; returns the problems met (unreadable sources, failed removals)."""
    f = loaded.factory
    problems: list[str] = []
    stale = stale_pilots(loaded, backends, now, problems)
    removed = (
        remove_stale(backends, stale[: f.cron.stale_remove_max], problems) if f.cron.stale_remove else set()
    )
    reports = [
        Report(
            pilot.job_id,
            "flag",
            None,
            f"stale: {pilot.what}" + (", removed" if pilot.job_id in removed else ""),
        )
        for _, pilot in stale
    ]
    summary = (
        f"mon-stale: {len(stale)} stale pilots, {len(removed)} removed (staleRemove={f.cron.stale_remove},"
        f" at most {f.cron.stale_remove_max}); monitor: "
    )
    try:
        totals = send(client, reports)
    except (MonitorError, ReportError) as exc:
        if not removed:
            raise  # nothing done: "nothing was advanced" is true
        print(summary + "not told")
        ids = ", ".join(sorted(removed))
        problems.append(
            f"removed {len(removed)} stale pilot{'s' if len(removed) != 1 else ''} ({ids}) but could not"
            f" tell the monitor: {exc}; mon-exiting reports them from the batch history once it is back"
        )
        return problems
    print(
        summary + f"flagged={totals['changed']} unchanged={totals['unchanged']} unknown={totals['unknown']}"
    )
    return problems
