"""Runtime control without editing the configuration: disabled queues and pilot removals.

``autopyfactory queue disable|enable`` and ``autopyfactory pilots remove`` write their requests to
``<stateDir>/control.json``; the running daemon reads the file at the start of every cycle, so a
request takes effect from the next cycle, and a restart keeps it.

* A disabled queue (a label name or a PQ name, optionally ``--until`` a time) gets a ``Disabled``
  policy step with its reason, so its decision is 0 and the reason shows in the log line, the
  monitor's label message and ``status``. Housekeeping of its pilots goes on.
* A removal request removes, in the next cycle, the matching pilots the census sees (all, or the
  idle ones only): one ``condor_rm`` per schedd, with the request as the pilots' ``RemoveReason``
  (:meth:`Removal.remove_reason`: ``autopyfactory pilots remove <id> by <user>: <reason>``, which
  the cron helpers tell apart from faults). It is dropped once every pilot it matched was
  removed; while a matching label's pilots are unknown (condor did not answer) or a removal failed,
  it stays pending (``queue list``, ``status``) and is tried again in the next cycle.
* An unreadable control file disables every queue (the operator may have disabled some of them:
  submitting to those would break the promise) until it is fixed; the problem is reported.

This module holds the rules, the requests as values and their JSON form; they are the domain's
because the cycle applies them to its labels and census (which labels are disabled, which pilots
a request removes) and the commands apply them to the file's content, and both must agree. The
file itself, with its lock, is an edge (``edges/control.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from autopyfactory.domain.label import Label
from autopyfactory.domain.model import Census, JobStatus, Pilot, plural

#: The format of control.json (``"format"``); another one is refused, never guessed at.
FORMAT = 1
#: How every ``RemoveReason`` of an operator's removal starts (see :meth:`Removal.remove_reason`).
OPERATOR_REMOVAL = "autopyfactory pilots remove"
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ControlError(Exception):
    """The control file cannot be read or written; the message says why."""


def format_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def parse_until(text: str, now: float) -> float:
    """``--until``: a duration from now (``90m``, ``6h``, ``2d``, ``1w``) or an ISO 8601 time (UTC
    unless it has an offset). Raises ValueError for anything else or a time not in the future."""
    stripped = text.strip()
    duration = _DURATION.match(stripped.lower())
    if duration:
        until = now + int(duration.group(1)) * _UNIT_SECONDS[duration.group(2)]
    else:
        try:
            when = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"{text!r} is neither a duration (30m, 6h, 2d, 1w) nor a time (2026-12-01T08:00)"
            ) from None
        until = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    if until <= now:
        raise ValueError(f"{text!r} is not in the future")
    return until


@dataclass(frozen=True)
class Disable:
    """A disabled label or PQ (``name``), from ``since`` until ``until`` (None: until enabled)."""

    name: str
    reason: str
    since: float
    until: float | None = None
    by: str = ""

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until

    def describe(self) -> str:
        end = f" until {format_time(self.until)}" if self.until is not None else ""
        who = f" by {self.by}" if self.by else ""
        return f"disabled{who} since {format_time(self.since)}{end}: {self.reason or 'no reason given'}"


@dataclass(frozen=True)
class Removal:
    """A request to remove the pilots of the labels matching all the given selectors."""

    id: str
    requested: float
    label: str = ""
    pq: str = ""
    ce: str = ""  # a CE host, or host:port
    idle_only: bool = False
    by: str = ""
    reason: str = ""  # the operator's --reason

    def matches(self, label: str, pq: str, ce_endpoint: str) -> bool:
        return (
            (not self.label or self.label == label)
            and (not self.pq or self.pq == pq)
            and (not self.ce or self.ce in (ce_endpoint, ce_endpoint.rsplit(":", 1)[0]))
        )

    def describe(self) -> str:
        pairs = (("label", self.label), ("pq", self.pq), ("ce", self.ce))
        selectors = " ".join(f"--{key} {value}" for key, value in pairs if value)
        what = "idle pilots" if self.idle_only else "pilots"
        why = f": {self.reason}" if self.reason else ""
        return f"removal {self.id} ({what}, {selectors}){why}"

    def takes(self, status: JobStatus) -> bool:
        """Whether this request removes a pilot in ``status``."""
        return not self.idle_only or status is JobStatus.IDLE

    def remove_reason(self) -> str:
        """The removed pilots' ``RemoveReason``: the request and the operator's reason."""
        return f"{OPERATOR_REMOVAL} {self.id} by {self.by or 'unknown'}: {self.reason or 'no reason given'}"


@dataclass(frozen=True)
class Controls:
    disabled: tuple[Disable, ...] = ()
    removals: tuple[Removal, ...] = ()
    problem: str = ""  # the control file could not be read: every queue counts as disabled

    def disabled_reason(self, label: str, pq: str, now: float) -> str | None:
        """Why ``label`` (of PQ ``pq``) gets no pilots now, or None when it is enabled."""
        if self.problem:
            return f"control file unreadable, every queue held back: {self.problem}"
        for entry in self.disabled:
            if entry.name in (label, pq) and entry.active(now):
                scope = "queue" if entry.name == label else f"PQ {pq}"
                return f"{scope} {entry.describe()}"
        return None

    def disabled_labels(self, labels: Sequence[Label], now: float) -> dict[str, str]:
        """The labels an operator disabled (``autopyfactory queue disable``), with the reason."""
        return {
            label.name: reason
            for label in labels
            if (reason := self.disabled_reason(label.name, label.pq, now)) is not None
        }

    def removal_targets(self, labels: Sequence[Label]) -> set[str]:
        """Labels an ``autopyfactory pilots remove`` request waits for: their pilots must be listed."""
        return {
            label.name
            for label in labels
            if any(r.matches(label.name, label.pq, label.ce.endpoint) for r in self.removals)
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "disabled": [dict(d.__dict__) for d in self.disabled],
            "removals": [dict(r.__dict__) for r in self.removals],
        }


def controls_from_json(record: object) -> Controls:
    """Controls from the parsed file; ValueError when it is not a control file of this format."""
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"not an autopyfactory control file of format {FORMAT}")
    try:
        disabled = tuple(Disable(**entry) for entry in record.get("disabled", []))
        removals = tuple(Removal(**entry) for entry in record.get("removals", []))
    except TypeError as exc:
        raise ValueError(f"bad entry: {exc}") from None
    return Controls(disabled, removals)


# --- changes (pure) -------------------------------------------------------------------------


def disable(controls: Controls, entry: Disable) -> Controls:
    """``entry`` replaces any earlier disable of the same name."""
    kept = tuple(d for d in controls.disabled if d.name != entry.name)
    return replace(controls, disabled=(*kept, entry))


def enable(controls: Controls, name: str) -> Controls:
    return replace(controls, disabled=tuple(d for d in controls.disabled if d.name != name))


def expire(controls: Controls, now: float) -> Controls:
    return replace(controls, disabled=tuple(d for d in controls.disabled if d.active(now)))


def add_removal(controls: Controls, removal: Removal) -> Controls:
    return replace(controls, removals=(*controls.removals, removal))


def drop_removals(controls: Controls, done: Sequence[str]) -> Controls:
    return replace(controls, removals=tuple(r for r in controls.removals if r.id not in done))


# --- what the cycle does with removals (pure) -----------------------------------------------


@dataclass(frozen=True)
class LabelView:
    """What a removal needs to know of one label this cycle."""

    name: str
    pq: str
    ce_endpoint: str
    pilots: tuple[Pilot, ...] | None  # None: unknown this cycle


@dataclass(frozen=True)
class RemovalPlan:
    """Per request that can be carried out now (its id): the job ids to remove per label; one
    note per request (those waiting say why)."""

    by_request: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def removal_views(labels: Sequence[Label], census: Census, targets: AbstractSet[str]) -> list[LabelView]:
    """What the removal requests need to know of the ``targets`` labels this cycle (their pilots
    are None when the census could not count them)."""
    return [
        LabelView(
            label.name,
            label.pq,
            label.ce.endpoint,
            None if census.supply.get(label.name) is None else census.pilots.get(label.name, ()),
        )
        for label in labels
        if label.name in targets
    ]


def plan_removals(removals: Sequence[Removal], labels: Sequence[LabelView]) -> RemovalPlan:
    """Which pilots each request removes now; a request touching an unknown census waits."""
    by_request: dict[str, dict[str, tuple[str, ...]]] = {}
    notes: list[str] = []
    for removal in removals:
        matching = [v for v in labels if removal.matches(v.name, v.pq, v.ce_endpoint)]
        unknown = [v.name for v in matching if v.pilots is None]
        if unknown:
            notes.append(f"{removal.describe()}: waiting, pilots unknown for {', '.join(unknown)}")
            continue
        found = {
            view.name: tuple(sorted(p.job_id for p in view.pilots or () if removal.takes(p.status)))
            for view in matching
        }
        by_request[removal.id] = {name: ids for name, ids in found.items() if ids}
        count = sum(len(ids) for ids in found.values())
        notes.append(f"{removal.describe()}: {plural(count, 'pilot')} of {plural(len(matching), 'label')}")
    return RemovalPlan(by_request, tuple(notes))
