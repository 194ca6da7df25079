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
* An unreadable control file, or one with a wrong field (a name that is not a string, a time that
  is not a finite number, an unknown key), disables every queue (the operator may have disabled
  some of them: submitting to those would break the promise) until it is fixed; the problem,
  naming the file and the field, is reported (log, ``status``, ``queue list``).

This module holds the rules, the requests as values and their JSON form; they are the domain's
because the cycle applies them to its labels and census (which labels are disabled, which pilots
a request removes) and the commands apply them to the file's content, and both must agree. The
file itself, with its lock, is an edge (``edges/control.py``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
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
    """Controls from the parsed file, checked as strictly as factory.conf: known keys only, each
    field of its type (names non-empty strings, times finite numbers). ValueError naming the
    field otherwise (``disabled[0].until: 'tomorrow' is not a time``), so that a wrong value
    holds every queue back instead of failing later or silently dropping a disable."""
    if not isinstance(record, dict):
        raise ValueError("not an autopyfactory control file (not a JSON object)")
    version = record.get("format")
    if type(version) is not int or version != FORMAT:
        raise ValueError(f"format: {version!r}: not an autopyfactory control file of format {FORMAT}")
    _known_keys(record, {"format", "disabled", "removals"}, "")
    disabled = tuple(
        Disable(**_fields(entry, _DISABLE_FIELDS, f"disabled[{i}]"))
        for i, entry in enumerate(_entries(record, "disabled"))
    )
    removals = tuple(
        Removal(**_fields(entry, _REMOVAL_FIELDS, f"removals[{i}]"))
        for i, entry in enumerate(_entries(record, "removals"))
    )
    return Controls(disabled, removals)


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError("is not a non-empty string")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("is not a string")
    return value


#: The last time a disable or request may name (9999-12-31 23:59:59 UTC): later ones cannot be shown.
_LAST_TIME = 253402300799.0


def _time(value: object) -> float:
    """Epoch seconds: a finite number (JSON's NaN, Infinity and 1e400 are not; nor is a boolean)
    that is a date (1e300 is finite but no time can be shown for it)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("is not a time (epoch seconds)")
    try:
        seconds = float(value)
    except OverflowError:
        raise TypeError("is not a finite time (epoch seconds)") from None
    if not math.isfinite(seconds):
        raise TypeError("is not a finite time (epoch seconds)")
    if not 0 <= seconds <= _LAST_TIME:
        raise TypeError("is not a time between 1970 and 9999 (epoch seconds)")
    return seconds


def _optional_time(value: object) -> float | None:
    return None if value is None else _time(value)


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError("is not true or false")
    return value


#: Per field of an entry: its check, and whether the entry must have it.
_Field = tuple[Callable[[object], object], bool]
_DISABLE_FIELDS: dict[str, _Field] = {
    "name": (_name, True),
    "reason": (_text, True),
    "since": (_time, True),
    "until": (_optional_time, False),
    "by": (_text, False),
}
_REMOVAL_FIELDS: dict[str, _Field] = {
    "id": (_name, True),
    "requested": (_time, True),
    "label": (_text, False),
    "pq": (_text, False),
    "ce": (_text, False),
    "idle_only": (_flag, False),
    "by": (_text, False),
    "reason": (_text, False),
}


def _entries(record: Mapping[str, object], key: str) -> list[object]:
    entries = record.get(key, [])
    if not isinstance(entries, list):
        raise ValueError(f"{key}: {_show(entries)} is not a list")
    return entries


def _fields(entry: object, checks: Mapping[str, _Field], where: str) -> dict[str, Any]:
    """The entry's fields, each checked; ValueError naming ``where`` and the field."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: {_show(entry)} is not a JSON object")
    _known_keys(entry, set(checks), f"{where}.")
    missing = [key for key, (_, required) in checks.items() if required and key not in entry]
    if missing:
        raise ValueError(f"{where}: {', '.join(missing)} missing")
    fields: dict[str, Any] = {}
    for key, value in entry.items():
        try:
            fields[key] = checks[key][0](value)
        except TypeError as exc:
            raise ValueError(f"{where}.{key}: {_show(value)} {exc}") from None
    return fields


def _known_keys(record: Mapping[str, object], known: AbstractSet[str], where: str) -> None:
    unknown = sorted(str(key) for key in record if key not in known)
    if unknown:
        raise ValueError(f"{where}{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")


def _show(value: object) -> str:
    """The value as the error shows it: its JSON form, cut short."""
    shown = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


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
