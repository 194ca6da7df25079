"""Runtime control without editing the configuration: disabled queues and pilot removals.

``autopyfactory queue disable|enable`` and ``autopyfactory pilots remove`` write their requests to
``<stateDir>/control.json``; the running daemon reads the file at the start of every cycle, so a
request takes effect from the next cycle, and a restart keeps it. Every change is a
read-modify-write under an exclusive ``flock`` on ``<stateDir>/.control.lock`` and replaces the
file atomically, so the commands and the daemon (which consumes removal requests) never lose
each other's updates and readers never see half a file.

* A disabled queue (a label name or a PQ name, optionally ``--until`` a time) gets a ``Disabled``
  policy step with its reason, so its decision is 0 and the reason shows in the log line, the
  monitor's label message and ``status``. Housekeeping of its pilots goes on.
* A removal request removes, in the next cycle, the matching pilots the census sees (all, or the
  idle ones only) and is then dropped. While a matching label's pilots are unknown (condor did not
  answer) the request waits for a later cycle.
* An unreadable control file disables every queue (the operator may have disabled some of them:
  submitting to those would break the promise) until it is fixed; the problem is reported.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autopyfactory.domain.model import JobStatus, Pilot
from autopyfactory.edges.files import atomic_write_text

CONTROL_FILE = "control.json"
LOCK_FILE = ".control.lock"
FORMAT = 1
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
        return f"removal {self.id} ({what}, {selectors})"


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


class ControlStore:
    """``<stateDir>/control.json``, read without a lock and changed under one."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / CONTROL_FILE
        self._lock_path = state_dir / LOCK_FILE

    def read(self) -> Controls:
        """The current controls; no file means none. Raises ControlError when unreadable."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return Controls()
        except OSError as exc:
            raise ControlError(f"{self.path}: {exc.strerror or exc}") from None
        try:
            return controls_from_json(json.loads(text))
        except ValueError as exc:
            raise ControlError(f"{self.path}: {exc}") from None

    def read_or_hold(self) -> Controls:
        """For the daemon: unreadable controls become a problem that holds every queue back."""
        try:
            return self.read()
        except ControlError as exc:
            return Controls(problem=str(exc))

    def update(self, change: Callable[[Controls], Controls]) -> Controls:
        """Apply ``change`` to the current controls atomically; returns the new ones."""
        with self._locked():
            new = change(self.read())
            atomic_write_text(self.path, json.dumps(new.to_json(), indent=1, sort_keys=True) + "\n")
            self._keep_owner(self.path)
        return new

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self._lock_path, os.O_RDONLY | os.O_CREAT, 0o644)  # flock needs no write access
        except OSError as exc:
            raise ControlError(f"{self._lock_path}: {exc.strerror or exc}") from None
        try:
            self._keep_owner(self._lock_path)
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _keep_owner(self, path: Path) -> None:
        """Files root creates in the daemon's state dir belong to the dir's owner (the service user)."""
        if os.geteuid() != 0:
            return
        directory = path.parent.stat()
        if path.stat().st_uid != directory.st_uid:
            os.chown(path, directory.st_uid, directory.st_gid)


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


def new_removal_id() -> str:
    return secrets.token_hex(4)


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
    """Job ids to remove per label, the requests done, and one note per request."""

    by_label: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    done: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def plan_removals(removals: Sequence[Removal], labels: Sequence[LabelView]) -> RemovalPlan:
    """Which pilots each request removes now; a request touching an unknown census waits."""
    by_label: dict[str, set[str]] = {}
    done: list[str] = []
    notes: list[str] = []
    for removal in removals:
        matching = [v for v in labels if removal.matches(v.name, v.pq, v.ce_endpoint)]
        unknown = [v.name for v in matching if v.pilots is None]
        if unknown:
            notes.append(f"{removal.describe()}: waiting, pilots unknown for {', '.join(unknown)}")
            continue
        count = 0
        for view in matching:
            ids = [p.job_id for p in view.pilots or () if not removal.idle_only or p.status is JobStatus.IDLE]
            by_label.setdefault(view.name, set()).update(ids)
            count += len(ids)
        done.append(removal.id)
        notes.append(f"{removal.describe()}: {count} pilots of {len(matching)} labels")
    return RemovalPlan({k: tuple(sorted(v)) for k, v in by_label.items()}, tuple(done), tuple(notes))
