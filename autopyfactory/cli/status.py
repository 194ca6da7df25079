"""``autopyfactory status``: the last cycle per label, filtered, and ``--check`` for monitoring.

``--check`` prints one summary line (``OK: ...``, ``WARNING: ...``, ``CRITICAL: ...``) and one
line per finding, and exits like a Nagios/Icinga plugin: 0 ok, 1 warning, 2 critical.

* critical: no readable state file; the last cycle is older than 3 x ``sleep`` (the daemon is
  stuck or stopped); a credential a selected label carries blocks submission (expired, too short,
  missing, unreadable); the control file is unreadable (every queue held back).
* warning: PanDA, condor or CRIC answered badly in the last cycle (for ``--pq``/``--label``: only
  when a selected label's jobs or pilots are unknown); a credential expires soon (below 2 x
  ``proxyMinLifetime``); a selected label's submission failed; the last reload was rejected (the
  configuration read before stays in force, until a reload is accepted); the monitor refuses the
  factory (HTTP 401/403: ``monitorToken``), what it is to be told being kept until it accepts.
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from autopyfactory.cli.command import EXIT_ERROR, EXIT_OK, Commands, add_config_option
from autopyfactory.config import loader as config
from autopyfactory.config import schema
from autopyfactory.domain.credentials import CredentialState
from autopyfactory.domain.model import EdgeKind, plural
from autopyfactory.observers.state import (
    STATE_FILE,
    ConfigRecord,
    LabelRecord,
    MalformedState,
    PandaRecord,
    StateError,
    StateRecord,
    read_state,
)

STALE_CYCLES = 3  # the last cycle is stale after this many x sleep
#: The edges a failure of which ``--check`` reports, and what they are to an operator.
EDGE_NAMES = {EdgeKind.PANDA: "PanDA", EdgeKind.BATCH: "condor", EdgeKind.SCHEDCONFIG: "CRIC schedconfig"}


class Level(enum.IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2


@dataclass(frozen=True)
class Finding:
    level: Level
    message: str


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "status", help="show each label's last cycle, as the running factory wrote it"
    )
    add_config_option(parser)
    parser.add_argument("--json", action="store_true", help="print the state file as JSON")
    parser.add_argument(
        "--check", action="store_true", help="for monitoring: exit 0 ok, 1 warning, 2 critical, with why"
    )
    parser.add_argument("--pq", action="append", default=[], help="only this PQ's labels (repeatable)")
    parser.add_argument("--label", action="append", default=[], help="only this label (repeatable)")


@dataclass(frozen=True)
class Where:
    """Where the state file is and how often it is rewritten: stateDir and sleep."""

    state_dir: Path
    sleep: int


def where(path: Path) -> Where:
    """stateDir and sleep of the configuration at ``path``. A configuration with errors (what a
    rejected reload leaves on disk, the daemon still running with the one it read before) gives
    the two as written, or their defaults: status is most needed just then."""
    try:
        factory = config.load(path).factory
        return Where(Path(factory.identity.state_dir), factory.identity.sleep)
    except config.ConfigError:
        if not path.is_file():
            raise  # a wrong -c: say so, not "no state file" under the default stateDir
    try:
        sections = config.read_ini(path)
    except config.ConfigError:
        sections = []
    written = {
        key: value
        for section in sections
        if section.name == config.FACTORY_SECTION
        for key, value, _line in section.items
    }
    return Where(Path(str(_lenient("stateDir", written))), int(str(_lenient("sleep", written))))


def _lenient(key: str, written: dict[str, str]) -> object:
    option = schema.find(key, schema.Scope.FACTORY)
    assert option is not None, key
    try:
        return option.parse(written[key]) if key in written else option.default
    except ValueError:
        return option.default


def run(args: argparse.Namespace) -> int:
    found = where(Path(args.config))
    now = time.time()
    try:
        record = read_state(found.state_dir / STATE_FILE)
    except StateError as exc:
        if args.check:
            print(f"CRITICAL: {exc}")
            return int(Level.CRITICAL)
        rewritten = "; the daemon rewrites it after its next cycle" if isinstance(exc, MalformedState) else ""
        print(f"autopyfactory status: {exc}{rewritten}", file=sys.stderr)
        return EXIT_ERROR
    return _report(args, found.sleep, record, now)


def _report(args: argparse.Namespace, sleep: int, record: StateRecord, now: float) -> int:
    """Print the (selected) state."""
    selected = select(record, args.pq, args.label)
    if (args.pq or args.label) and not selected.labels:
        print(f"autopyfactory status: no label matches {_filters(args.pq, args.label)}", file=sys.stderr)
        return int(Level.CRITICAL) if args.check else EXIT_ERROR
    if args.check:
        findings = check(selected, now, sleep, filtered=bool(args.pq or args.label))
        print(render_check(findings, len(selected.labels)))
        return int(max((f.level for f in findings), default=Level.OK))
    if args.json:
        print(json.dumps(selected.to_json(), indent=1, sort_keys=True))
    else:
        print(format_status(selected, now))
    return EXIT_OK


def _filters(pqs: Sequence[str], labels: Sequence[str]) -> str:
    return " ".join([*(f"--pq {p}" for p in pqs), *(f"--label {name}" for name in labels)])


def select(record: StateRecord, pqs: Sequence[str], labels: Sequence[str]) -> StateRecord:
    """The state record with only the labels of the given PQs or names (all when none given)."""
    if not pqs and not labels:
        return record
    kept = {name: label for name, label in record.labels.items() if name in labels or label.pq in pqs}
    return replace(record, labels=kept)


def check(record: StateRecord, now: float, sleep: int, filtered: bool) -> list[Finding]:
    """Every finding about the (selected part of the) state record; see the module docstring."""
    findings: list[Finding] = []
    age, limit = int(now - record.time), STALE_CYCLES * sleep
    if age > limit:
        findings.append(
            Finding(Level.CRITICAL, f"last cycle {age} s ago, more than {STALE_CYCLES} x sleep ({limit} s)")
        )
    findings += _edges(record, filtered)
    findings += _configuration(record, now)
    findings += _credentials(record)
    for name, label in sorted(record.labels.items()):
        if label.error:
            findings.append(Finding(Level.WARNING, f"{name}: submission failed: {label.error}"))
    return findings


def _edges(record: StateRecord, filtered: bool) -> list[Finding]:
    findings = []
    if record.edges.get(EdgeKind.CONTROL) is False:
        findings.append(Finding(Level.CRITICAL, "control file unreadable: every queue held back"))
    labels = record.labels.values()
    unknown = {
        EdgeKind.PANDA: any(label.activated is None for label in labels),
        EdgeKind.BATCH: any(label.idle is None for label in labels),
    }
    for kind, name in EDGE_NAMES.items():
        # filtered: only what touches the selected labels (their jobs or pilots unknown)
        bad = unknown.get(kind, False) if filtered else record.edges.get(kind) is False
        if bad:
            problems = [p.message for p in record.problems if p.kind is kind]
            detail = f": {problems[0]}" if problems else ""
            findings.append(Finding(Level.WARNING, f"{name} answered badly in the last cycle{detail}"))
    return findings


def _configuration(record: StateRecord, now: float) -> list[Finding]:
    """A rejected reload, and the monitor refusing the factory: both need the operator."""
    findings = []
    rejected = _rejected_reload(record.config, now)
    if rejected:
        findings.append(Finding(Level.WARNING, rejected))
    if record.monitor_refused:
        findings.append(Finding(Level.WARNING, _monitor_refused(record.monitor_refused)))
    return findings


def _rejected_reload(config_record: ConfigRecord | None, now: float) -> str:
    """``last reload rejected 40 s ago: <its first error>; in force: ...``, "" when none was."""
    if config_record is None or config_record.rejected_at is None:
        return ""
    errors = config_record.rejected_because.strip().splitlines() or ["no reason given"]
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return (
        f"last reload rejected {_when(config_record.rejected_at, now)}: {errors[0]}{more};"
        f" in force: {_in_force(config_record, now)}"
    )


def _in_force(config_record: ConfigRecord, now: float) -> str:
    return f"{config_record.path} as read {_when(config_record.read_at, now)} ({config_record.read_by})"


def _monitor_refused(why: str) -> str:
    return (
        f"the monitor refuses the factory ({why}): a configuration error (monitorToken?);"
        " what it is to be told is kept until it accepts (fix the configuration and reload)"
    )


def _when(moment: float, now: float) -> str:
    stamp = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"at {stamp} ({max(0, int(now - moment))} s ago)"


def _credentials(record: StateRecord) -> list[Finding]:
    used = {path for label in record.labels.values() for path in label.credentials}
    findings = []
    for credential in record.credentials:
        if credential.path not in used:
            continue
        if credential.state.blocks:
            findings.append(Finding(Level.CRITICAL, credential.message))
        elif credential.state is CredentialState.WARN:
            findings.append(Finding(Level.WARNING, credential.message))
    return findings


def render_check(findings: Sequence[Finding], labels: int) -> str:
    level = max((f.level for f in findings), default=Level.OK)
    worst = [f.message for f in findings if f.level is level]
    head = f"{level.name}: {worst[0]}" if worst else f"OK: {labels} labels, last cycle recent, no problems"
    if len(findings) < 2:
        return head
    head += f" (+{len(findings) - 1} more)"
    return "\n".join([head, *(f"{f.level.name.lower()}: {f.message}" for f in findings)])


# --- the table -----------------------------------------------------------------------------------

COLUMNS = (
    "label",
    "PQ",
    "CE",
    "status",
    "PQ-activated",
    "activated",
    "idle",
    "running",
    "started",
    "held",
    "decision",
    "last submit",
    "reason",
)

#: What the two activated columns mean: the reasons' ``activated=`` is the label's share.
LEGEND = (
    "PQ-activated: the PQ's activated jobs at PanDA; activated: this label's share of them"
    " (what the reason's activated= counts); started: running pilots that started within pandaLag"
    " (their jobs may still be in activated, so they count against it like idle and held ones);"
    " ?: unknown this cycle"
)


def format_status(record: StateRecord, now: float) -> str:
    """A table per label, preceded by a one-line header about the cycle."""
    when = datetime.fromtimestamp(record.time, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    age = max(0, int(now - record.time))
    lines = [
        f"factory {record.factory} (autopyfactory {record.version}): cycle {record.cycle} at {when}"
        f" ({age} s ago), {plural(len(record.labels), 'label')}"
    ]
    panda = _panda_line(record.panda, now)
    if panda:
        lines.append(panda)  # the age of the numbers in the table, or why there are none
    lines += _configuration_lines(record, now)
    lines += [f"problem: {problem.message}" for problem in record.problems]
    lines += [f"control: {note}" for note in record.control]
    rows = [COLUMNS] + [_row(name, label) for name, label in sorted(record.labels.items())]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    lines.append(LEGEND)
    return "\n".join(lines)


def _configuration_lines(record: StateRecord, now: float) -> list[str]:
    """A rejected reload (all its errors, and which configuration is in force); the monitor
    refusing the factory. Nothing when all is well."""
    lines = []
    rejected = _rejected_reload(record.config, now)
    if rejected and record.config is not None:
        lines.append(f"RELOAD REJECTED: {rejected}")
        lines += [f"  {error}" for error in record.config.rejected_because.strip().splitlines()[1:]]
    if record.monitor_refused:
        lines.append(f"monitor: {_monitor_refused(record.monitor_refused)}")
    return lines


def _panda_line(panda: PandaRecord | None, now: float) -> str:
    """``PanDA: numbers from an answer 75 s old`` or ``PanDA: NO DATA in that cycle ...``."""
    if panda is None:
        return ""
    if panda.ok:
        age = max(0, int(now - panda.asked))
        lag = "PanDA's counts lag 1-2 min more: see started"
        return f"PanDA: activated counts from an answer {age} s old ({lag})"
    last = panda.last_good
    since = (
        "no good answer since start" if last is None else f"last good answer {max(0, int(now - last))} s old"
    )
    return f"PanDA: NO DATA in that cycle, nothing submitted ({since}; its numbers are not used)"


def _row(name: str, label: LabelRecord) -> tuple[str, ...]:
    def show(value: object) -> str:
        return "?" if value is None else str(value)

    last = label.last_submit
    last_text = datetime.fromtimestamp(last, UTC).strftime("%m-%d %H:%M") if last else "-"
    reason = label.reason + (f" [error: {label.error}]" if label.error else "")
    return (
        name,
        label.pq,
        label.ce,
        label.status,
        show(label.activated),
        show(label.share),
        show(label.idle),
        show(label.running),
        show(label.started),
        show(label.held),
        str(label.decision),
        last_text,
        reason,
    )
