"""A label and its parts: the unit the factory decides for.

A label is one PanDA queue (PQ) x one CE queue. This module holds it as plain data: its CE, the
pilots' resources, the submit and pilot settings, the PQ's CRIC caps and where each setting came
from. ``config/autoconfigure.py`` builds labels from factory.conf and the CRIC records.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from autopyfactory.domain.housekeeping import HousekeepingSettings
from autopyfactory.domain.model import QueueStatus
from autopyfactory.domain.policy import PolicySettings

GRID_FLAVOURS = frozenset({"HTCONDOR-CE", "ARC-CE", "CREAM-CE", "OSG-CE", "LCG-CE"})


#: Flavours HTCondor can no longer submit to (its grid types since 24: condor, batch, arc, ec2,
#: gce, azure): such a CE gets no label, so no share of its queue's activated jobs.
RETIRED_FLAVOURS: Mapping[str, str] = {"CREAM-CE": "cream", "OSG-CE": "gt2", "LCG-CE": "gt2"}


def retired(flavour: str) -> str:
    """Why a CE of ``flavour`` cannot be used, or "" when it can."""
    grid_type = RETIRED_FLAVOURS.get(flavour.upper())
    if not grid_type:
        return ""
    return f"{flavour.upper()} is not supported: HTCondor (24 and later) has no '{grid_type}' grid type"


@dataclass(frozen=True)
class CE:
    flavour: str  # one of GRID_FLAVOURS or LOCAL
    host: str
    port: int | None
    queue: str
    jobmanager: str = ""  # the CE's batch system (CRIC ce_jobmanager); informational

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host


@dataclass(frozen=True)
class Resources:
    corecount: int
    maxrss: int  # MB
    maxtime: int  # seconds
    maxwdir: int  # MB
    environ: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SubmitSettings:
    executable: str
    arguments: str
    x509userproxy: str
    scitokens_file: str
    schedd: str
    pool: str
    hold_idle_after: int
    hold_rerun: bool
    remove_held_after: int
    remove_idle_after: int
    remove_running_after: int
    #: The site's own submit commands (``submitAttributes``), (key, value) in the order written.
    site_attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class QueueLimits:
    """CRIC ``params`` of a PQ that cap pilots across all its labels (Harvester's names).

    ``resource_type_limits.<TYPE>``: pilots of that type in the batch system, all states;
    ``maxNewWorkersPerCycle`` (> 0): new pilots per cycle; ``nQueueLimitWorker``: pending pilots.
    """

    resource_type_limits: Mapping[str, int] = field(default_factory=dict)
    max_new_per_cycle: int | None = None
    queue_limit: int | None = None


#: PanDA's split between normal and high memory, MB per core (ResourceSpec.HIMEM_THRESHOLD).
HIMEM_MB_PER_CORE = 2000


@dataclass(frozen=True)
class PilotSettings:
    """What the pilot is told beyond the queue: pilot 3's options and the wrapper's pilot source."""

    user: str = "ATLAS"  # pilot 3 --pilot-user
    job_label: str = "managed"  # pilot 3 -j: the job label it asks PanDA for (see domain/job_labels.py)
    pilot_type: str = "PR"  # pilot 3 -i (PR, RC, PT, ALRB)
    version: str = ""  # wrapper --pilotversion
    url: str = ""  # wrapper --piloturl
    extra_args: str = ""  # more pilot.py arguments, shell-like words


@dataclass(frozen=True)
class Label:
    name: str
    queue: str  # the config section
    pq: str  # PanDA queue name (statistics are keyed by it)
    siteid: str
    status: QueueStatus
    cloud: str
    batch: str
    ce: CE
    resources: Resources
    policy: PolicySettings
    submit: SubmitSettings
    housekeeping: HousekeepingSettings
    log_keep_days: int
    settings: Mapping[str, Setting]
    #: PanDA resource type (SCORE, MCORE, SCORE_HIMEM, MCORE_HIMEM) whose jobs this label counts and
    #: whose pilots it sends (``--resource-type``); None: every job, no type asked for
    resource_type: str | None = None
    #: the job labels (prodSourceLabels) whose jobs this label counts: those its pilots can take
    #: (domain/job_labels.py), narrowed by ``demandJobLabels``; empty: none (it counts no job)
    job_labels: tuple[str, ...] = ()
    limits: QueueLimits = QueueLimits()  # the PQ's CRIC caps shared by all its labels
    pilot: PilotSettings = PilotSettings()


def needs_detailed_statistics(labels: Iterable[Label]) -> bool:
    """Whether some label counts only some resource types or job labels: PanDA's per-site
    statistics cannot tell those jobs apart, the detailed ones (per resource type and job label) can."""
    return any(label.resource_type or label.job_labels for label in labels)


@dataclass(frozen=True)
class LabelSet:
    labels: tuple[Label, ...]
    problems: tuple[str, ...]  # queues skipped this time, with the reason
    warnings: tuple[str, ...]  # things worth knowing that did not stop a queue


@dataclass(frozen=True)
class LabelReading:
    """A cycle's labels, and why schedconfig could not be had ("" when it could; the labels are
    then those that need no schedconfig)."""

    label_set: LabelSet
    schedconfig_problem: str = ""


class Source(enum.StrEnum):
    """Where a setting's value came from, lowest precedence first."""

    DEFAULT = "default"
    QUEUE_DEFAULTS = "QueueDefaults"
    SCHEDCONFIG = "schedconfig"
    LOCAL = "local"


@dataclass(frozen=True)
class Setting:
    value: object
    source: Source
    origin: str  # "factory.conf:12", "schedconfig CERN.maxrss" or "built-in"
