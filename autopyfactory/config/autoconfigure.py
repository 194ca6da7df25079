"""Autoconfiguration: from a queue section and its schedconfig record to labels.

A label is one PanDA queue x one usable CE queue (``ce_state`` ACTIVE, ``ce_status`` production,
a known flavour), named ``<section>-<ce host>[-<ce queue>]``. Settings resolve with the
precedence built-in default < [QueueDefaults] < schedconfig < the queue's own section, and each
label keeps where every value came from (``autopyfactory check`` prints it).
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from autopyfactory.config import schema
from autopyfactory.config.loader import FactoryConfig, QueueConfig
from autopyfactory.config.schema import Scope
from autopyfactory.config.selection import Selected, select
from autopyfactory.domain.housekeeping import HousekeepingSettings
from autopyfactory.domain.job_labels import counted_job_labels, default_job_label, pilots_take, untakeable
from autopyfactory.domain.label import (
    CE,
    GRID_FLAVOURS,
    HIMEM_MB_PER_CORE,
    Label,
    LabelSet,
    PilotSettings,
    QueueLimits,
    Resources,
    Setting,
    Source,
    SubmitSettings,
    retired,
)
from autopyfactory.domain.model import QueueStatus
from autopyfactory.domain.names import label_name, label_problem
from autopyfactory.domain.policy import STEPS
from autopyfactory.edges.schedconfig import Dump, Record

log = logging.getLogger(__name__)


#: For these schedconfig fields 0 means "not set", as in CRIC.
ZERO_IS_UNSET = frozenset({"corecount", "maxrss", "maxtime", "maxwdir"})


class LabelError(Exception):
    """A queue that cannot be served this time (reported, the queue skipped)."""


def resolve(queue: QueueConfig, record: Record | None) -> tuple[dict[str, Setting], list[str]]:
    """The queue's settings with schedconfig applied, and warnings about unusable record fields."""
    resolved = dict(queue.defaults)
    warnings: list[str] = []
    for option in schema.options(Scope.QUEUE):
        field = option.schedconfig
        if record is None or field is None or record.get(field) in (None, ""):
            continue
        if option.key in queue.local:  # the queue's own section wins; schedconfig's value is moot
            continue
        raw = record[field]
        if field in ZERO_IS_UNSET and raw == 0:
            continue
        try:
            value = option.parse(str(raw).lower() if isinstance(raw, bool) else str(raw))
        except ValueError as exc:
            if option.key == "status":  # never guess a status: an unknown one must not mean online
                raise LabelError(f"schedconfig {queue.pq}.status={raw!r}: {exc}") from None
            warnings.append(f"schedconfig {queue.pq}.{field}={raw!r} ignored: {exc}")
            continue
        resolved[option.key] = Setting(value, Source.SCHEDCONFIG, f"schedconfig {queue.pq}.{field}")
    resolved.update(queue.local)
    return resolved, warnings


def ce_entries(record: Record) -> list[Any]:
    """The record's ``queues`` list (empty when absent); LabelError when it is not a list, so that
    one malformed record skips its own queue only."""
    entries = record.get("queues")
    if entries is None:
        return []
    if not isinstance(entries, list):
        name = record.get("nickname") or record.get("name") or "?"
        shown = f"{type(entries).__name__} {str(entries)[:60]!r}"
        raise LabelError(f"schedconfig {name}.queues is {shown}, not a list of CE queues")
    return entries


def usable_ces(record: Record) -> tuple[list[CE], list[str]]:
    """The record's usable CE queues, and why each other one was skipped (one bad entry skips
    that CE only). LabelError if ``queues`` is not a list."""
    ces: list[CE] = []
    skipped: list[str] = []
    for entry in ce_entries(record):
        if not isinstance(entry, dict):
            skipped.append(f"CE entry {entry!r} is not an object")
            continue
        why = _unusable(entry)
        if why:
            skipped.append(f"{entry.get('ce_endpoint') or '?'}: {why}")
            continue
        try:
            host, port = split_endpoint(str(entry["ce_endpoint"]))
        except LabelError as exc:
            skipped.append(str(exc))
            continue
        flavour = str(entry["ce_flavour"]).upper()
        queue_name, jobmanager = str(entry.get("ce_queue_name") or ""), str(entry.get("ce_jobmanager") or "")
        ce = CE(flavour, host, port, queue_name, jobmanager)
        if any(c.host == ce.host and c.queue == ce.queue for c in ces):
            skipped.append(f"{entry['ce_endpoint']}: listed twice for queue {ce.queue!r}")
            continue
        ces.append(ce)
    return ces, skipped


def _unusable(entry: Mapping[str, Any]) -> str:
    if str(entry.get("ce_state", "")).upper() != "ACTIVE":
        return f"ce_state={entry.get('ce_state')!r}"
    if str(entry.get("ce_status", "")).lower() != "production":
        return f"ce_status={entry.get('ce_status')!r}"
    if str(entry.get("ce_flavour", "")).upper() not in GRID_FLAVOURS:
        return f"unknown ce_flavour {entry.get('ce_flavour')!r}"
    if retired(str(entry["ce_flavour"])):
        return retired(str(entry["ce_flavour"]))
    if not entry.get("ce_endpoint"):
        return "no ce_endpoint"
    return ""


def split_endpoint(endpoint: str) -> tuple[str, int | None]:
    """``host:port`` -> (host, port); a bare host has no port."""
    host, _, port = endpoint.strip().partition(":")
    if port and not port.isdigit():
        raise LabelError(f"bad CE endpoint {endpoint!r}")
    return host, int(port) if port else None


def labels_for_queue(queue: QueueConfig, dump: Dump | None, warnings: list[str]) -> list[Label]:
    """All labels of one queue section. Raises LabelError if the queue cannot be served."""
    record: Record | None = None
    if queue.get("autoconfigure"):
        if dump is None:
            raise LabelError("schedconfig is not available")
        record = dump.get(queue.pq)
        if record is None:
            raise LabelError(f"PanDA queue {queue.pq!r} is not in schedconfig{did_you_mean(queue.pq, dump)}")
    settings, problems = resolve(queue, record)
    warnings.extend(f"[{queue.name}] {p}" for p in problems)
    ces = _ces_for(queue, settings, record, warnings)
    types = resource_types_for(settings, record, warnings, queue.name)
    limits = queue_limits(record, warnings, queue.name)
    labels = [_label(queue, settings, ce, record) for ce in ces]
    jobs = job_labels_for(settings, labels[0]) if labels else ()
    if not types:
        return [replace(label, job_labels=jobs, limits=limits) for label in labels]
    return [typed_label(label, rt, jobs, limits) for label in labels for rt in types]


def did_you_mean(name: str, names: Iterable[str]) -> str:
    """`` (did you mean 'NDGF-T1'?)`` for the closest of ``names`` (ignoring case), or ""."""
    by_lower = {candidate.lower(): candidate for candidate in names}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.8)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""


# --- demand per resource type ---------------------------------------------------------------------


def is_unified(record: Record | None) -> bool:
    """A unified queue runs every resource type (CRIC ``type: unified`` or ``capability: ucore``)."""
    return record is not None and (record.get("type") == "unified" or record.get("capability") == "ucore")


def runnable_types(corecount: int, maxrss: int) -> list[str]:
    """The resource types PanDA brokers to a queue of this size (its resource_types table):
    multi-core ones need more than one core, high-memory ones more than 2000 MB per core."""
    himem = maxrss > HIMEM_MB_PER_CORE * max(1, corecount)
    types = ["SCORE"] + (["SCORE_HIMEM"] if himem else [])
    if corecount > 1:
        types += ["MCORE"] + (["MCORE_HIMEM"] if himem else [])
    return types


def resource_types_for(
    settings: Mapping[str, Setting], record: Record | None, warnings: list[str], queue: str
) -> list[str]:
    """The resource types of a queue's labels; empty: one label per CE counting every job."""
    wanted = _strings(settings["resourceTypes"].value)
    runnable = runnable_types(int(str(settings["corecount"].value)), int(str(settings["maxrss"].value)))
    if wanted == ("auto",):
        return runnable if is_unified(record) else []
    for rt in wanted:
        if rt not in runnable:
            warnings.append(
                f"[{queue}] resource type {rt} skipped: the queue runs only {', '.join(runnable)}"
            )
    types = [rt for rt in wanted if rt in runnable]
    if wanted and not types:
        raise LabelError(f"none of resourceTypes {', '.join(wanted)} runs here (only {', '.join(runnable)})")
    return types


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, tuple) else ()


def size_for(rt: str, resources: Resources) -> Resources:
    """Cores and memory of a pilot for one resource type, from the queue's corecount and maxrss.

    As PanDA sizes a unified queue's per-type child queues (SiteMapper.get_child_site_spec) and
    Harvester its workers (ResourceTypeMapper.calculate_worker_requirements): single-core types get
    1 core, multi-core ones the queue's corecount; memory is the queue's per-core memory times the
    cores, capped at 2000 MB per core for the types that are not high-memory.
    """
    corecount = max(1, resources.corecount)
    cores = 1 if rt.startswith("SCORE") else corecount
    memory = resources.maxrss * cores / corecount
    if not rt.endswith("_HIMEM"):
        memory = min(memory, HIMEM_MB_PER_CORE * cores)
    return replace(resources, corecount=cores, maxrss=math.ceil(memory))


def typed_label_name(name: str, rt: str) -> str:
    """The name of the label of resource type ``rt`` made from the label ``name``: the one rule for
    the factory (:func:`typed_label`) and the cron helpers (:func:`possible_label_names`)."""
    return safe_name(f"{name}-{rt}")


def typed_label(label: Label, rt: str, job_labels: tuple[str, ...], limits: QueueLimits) -> Label:
    return replace(
        label,
        name=typed_label_name(label.name, rt),
        resources=size_for(rt, label.resources),
        resource_type=rt,
        job_labels=job_labels,
        limits=limits,
    )


def job_labels_for(settings: Mapping[str, Setting], label: Label) -> tuple[str, ...]:
    """The job labels whose jobs the label counts: those its pilots can take (their ``-j`` and
    ``-i`` at the queue's status, domain/job_labels.py), narrowed to ``demandJobLabels`` when set.
    LabelError when ``demandJobLabels`` names a job label the pilots cannot take: counting its
    jobs would send pilots that find nothing."""
    narrowed = _strings(settings["demandJobLabels"].value)
    pilot = label.pilot
    refused = untakeable(pilot.job_label, pilot.pilot_type, narrowed)
    if refused:
        taken = ", ".join(pilots_take(pilot.job_label, pilot.pilot_type, QueueStatus.ONLINE))
        raise LabelError(
            f"demandJobLabels {', '.join(refused)} ({settings['demandJobLabels'].origin}): the pilots"
            f" (jobLabel {pilot.job_label}, pilotType {pilot.pilot_type}) cannot take those jobs;"
            f" they take {taken}"
        )
    return counted_job_labels(pilot.job_label, pilot.pilot_type, label.status, narrowed)


def pilot_job_label(value: Mapping[str, Any], record: Record | None) -> str:
    """``jobLabel``, else what the queue's pilots should ask for: by pilot type, and for PR pilots
    by what the queue runs (domain/job_labels.py, default_job_label)."""
    if value["jobLabel"]:
        return str(value["jobLabel"])
    queue_type = str((record or {}).get("type") or "")
    catchall = str((record or {}).get("catchall") or "")
    return default_job_label(str(value["pilotType"]), queue_type, catchall)


def queue_limits(record: Record | None, warnings: list[str], queue: str) -> QueueLimits:
    """The caps in the record's ``params`` (flat ``resource_type_limits.X`` keys, as CRIC has them)."""
    params = (record or {}).get("params")
    if not isinstance(params, dict):
        return QueueLimits()
    flat = dict(params)
    nested = params.get("resource_type_limits")
    if isinstance(nested, dict):
        flat.update({f"resource_type_limits.{k}": v for k, v in nested.items()})

    def count(key: str) -> int | None:
        value = flat.get(key)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        warnings.append(f"[{queue}] schedconfig params.{key}={value!r} ignored: not a count")
        return None

    type_limits = {
        key.split(".", 1)[1]: n
        for key in sorted(flat)
        if key.startswith("resource_type_limits.") and (n := count(key)) is not None
    }
    new = count("maxNewWorkersPerCycle")
    return QueueLimits(type_limits, new if new else None, count("nQueueLimitWorker"))


def _ces_for(
    queue: QueueConfig, settings: Mapping[str, Setting], record: Record | None, warnings: list[str]
) -> list[CE]:
    if settings["batch"].value == "local":
        return [LOCAL_CE]
    if record is None:
        why = retired(str(settings["ceFlavour"].value))
        if why:
            raise LabelError(f"ceFlavour: {why}")
        host, port = split_endpoint(str(settings["ceEndpoint"].value or "localhost"))
        return [CE(str(settings["ceFlavour"].value), host, port, str(settings["ceQueue"].value))]
    ces, skipped = usable_ces(record)
    warnings.extend(f"[{queue.name}] CE skipped: {why}" for why in skipped)
    if not ces:
        raise LabelError(f"PanDA queue {queue.pq!r} has no usable CE ({len(skipped)} skipped)")
    return ces


#: The one CE of a ``batch = local`` queue.
LOCAL_CE = CE("LOCAL", "localhost", None, "")


def label_name_for(section: str, ce: CE) -> str:
    """``<section>-<ce host>[-<ce queue>]``, with ``local`` for the host of a LOCAL CE on localhost
    (every ``batch = local`` queue); a label of one resource type appends ``-<type>``
    (:func:`typed_label`). The one rule: the factory names its labels with it (unless the section
    names its one label, ``labelName``), and the cron helpers tell from it which labels a queue
    can have."""
    suffix = "local" if ce.flavour == "LOCAL" and ce.host == "localhost" else ce.host
    return safe_name(f"{section}-{suffix}" + (f"-{ce.queue}" if ce.queue else ""))


def possible_label_names(queue: QueueConfig) -> frozenset[str]:
    """The names the labels of ``queue`` can have, as far as its section alone tells: when its CE
    does not come from schedconfig (``batch = local``, or ``autoconfigure = false``), the name
    without a resource type and one per resource type (which of them the factory makes depends on
    ``resourceTypes`` and, for ``auto``, on schedconfig). Empty when schedconfig lists the CEs.
    For the cron helpers, which read no schedconfig."""
    settings, _ = resolve(queue, None)
    if queue.get("autoconfigure") and settings["batch"].value != "local":
        return frozenset()
    try:
        ces = _ces_for(queue, settings, None, [])
    except LabelError:
        return frozenset()
    names = [str(settings["labelName"].value) or label_name_for(queue.name, ce) for ce in ces]
    return frozenset(
        name if not rt else typed_label_name(name, rt)
        for name in names
        for rt in ("", *schema.RESOURCE_TYPE_NAMES)
    )


def _label(queue: QueueConfig, settings: Mapping[str, Setting], ce: CE, record: Record | None) -> Label:
    value: dict[str, Any] = {key: s.value for key, s in settings.items()}
    return Label(
        name=str(value["labelName"]) or label_name_for(queue.name, ce),
        queue=queue.name,
        pq=queue.pq,
        siteid=str(value["siteid"] or queue.pq),
        status=QueueStatus.from_schedconfig(str(value["status"])),
        cloud=str(value["cloud"]),
        batch=str(value["batch"]),
        ce=ce,
        resources=_resources(value, ce, record, settings),
        policy=STEPS.settings(value),
        submit=_submit(value),
        housekeeping=_housekeeping(value),
        log_keep_days=int(value["logKeepDays"]),
        settings=settings,
        pilot=PilotSettings(
            user=str(value["pilotUser"]),
            job_label=pilot_job_label(value, record),
            pilot_type=str(value["pilotType"]),
            version=str(value["pilotVersion"]),
            url=str(value["pilotURL"]),
            extra_args=str(value["pilotExtraArgs"]),
        ),
    )


def _resources(
    value: Mapping[str, Any], ce: CE, record: Record | None, settings: Mapping[str, Setting]
) -> Resources:
    maxtime = int(value["maxtime"])
    ce_limit = _ce_wallclock_limit(record, ce)
    if ce_limit and settings["maxtime"].source is not Source.LOCAL:
        maxtime = min(maxtime, ce_limit)
    return Resources(
        corecount=int(value["corecount"]),
        maxrss=int(value["maxrss"]),
        maxtime=maxtime,
        maxwdir=int(value["maxwdir"]),
        environ=parse_environ(str(value["environ"])),
    )


def _ce_wallclock_limit(record: Record | None, ce: CE) -> int:
    """The CE queue's own wall-clock limit in seconds (CRIC ``ce_queue_maxwctime``, minutes; 0 = unset)."""
    for entry in ce_entries(record or {}):
        if (
            isinstance(entry, dict)
            and str(entry.get("ce_endpoint", "")).strip().partition(":")[0] == ce.host
            and str(entry.get("ce_queue_name") or "") == ce.queue
        ):
            minutes = entry.get("ce_queue_maxwctime")
            return int(minutes) * 60 if isinstance(minutes, int) and minutes > 0 else 0
    return 0


def safe_name(name: str) -> str:
    """A label name usable as a directory, a URL path part and a monitor label (:mod:`names`)."""
    return label_name(name)


def parse_environ(text: str) -> tuple[tuple[str, str], ...]:
    """``A=1 B=two`` -> (("A", "1"), ("B", "two")); words without ``=`` are ignored."""
    pairs = []
    for word in text.split():
        name, sep, val = word.partition("=")
        if sep and name:
            pairs.append((name, val))
    return tuple(pairs)


def _submit(value: Mapping[str, Any]) -> SubmitSettings:
    return SubmitSettings(
        executable=str(value["executable"]),
        arguments=str(value["arguments"]),
        x509userproxy=str(value["x509userproxy"]),
        scitokens_file=str(value["scitokensFile"]),
        schedd=str(value["condorSchedd"]),
        pool=str(value["condorPool"]),
        hold_idle_after=int(value["holdIdleAfter"]),
        hold_rerun=bool(value["holdRerun"]),
        remove_held_after=int(value["removeHeldAfter"]),
        remove_idle_after=int(value["removeIdleAfter"]),
        remove_running_after=int(value["removeRunningAfter"]),
        site_attributes=tuple(value["submitAttributes"]),
    )


def _housekeeping(value: Mapping[str, Any]) -> HousekeepingSettings:
    return HousekeepingSettings(
        recoverable_codes=frozenset(value["holdRecoverableCodes"]),
        recoverable_reasons=tuple(value["holdRecoverableReasons"]),
        max_releases=int(value["holdMaxReleases"]),
        release_backoff=int(value["holdReleaseBackoff"]),
        hold_timeout=int(value["holdTimeout"]),
        idle_timeout=int(value["idleTimeout"]),
        max_actions=int(value["maxActionsPerCycle"]),
    )


def build_labels(config: FactoryConfig, dump: Dump | None) -> LabelSet:
    """Labels for every enabled queue (the sections and the PanDA queues ``queues = cric: ...``
    selects); a queue that cannot be served is reported and skipped."""
    labels: list[Label] = []
    problems = [str(error) for error in config.errors]
    warnings: list[str] = []
    selected, problem = selected_queues(config, dump)
    if problem:
        problems.append(problem)
    for queue in (*config.queues, *selected):
        if not queue.get("enabled"):
            continue
        warnings.extend(_foreign_pilot_manager(queue, dump))
        try:
            labels.extend(labels_for_queue(queue, dump, warnings))
        except (LabelError, ValueError) as exc:
            problems.append(f"[{queue.name}] skipped: {exc}")
        except (TypeError, KeyError, AttributeError) as exc:  # a record shaped as nobody expected
            why = f"{type(exc).__name__}: {exc}"
            problems.append(f"[{queue.name}] skipped: malformed schedconfig record: {why}")
    return LabelSet(tuple(_unique_valid(labels, problems)), tuple(problems), tuple(warnings))


# --- queues selected from CRIC ----------------------------------------------------------------


def section_pqs(config: FactoryConfig) -> frozenset[str]:
    """The PanDA queues that have a queue section: those of the sections, and, for a section
    disabled by an error in it, its name (the section wins even then)."""
    return frozenset({q.pq for q in config.queues} | {e.section for e in config.errors if e.section})


def selection_of(config: FactoryConfig, dump: Dump | None) -> Selected | None:
    """What ``queues = cric: ...`` selects from ``dump`` (None: no selection, or no dump)."""
    selection = config.factory.identity.queue_selection
    if selection is None or dump is None:
        return None
    return select(selection, dump, section_pqs(config))


def selected_queues(config: FactoryConfig, dump: Dump | None) -> tuple[list[QueueConfig], str]:
    """An empty queue section per selected PanDA queue, and why there are none ("" if no problem)."""
    selection = config.factory.identity.queue_selection
    if selection is None:
        return [], ""
    if dump is None:
        return [], f"queues = {selection}: schedconfig is not available, no queue selected"
    chosen = select(selection, dump, section_pqs(config))
    if chosen.problem:
        return [], f"queues = {selection}: {chosen.problem}"
    where = f"{config.path} [Factory] queues"
    return [QueueConfig(pq, where, 0, config.queue_defaults, {}) for pq in chosen.chosen], ""


#: CRIC's ``pilot_manager`` for queues that this factory (APF) fills.
OUR_PILOT_MANAGER = "apf"


def _foreign_pilot_manager(queue: QueueConfig, dump: Dump | None) -> list[str]:
    """A warning when CRIC says another system (Harvester, ...) sends the queue's pilots: both
    would fill the same activated jobs, each unaware of the other's pilots."""
    record = dump.get(queue.pq) if dump is not None else None
    manager = str((record or {}).get("pilot_manager") or "").strip()
    if not manager or manager.lower() == OUR_PILOT_MANAGER:
        return []
    return [
        f"[{queue.name}] CRIC says pilot_manager={manager} for PanDA queue {queue.pq}: that system fills"
        f" it too, and two factories would send pilots for the same jobs (have CRIC say"
        f" pilot_manager=APF first, or leave the queue to that system)"
    ]


def _unique_valid(labels: list[Label], problems: list[str]) -> list[Label]:
    """The labels whose names the monitor accepts and no earlier label took (two CE queues whose
    names differ only in characters made ``_`` would otherwise share state and pilots)."""
    kept: dict[str, Label] = {}
    for label in labels:
        why = label_problem(label.name)
        if why is not None:
            problems.append(f"[{label.queue}] label {label.name!r} skipped: invalid name ({why})")
        elif label.name in kept:
            first = kept[label.name]
            problems.append(
                f"[{label.queue}] label {label.name!r} (CE {label.ce.endpoint} queue {label.ce.queue or '-'})"
                f" skipped: the name is already used by [{first.queue}] (CE {first.ce.endpoint}"
                f" queue {first.ce.queue or '-'})"
            )
        else:
            kept[label.name] = label
    return list(kept.values())
