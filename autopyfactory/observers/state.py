"""The state the daemon writes every cycle, and the ``status`` table built from it.

``<stateDir>/status.json`` is rewritten atomically at the end of each cycle, so ``autopyfactory
status`` can read it at any time while the daemon runs. It holds, per label, the last inputs,
decision and reason, and the time of the last successful submission (carried over from earlier
cycles).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autopyfactory import __version__
from autopyfactory.cycle.report import CycleReport, LabelResult
from autopyfactory.domain.label import Label
from autopyfactory.domain.model import EdgeKind, plural
from autopyfactory.edges.files import atomic_write_text

STATE_FILE = "status.json"
FORMAT = 1
#: The edges whose answer this cycle the state records (``edges``: kind -> answered well).
EDGES = tuple(EdgeKind)


class StateError(Exception):
    """The state file is missing or unreadable."""


def state_record(report: CycleReport, factory_id: str, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """The JSON-able state after ``report``; ``previous`` supplies the last submit times."""
    earlier = (previous or {}).get("labels", {})
    return {
        "format": FORMAT,
        "factory": factory_id,
        "version": __version__,
        "cycle": report.cycle,
        "time": report.started,
        "duration": round(report.duration, 3),
        "problems": [str(p) for p in report.problems],
        "skipped_queues": list(report.skipped_queues),
        "panda": _panda_record(report),
        "control": list(report.control),
        "edges": {kind.value: report.ok(kind) for kind in EDGES},
        "credentials": [
            {"path": c.path, "kind": c.kind.value, "state": c.state.value, "message": c.message}
            for c in report.credentials
        ],
        "labels": {
            r.plan.label.name: _label_record(r, report.started, earlier.get(r.plan.label.name, {}))
            for r in report.results
        },
    }


def _panda_record(report: CycleReport) -> dict[str, Any] | None:
    """Whether this cycle had PanDA data, and when PanDA last answered well (for the ages shown)."""
    reading = report.panda
    if reading is None:
        return None
    return {
        "ok": reading.ok,
        "asked": reading.asked,
        "last_good": reading.last_good,
        "problem": reading.problem,
    }


def _label_record(result: LabelResult, now: float, earlier: Mapping[str, Any]) -> dict[str, Any]:
    p, submit = result.plan, result.plan.label.submit
    return {
        "pq": p.label.pq,
        "resource_type": p.label.resource_type,
        "ce": p.label.ce.endpoint,
        "status": p.label.status.value,
        "activated": p.pq_activated,
        "share": None if p.demand is None else p.demand.activated,
        "idle": None if p.supply is None else p.supply.idle,
        "running": None if p.supply is None else p.supply.running,
        "held": None if p.supply is None else p.supply.held,
        "decision": p.decision.n,
        "reason": p.decision.explain(),
        "submitted": result.submitted,
        "error": result.outcome.error,
        "last_submit": now if result.submitted else earlier.get("last_submit"),
        "credentials": [path for path in (submit.x509userproxy, submit.scitokens_file) if path],
    }


class StateWriter:
    """A cycle observer writing ``status.json`` atomically after every cycle."""

    def __init__(self, state_dir: Path, factory_id: str) -> None:
        self.path = state_dir / STATE_FILE
        self._factory_id = factory_id
        self._previous: dict[str, Any] | None = None
        try:
            self._previous = read_state(self.path)
        except StateError:
            self._previous = None

    def cycle_done(self, report: CycleReport, labels: Sequence[Label]) -> None:
        record = state_record(report, self._factory_id, self._previous)
        atomic_write_text(self.path, json.dumps(record, indent=1, sort_keys=True) + "\n")
        self._previous = record


def read_state(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except OSError as exc:
        raise StateError(f"{path}: {exc.strerror or exc} (has the factory run a cycle yet?)") from None
    except ValueError as exc:
        raise StateError(f"{path}: not JSON: {exc}") from None
    if (
        not isinstance(record, dict)
        or record.get("format") != FORMAT
        or not isinstance(record.get("labels"), dict)
    ):
        raise StateError(f"{path}: not an autopyfactory state file of format {FORMAT}")
    return record


COLUMNS = (
    "label",
    "PQ",
    "CE",
    "status",
    "PQ-activated",
    "activated",
    "idle",
    "running",
    "held",
    "decision",
    "last submit",
    "reason",
)


def format_status(record: Mapping[str, Any], now: float) -> str:
    """A table per label, preceded by a one-line header about the cycle."""
    when = datetime.fromtimestamp(record["time"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    age = max(0, int(now - record["time"]))
    lines = [
        f"factory {record['factory']} (autopyfactory {record['version']}): cycle {record['cycle']} at {when}"
        f" ({age} s ago), {plural(len(record['labels']), 'label')}"
    ]
    panda = _panda_line(record.get("panda"), now)
    if panda:
        lines.append(panda)  # the age of the numbers in the table, or why there are none
    lines += [f"problem: {problem}" for problem in record.get("problems", [])]
    lines += [f"control: {note}" for note in record.get("control", [])]
    rows = [COLUMNS] + [_row(name, label) for name, label in sorted(record["labels"].items())]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    lines.append(LEGEND)
    return "\n".join(lines)


def _panda_line(panda: object, now: float) -> str:
    """``PanDA: numbers from an answer 75 s old`` or ``PanDA: NO DATA in that cycle ...``."""
    if not isinstance(panda, dict):
        return ""
    if panda.get("ok"):
        age = max(0, int(now - panda["asked"]))
        return f"PanDA: activated counts from an answer {age} s old (PanDA's counts lag up to 60 s more)"
    last = panda.get("last_good")
    since = (
        "no good answer since start" if last is None else f"last good answer {max(0, int(now - last))} s old"
    )
    return f"PanDA: NO DATA in that cycle, nothing submitted ({since}; its numbers are not used)"


#: What the two activated columns mean: the reasons' ``activated=`` is the label's share.
LEGEND = (
    "PQ-activated: the PQ's activated jobs at PanDA; activated: this label's share of them"
    " (what the reason's activated= counts); ?: unknown this cycle"
)


def _row(name: str, label: Mapping[str, Any]) -> tuple[str, ...]:
    def show(value: object) -> str:
        return "?" if value is None else str(value)

    last = label.get("last_submit")
    last_text = datetime.fromtimestamp(last, UTC).strftime("%m-%d %H:%M") if last else "-"
    reason = label["reason"] + (f" [error: {label['error']}]" if label.get("error") else "")
    return (
        name,
        label["pq"],
        label["ce"],
        label["status"],
        show(label["activated"]),
        show(label.get("share")),
        show(label["idle"]),
        show(label["running"]),
        show(label["held"]),
        str(label["decision"]),
        last_text,
        reason,
    )
