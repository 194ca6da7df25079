"""``autopyfactory check``: the go-live gate.

The configuration, schedconfig, and what the rules in ``preflight.py`` judge (credentials, the
wrapper, placeholders, the monitor URL; with ``--online`` PanDA, CRIC and the monitor too): one
line per label (``-v``: every setting and where it came from), then the findings; exit 1 on any
error. ``--config-only`` answers what a reload (SIGHUP) would do with the configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from autopyfactory.cli import preflight
from autopyfactory.cli.command import EXIT_ERROR, EXIT_OK, Commands, add_config_option
from autopyfactory.config import loader as config
from autopyfactory.config.autoconfigure import build_labels, selection_of
from autopyfactory.config.selection import Selected
from autopyfactory.domain.label import Label
from autopyfactory.domain.model import plural
from autopyfactory.edges.credentials import voms_actimeleft
from autopyfactory.edges.schedconfig import SchedconfigError, SchedconfigSource
from autopyfactory.runtime.service import http_session


def register(commands: Commands) -> None:
    check = commands.add_parser(
        "check",
        help="the go-live gate: configuration, schedconfig, credentials, wrapper, placeholders;"
        " one line per label (-v: every setting and where it came from)",
    )
    add_config_option(check)
    check.add_argument("--schedconfig", help="use this dump (URL or path) instead of the configured one")
    check.add_argument(
        "--online", action="store_true", help="also ask PanDA, schedconfig and the monitor (token accepted?)"
    )
    check.add_argument("--json", action="store_true", help="print labels and findings as JSON")
    check.add_argument(
        "--config-only",
        action="store_true",
        help="only read factory.conf and queuesDir, as a reload does (exit 1 on any error)",
    )


def run(args: argparse.Namespace) -> int:
    loaded = config.load(args.config)
    if args.config_only:
        return check_config_only(loaded)
    f = loaded.factory
    location = args.schedconfig or f.schedconfig.location
    session = http_session(f.http)
    source = SchedconfigSource(
        location, f.schedconfig_cache_path, 0, session, f.http.timeout, time.time, keep_copy=False
    )
    try:
        snapshot = source.get()
        dump, origin = snapshot.data, snapshot.source
        schedconfig = f"{len(dump)} queues from {origin}"
    except SchedconfigError as exc:
        dump, origin, schedconfig = None, "", str(exc)
    result = build_labels(loaded, dump)
    selected = selection_of(loaded, dump)
    findings = [
        *(preflight.Finding(preflight.ERROR, problem) for problem in result.problems),
        *(preflight.Finding(preflight.WARNING, warning) for warning in result.warnings),
        *preflight.config_findings(loaded, result.labels, datetime.now(UTC), voms_actimeleft),
    ]
    if args.online:
        findings += preflight.online_findings(loaded, session, origin, location, result.labels)
    if args.json:
        answer = check_json(schedconfig, dump is not None, result.labels, findings)
        print(json.dumps(answer | {"selection": selection_json(selected)}, indent=1))
    else:
        print_check(schedconfig, selected.lines() if selected else [], result.labels, findings, args.verbose)
    failed = dump is None or any(finding.level == preflight.ERROR for finding in findings)
    return EXIT_ERROR if failed else EXIT_OK


def check_json(
    schedconfig: str, have_dump: bool, labels: Sequence[Label], findings: Sequence[preflight.Finding]
) -> dict[str, object]:
    return {
        "schedconfig": {"ok": have_dump, "message": schedconfig},
        "labels": [preflight.label_json(label) for label in labels],
        "findings": [finding.to_json() for finding in findings],
        "errors": sum(1 for finding in findings if finding.level == preflight.ERROR),
        "warnings": sum(1 for finding in findings if finding.level == preflight.WARNING),
    }


def selection_json(selected: Selected | None) -> dict[str, object] | None:
    """What ``queues = cric: ...`` selected (None without a selection or a dump)."""
    if selected is None:
        return None
    return {
        "queues": str(selected.selection),
        "selected": list(selected.chosen),
        "served_by_their_section": list(selected.by_section),
        "not_selected": dict(selected.rejected),
        "problem": selected.problem,
    }


def print_check(
    schedconfig: str,
    selection: Sequence[str],
    labels: Sequence[Label],
    findings: Sequence[preflight.Finding],
    verbose: bool,
) -> None:
    """The queue selection, one line per label (every setting with its provenance when verbose),
    then the findings."""
    print(f"schedconfig: {schedconfig}")
    for line in selection:
        print(line)
    for label in labels:
        if verbose:
            print_label(label)
        else:
            print(preflight.summary_line(label))
    levels = (preflight.OK, preflight.WARNING, preflight.ERROR)
    for level in levels:
        for finding in findings:
            if finding.level == level:
                print(f"{level}: {finding.message}")
    errors, warnings = (sum(1 for f in findings if f.level == level) for level in levels[2:0:-1])
    print(f"{plural(len(labels), 'label')}, {plural(errors, 'error')}, {plural(warnings, 'warning')}")


def check_config_only(loaded: config.FactoryConfig) -> int:
    """What a SIGHUP reload would do with this config: any error, a queue section's too, rejects it."""
    if loaded.errors:
        errors = "\n".join(str(error) for error in loaded.errors)
        print(f"configuration error:\n{errors}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{loaded.path}: configuration ok, {plural(len(loaded.queues), 'queue section')}")
    return EXIT_OK


def print_label(label: Label) -> None:
    r = label.resources
    print(
        f"\n[{label.name}]  PQ={label.pq} CE={label.ce.flavour} {label.ce.endpoint}"
        f" queue={label.ce.queue or '-'} status={label.status.value} batch={label.batch}"
    )
    print(
        f"  effective resources: corecount={r.corecount} maxrss={r.maxrss} MB maxtime={r.maxtime} s"
        f" (after the CE's own limit) maxwdir={r.maxwdir} MB"
    )
    print_demand(label)
    width = max(len(key) for key in label.settings)
    for key, setting in sorted(label.settings.items(), key=lambda item: item[0].lower()):
        where = "" if setting.origin == "built-in" else f"  ({setting.origin})"
        if key == "submitAttributes" and isinstance(setting.value, tuple) and setting.value:
            print(f"  {key:<{width}}  {setting.source.value:<13}  {len(setting.value)} commands{where}")
            for name, value in setting.value:  # one submit command per line, as the site wrote it
                print(f"  {'':<{width}}  {'':<13}    {name} = {value}")
            continue
        print(f"  {key:<{width}}  {setting.source.value:<13}  {preflight.show(setting.value)}{where}")


def print_demand(label: Label) -> None:
    """Which PanDA jobs count for the label, and the PQ's CRIC caps."""
    rt = label.resource_type or "any (counts every job)"
    sized = " (sized for it)" if label.resource_type else ""
    jobs = ", ".join(label.job_labels) or "none (the pilots take none of demandJobLabels now)"
    ask = f"-j {label.pilot.job_label} -i {label.pilot.pilot_type}"
    print(f"  demand: resource type {rt}{sized}, job labels {jobs} (pilots ask {ask})")
    limits = label.limits
    caps = [f"resource_type_limits.{t}={n}" for t, n in sorted(limits.resource_type_limits.items())]
    if limits.max_new_per_cycle is not None:
        caps.append(f"maxNewWorkersPerCycle={limits.max_new_per_cycle}")
    if limits.queue_limit is not None:
        caps.append(f"nQueueLimitWorker={limits.queue_limit}")
    if caps:
        print(f"  CRIC caps of the PQ: {' '.join(caps)}")
