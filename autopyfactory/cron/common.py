"""What the cron helpers share: reports in the monitor's terms, sending them, the backends.

Both helpers report with ``POST <monitorURL>/factories/<factoryId>/jobs`` through the one monitor
client (edges/monitor.py), in chunks; a report the monitor already has changes nothing, so both
commands are idempotent. They ask the batch backends the factory itself would build from the same
factory.conf (batch/backends.py) that its queue sections use or mon-exiting has read before,
each about its own pilots, and never branch on which backend is which.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from autopyfactory.batch.backends import build_backends
from autopyfactory.batch.interface import Backend, End, EndedPilot
from autopyfactory.config import loader as config
from autopyfactory.edges.monitor import MonitorClient

log = logging.getLogger(__name__)

#: Reports per request.
SEND_CHUNK = 1000
#: How often the reports the monitor asks to retry (another request changed the job meanwhile)
#: are sent again in one run.
SEND_ATTEMPTS = 3


class ReportError(Exception):
    """The run cannot complete; nothing advanced."""


#: The wrapper's exit codes that say its pilot ran and asked PanDA for a job (docs/wrapper.md):
#: 0 it ran PanDA job(s), 20 there was none for it, 119 PanDA refused its getJob. A completed
#: pilot the monitor never heard of (all its wrapper's reports lost in a monitor outage) with
#: one of these is DONE; with any other code (the wrapper failed before the pilot ran, a pilot
#: error, a signal) or none it is a FAULT.
PILOT_RAN = frozenset({0, 20, 119})


@dataclass(frozen=True)
class Report:
    """One pilot's state as the batch system sees it, in the monitor's terms; ``ran``: its exit
    code says the pilot ran (see :data:`PILOT_RAN`)."""

    cid: str
    state: str  # done, exiting, fault, removed, flag
    rc: int | None = None
    reason: str = ""
    ran: bool = False

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"cid": self.cid, "state": self.state, "reason": self.reason[:256]}
        return body | ({"rc": self.rc} if self.rc is not None else {}) | ({"ran": True} if self.ran else {})


def report_of(pilot: EndedPilot) -> Report:
    """Completed: ``done`` with its exit code, which tells the monitor whether the pilot ran when
    the monitor has no report of its wrapper; removed on an operator's request (``pilots
    remove``): ``removed``, which the monitor keeps apart from faults; otherwise removed or lost:
    ``fault``."""
    if pilot.end is End.WITHDRAWN:
        return Report(pilot.job_id, "removed", pilot.rc, pilot.reason)
    if pilot.end is not End.COMPLETED:
        return Report(pilot.job_id, "fault", pilot.rc, pilot.reason)
    return Report(pilot.job_id, "done", pilot.rc, pilot.reason, ran=pilot.rc in PILOT_RAN)


def backends_of(loaded: config.FactoryConfig, checkpointed: Collection[str] = ()) -> dict[str, Backend]:
    """The batch backends the factory's queue sections use (their ``batch``), and those with a
    source in ``checkpointed`` (the sources mon-exiting has read before), by name, built as the
    factory builds them. A backend neither used nor read before is not asked: a factory of
    ``batch = local`` queues alone has no HTCondor to ask, and its helpers must not fail every
    run for that. A backend read before is asked even when no queue uses it any more: the pilots
    a queue left there when it moved to another backend still end, and must be reported. Queues
    chosen from CRIC (``queues = cric: ...``) have no section: they take [QueueDefaults]' backend."""
    used = {str(queue.get("batch")) for queue in loaded.queues}
    if loaded.factory.identity.queue_selection is not None:
        used.add(str(loaded.queue_defaults["batch"].value))
    return {
        name: backend
        for name, backend in build_backends(loaded.factory, loaded.queues).items()
        if name in used or not set(backend.sources()).isdisjoint(checkpointed)
    }


def send(client: MonitorClient, reports: Sequence[Report]) -> dict[str, int]:
    """Send the reports in chunks; the monitor's counts (changed, unchanged, unknown) summed.
    MonitorError when the monitor cannot be reached or refuses."""
    totals = {"changed": 0, "unchanged": 0, "unknown": 0}
    for start in range(0, len(reports), SEND_CHUNK):
        chunk = reports[start : start + SEND_CHUNK]
        for _attempt in range(SEND_ATTEMPTS):
            answer = client.report_jobs([report.body() for report in chunk])
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
