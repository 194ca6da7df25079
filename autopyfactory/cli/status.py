"""``autopyfactory status``: the last cycle per label, filtered, and ``--check`` for monitoring.

``--check`` prints one summary line (``OK: ...``, ``WARNING: ...``, ``CRITICAL: ...``) and one
line per finding, and exits like a Nagios/Icinga plugin: 0 ok, 1 warning, 2 critical.

* critical: no readable state file; the last cycle is older than 3 x ``sleep`` (the daemon is
  stuck or stopped); a credential a selected label carries blocks submission (expired, too short,
  missing, unreadable); the control file is unreadable (every queue held back).
* warning: PanDA, condor or CRIC answered badly in the last cycle (for ``--pq``/``--label``: only
  when a selected label's jobs or pilots are unknown); a credential expires soon (below 2 x
  ``proxyMinLifetime``); a selected label's submission failed.
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopyfactory.config import loader as config
from autopyfactory.observers.state import STATE_FILE, StateError, format_status, read_state

EXIT_OK, EXIT_ERROR = 0, 1
STALE_CYCLES = 3  # the last cycle is stale after this many x sleep
#: The edges a failure of which ``--check`` reports, and what they are to an operator.
EDGE_NAMES = {"panda": "PanDA", "batch": "condor", "schedconfig": "CRIC schedconfig"}
BLOCKING = frozenset({"too short", "expired", "missing", "unreadable"})


class Level(enum.IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2


@dataclass(frozen=True)
class Finding:
    level: Level
    message: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the state file as JSON")
    parser.add_argument(
        "--check", action="store_true", help="for monitoring: exit 0 ok, 1 warning, 2 critical, with why"
    )
    parser.add_argument("--pq", action="append", default=[], help="only this PQ's labels (repeatable)")
    parser.add_argument("--label", action="append", default=[], help="only this label (repeatable)")


def run_status(args: argparse.Namespace) -> int:
    loaded = config.load(args.config)
    now = time.time()
    try:
        record = read_state(Path(loaded.factory.state_dir) / STATE_FILE)
    except StateError as exc:
        if args.check:
            print(f"CRITICAL: {exc}")
            return int(Level.CRITICAL)
        print(f"autopyfactory status: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return _report(args, loaded, record, now)
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
        path = Path(loaded.factory.state_dir) / STATE_FILE
        why = f"{path}: malformed state file ({type(exc).__name__}: {exc})"
        if args.check:
            print(f"CRITICAL: {why}")
            return int(Level.CRITICAL)
        print(f"autopyfactory status: {why}; the daemon rewrites it after its next cycle", file=sys.stderr)
        return EXIT_ERROR


def _report(
    args: argparse.Namespace, loaded: config.FactoryConfig, record: dict[str, Any], now: float
) -> int:
    """Print the (selected) state; KeyError/TypeError/... when the record is malformed."""
    selected = select(record, args.pq, args.label)
    if (args.pq or args.label) and not selected["labels"]:
        print(f"autopyfactory status: no label matches {_filters(args.pq, args.label)}", file=sys.stderr)
        return int(Level.CRITICAL) if args.check else EXIT_ERROR
    if args.check:
        findings = check(selected, now, loaded.factory.sleep, filtered=bool(args.pq or args.label))
        print(render_check(findings, len(selected["labels"])))
        return int(max((f.level for f in findings), default=Level.OK))
    print(json.dumps(selected, indent=1, sort_keys=True) if args.json else format_status(selected, now))
    return EXIT_OK


def _filters(pqs: Sequence[str], labels: Sequence[str]) -> str:
    return " ".join([*(f"--pq {p}" for p in pqs), *(f"--label {name}" for name in labels)])


def select(record: Mapping[str, Any], pqs: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """The state record with only the labels of the given PQs or names (all when none given)."""
    if not pqs and not labels:
        return dict(record)
    kept = {
        name: label for name, label in record["labels"].items() if name in labels or label.get("pq") in pqs
    }
    return {**record, "labels": kept}


def check(record: Mapping[str, Any], now: float, sleep: int, filtered: bool) -> list[Finding]:
    """Every finding about the (selected part of the) state record; see the module docstring."""
    findings: list[Finding] = []
    age, limit = int(now - float(record["time"])), STALE_CYCLES * sleep
    if age > limit:
        findings.append(
            Finding(Level.CRITICAL, f"last cycle {age} s ago, more than {STALE_CYCLES} x sleep ({limit} s)")
        )
    findings += _edges(record, filtered)
    findings += _credentials(record)
    for name, label in sorted(record["labels"].items()):
        if label.get("error"):
            findings.append(Finding(Level.WARNING, f"{name}: submission failed: {label['error']}"))
    return findings


def _edges(record: Mapping[str, Any], filtered: bool) -> list[Finding]:
    edges: Mapping[str, bool] = record.get("edges", {})
    findings = []
    if edges.get("control") is False:
        findings.append(Finding(Level.CRITICAL, "control file unreadable: every queue held back"))
    labels = record["labels"].values()
    unknown = {
        "panda": any(label.get("activated") is None for label in labels),
        "batch": any(label.get("idle") is None for label in labels),
    }
    for kind, name in EDGE_NAMES.items():
        # filtered: only what touches the selected labels (their jobs or pilots unknown)
        bad = unknown.get(kind, False) if filtered else edges.get(kind) is False
        if bad:
            problems = [p for p in record.get("problems", []) if _is_about(p, kind)]
            detail = f": {problems[0]}" if problems else ""
            findings.append(Finding(Level.WARNING, f"{name} answered badly in the last cycle{detail}"))
    return findings


def _is_about(problem: str, kind: str) -> bool:
    words = {"panda": ("panda",), "batch": ("condor", "schedd", "batch"), "schedconfig": ("schedconfig",)}
    return any(word in problem.lower() for word in words[kind])


def _credentials(record: Mapping[str, Any]) -> list[Finding]:
    used = {path for label in record["labels"].values() for path in label.get("credentials", [])}
    findings = []
    for credential in record.get("credentials", []):
        if credential["path"] not in used:
            continue
        if credential["state"] in BLOCKING:
            findings.append(Finding(Level.CRITICAL, f"{credential['message']}"))
        elif credential["state"] == "warn":
            findings.append(Finding(Level.WARNING, f"{credential['message']}"))
    return findings


def render_check(findings: Sequence[Finding], labels: int) -> str:
    level = max((f.level for f in findings), default=Level.OK)
    worst = [f.message for f in findings if f.level is level]
    head = f"{level.name}: {worst[0]}" if worst else f"OK: {labels} labels, last cycle recent, no problems"
    if len(findings) < 2:
        return head
    head += f" (+{len(findings) - 1} more)"
    return "\n".join([head, *(f"{f.level.name.lower()}: {f.message}" for f in findings)])
