"""The state the daemon writes every cycle: ``<stateDir>/status.json``, a typed record.

The file is rewritten atomically at the end of each cycle, so ``autopyfactory status`` can read
it at any time while the daemon runs. It holds, per label, the last inputs, decision and reason,
and the time of the last successful submission (carried over from earlier cycles); the cycle's
problems with the edge each is about; whether each edge answered well; and what the service
knows beyond the cycle (:class:`RuntimeNotes`): which configuration is in force, since when, and
why the last reload was rejected if it was; why the monitor refuses the factory if it does.

:class:`StateRecord` is the one definition both sides use: :class:`StateWriter` writes it,
:func:`read_state` reads and checks it (``cli/status.py``). Format 2 stores each problem's edge;
a format 1 file (written before that) is still read, its problems with no edge (``status
--check`` then names the edge that answered badly without quoting its problem, until the daemon
rewrites the file after its next cycle).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from autopyfactory import __version__
from autopyfactory.cycle.report import CycleReport, LabelResult
from autopyfactory.domain.credentials import CredentialKind, CredentialState
from autopyfactory.domain.label import Label
from autopyfactory.domain.model import EdgeKind
from autopyfactory.edges.files import atomic_write_text

EnumT = TypeVar("EnumT", bound=enum.Enum)

STATE_FILE = "status.json"
FORMAT = 2
#: Formats read: 1 stored problems as bare text, without the edge they are about.
READABLE_FORMATS = (1, 2)


class StateError(Exception):
    """The state file is missing, unreadable or not a state file; the message says which and why."""


class MalformedState(StateError):
    """A state file with a field missing or of the wrong type (the message names it)."""


@dataclass(frozen=True)
class ProblemRecord:
    kind: EdgeKind | None  # None: read from a format 1 file, which did not store it
    message: str


@dataclass(frozen=True)
class PandaRecord:
    """Whether the cycle had PanDA data, and when PanDA last answered well (for the ages shown)."""

    ok: bool
    asked: float
    last_good: float | None
    problem: str


@dataclass(frozen=True)
class CredentialRecord:
    path: str
    kind: CredentialKind
    state: CredentialState
    message: str


@dataclass(frozen=True)
class LabelRecord:
    pq: str
    ce: str
    status: str
    activated: int | None  # the PQ's activated jobs (None: unknown)
    share: int | None  # this label's share of them
    idle: int | None
    running: int | None
    held: int | None
    decision: int
    reason: str
    submitted: int = 0
    error: str = ""
    last_submit: float | None = None
    resource_type: str | None = None
    credentials: tuple[str, ...] = ()  # the credential files the label's pilots carry
    started: int | None = None  # running pilots started within pandaLag (None: unknown)


@dataclass(frozen=True)
class ConfigRecord:
    """The configuration in force and the last reload, when it was rejected."""

    path: str
    read_at: float  # when the configuration in force was read
    read_by: str  # "start-up" or "reload"
    rejected_at: float | None = None  # the last reload, rejected (None: accepted, or none yet)
    rejected_because: str = ""  # its errors, one per line


@dataclass(frozen=True)
class RuntimeNotes:
    """What the service adds to each cycle's state (see the module docstring)."""

    config: ConfigRecord | None = None
    monitor_refused: str = ""  # why the monitor refuses the factory (401/403); "" when it does not


@dataclass(frozen=True)
class StateRecord:
    factory: str
    version: str
    cycle: int
    time: float
    duration: float
    labels: Mapping[str, LabelRecord]
    problems: tuple[ProblemRecord, ...] = ()
    skipped_queues: tuple[str, ...] = ()
    panda: PandaRecord | None = None
    control: tuple[str, ...] = ()
    edges: Mapping[EdgeKind, bool] = field(default_factory=dict)  # answered well (absent: not known)
    credentials: tuple[CredentialRecord, ...] = ()
    config: ConfigRecord | None = None
    monitor_refused: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "factory": self.factory,
            "version": self.version,
            "cycle": self.cycle,
            "time": self.time,
            "duration": self.duration,
            "problems": [{"kind": p.kind and p.kind.value, "message": p.message} for p in self.problems],
            "skipped_queues": list(self.skipped_queues),
            "panda": None if self.panda is None else dict(self.panda.__dict__),
            "control": list(self.control),
            "edges": {kind.value: ok for kind, ok in self.edges.items()},
            "credentials": [
                {"path": c.path, "kind": c.kind.value, "state": c.state.value, "message": c.message}
                for c in self.credentials
            ],
            "config": None if self.config is None else dict(self.config.__dict__),
            "monitor_refused": self.monitor_refused,
            "labels": {
                name: {**label.__dict__, "credentials": list(label.credentials)}
                for name, label in self.labels.items()
            },
        }


def state_record(
    report: CycleReport, factory_id: str, previous: StateRecord | None, notes: RuntimeNotes = RuntimeNotes()
) -> StateRecord:
    """The state after ``report``; ``previous`` supplies the last submit times."""
    earlier = previous.labels if previous is not None else {}
    return StateRecord(
        factory=factory_id,
        version=__version__,
        cycle=report.cycle,
        time=report.started,
        duration=round(report.duration, 3),
        labels={
            r.plan.label.name: _label_record(r, report.started, earlier.get(r.plan.label.name))
            for r in report.results
        },
        problems=tuple(ProblemRecord(p.kind, p.message) for p in report.problems),
        skipped_queues=tuple(report.skipped_queues),
        panda=_panda_record(report),
        control=tuple(report.control),
        edges={kind: report.ok(kind) for kind in EdgeKind},
        credentials=tuple(CredentialRecord(c.path, c.kind, c.state, c.message) for c in report.credentials),
        config=notes.config,
        monitor_refused=notes.monitor_refused,
    )


def _panda_record(report: CycleReport) -> PandaRecord | None:
    reading = report.panda
    if reading is None:
        return None
    return PandaRecord(reading.ok, reading.asked, reading.last_good, reading.problem)


def _label_record(result: LabelResult, now: float, earlier: LabelRecord | None) -> LabelRecord:
    p, submit = result.plan, result.plan.label.submit
    return LabelRecord(
        pq=p.label.pq,
        ce=p.label.ce.endpoint,
        status=p.label.status.value,
        activated=p.pq_activated,
        share=None if p.demand is None else p.demand.activated,
        idle=None if p.supply is None else p.supply.idle,
        running=None if p.supply is None else p.supply.running,
        held=None if p.supply is None else p.supply.held,
        decision=p.decision.n,
        reason=p.decision.explain(),
        submitted=result.submitted,
        error=result.outcome.error,
        last_submit=now if result.submitted else (earlier.last_submit if earlier else None),
        resource_type=p.label.resource_type,
        credentials=tuple(path for path in (submit.x509userproxy, submit.scitokens_file) if path),
        started=None if p.supply is None else p.supply.started,
    )


class StateWriter:
    """A cycle observer writing ``status.json`` atomically after every cycle."""

    def __init__(
        self, state_dir: Path, factory_id: str, notes: Callable[[], RuntimeNotes] = RuntimeNotes
    ) -> None:
        """``notes``: asked after every cycle for what the service adds to the state."""
        self.path = state_dir / STATE_FILE
        self._factory_id = factory_id
        self._notes = notes
        self._previous: StateRecord | None = None
        try:
            self._previous = read_state(self.path)
        except StateError:
            self._previous = None

    def cycle_done(self, report: CycleReport, labels: Sequence[Label]) -> None:
        record = state_record(report, self._factory_id, self._previous, self._notes())
        atomic_write_text(self.path, json.dumps(record.to_json(), indent=1, sort_keys=True) + "\n")
        self._previous = record


# --- reading -------------------------------------------------------------------------------------


def read_state(path: Path) -> StateRecord:
    """The record in ``path``; StateError with a one-line reason when it is missing or malformed."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise StateError(f"{path}: {exc.strerror or exc} (has the factory run a cycle yet?)") from None
    except ValueError as exc:
        raise StateError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") not in READABLE_FORMATS:
        formats = " or ".join(str(f) for f in READABLE_FORMATS)
        raise StateError(f"{path}: not an autopyfactory state file of format {formats}")
    try:
        return _record(_Object(data, ""))
    except _Malformed as exc:
        raise MalformedState(f"{path}: malformed state file ({exc})") from None


class _Malformed(ValueError):
    pass


class _Object:
    """One JSON object of the file read field by field: a field that is missing where required,
    or of the wrong type, is a _Malformed naming it (``labels.CERN-ce1.idle: 'x' is not a count``).
    What a file written by the daemon always has is required; the rest has a default."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise _Malformed(f"{where or 'the record'}: {type(data).__name__}, not an object")
        self._data, self._where = data, where

    def name(self, key: str) -> str:
        return f"{self._where}.{key}" if self._where else key

    def raw(self, key: str, required: bool) -> object:
        if key not in self._data and required:
            raise _Malformed(f"{self.name(key)}: missing")
        return self._data.get(key)

    def _typed(self, key: str, value: object, types: tuple[type, ...], what: str) -> Any:
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise _Malformed(f"{self.name(key)}: {value!r} is not {what}")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.raw(key, default is None)
        return default if value is None and default is not None else self._typed(key, value, (str,), "text")

    def optional_text(self, key: str) -> str | None:
        value = self.raw(key, False)
        return None if value is None else self._typed(key, value, (str,), "text")

    def count(self, key: str, default: int | None = None) -> int:
        value = self.raw(key, default is None)
        if value is None and default is not None:
            return default
        return int(self._typed(key, value, (int,), "a count"))

    def maybe_count(self, key: str, must_exist: bool) -> int | None:
        """A count or null (unknown); ``must_exist``: the daemon always writes the field."""
        value = self.raw(key, must_exist)
        return None if value is None else int(self._typed(key, value, (int,), "a count"))

    def number(self, key: str, default: float) -> float:
        value = self.raw(key, False)
        return default if value is None else float(self._typed(key, value, (int, float), "a number"))

    def flag(self, key: str) -> bool:
        return bool(self._typed(key, self.raw(key, True), (bool,), "true or false"))

    def time(self, key: str) -> float:
        """Seconds since the epoch that a date can show (finite, within datetime's years)."""
        value = self.raw(key, True)
        seconds = float(self._typed(key, value, (int, float), "a time"))
        try:
            datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise _Malformed(f"{self.name(key)}: {value!r} is not a time") from None
        return seconds

    def maybe_time(self, key: str) -> float | None:
        return None if self.raw(key, False) is None else self.time(key)

    def items(self, key: str) -> list[object]:
        value = self.raw(key, False)
        return [] if value is None else list(self._typed(key, value, (list,), "a list"))

    def texts(self, key: str) -> tuple[str, ...]:
        return tuple(
            self._typed(f"{key}[{i}]", item, (str,), "text") for i, item in enumerate(self.items(key))
        )

    def mapping(self, key: str, required: bool = False) -> dict[str, object]:
        value = self.raw(key, required)
        return {} if value is None else dict(self._typed(key, value, (dict,), "an object"))

    def nested(self, key: str) -> _Object | None:
        value = self.raw(key, False)
        return None if value is None else _Object(value, self.name(key))

    def choice(self, key: str, kind: type[EnumT]) -> EnumT:
        value = self.text(key)
        try:
            return kind(value)
        except ValueError:
            raise _Malformed(f"{self.name(key)}: {value!r} is not a known {kind.__name__}") from None


def _record(f: _Object) -> StateRecord:
    return StateRecord(
        factory=f.text("factory"),
        version=f.text("version"),
        cycle=f.count("cycle"),
        time=f.time("time"),
        duration=f.number("duration", 0.0),
        labels={
            name: _label(_Object(label, f"labels.{name}"))
            for name, label in f.mapping("labels", True).items()
        },
        problems=tuple(
            _problem(item, f.name(f"problems[{i}]")) for i, item in enumerate(f.items("problems"))
        ),
        skipped_queues=f.texts("skipped_queues"),
        panda=_panda(f.nested("panda")),
        control=f.texts("control"),
        edges=_edges(f.mapping("edges")),
        credentials=tuple(
            _credential(_Object(c, f"credentials[{i}]")) for i, c in enumerate(f.items("credentials"))
        ),
        config=_config(f.nested("config")),
        monitor_refused=f.text("monitor_refused", ""),
    )


def _config(f: _Object | None) -> ConfigRecord | None:
    if f is None:
        return None
    return ConfigRecord(
        f.text("path"),
        f.time("read_at"),
        f.text("read_by"),
        f.maybe_time("rejected_at"),
        f.text("rejected_because", ""),
    )


def _problem(item: object, where: str) -> ProblemRecord:
    """A format 2 problem ({kind, message}), or a format 1 one (its text alone, its edge unknown)."""
    if isinstance(item, str):
        return ProblemRecord(None, item)
    f = _Object(item, where)
    kind = None if f.optional_text("kind") is None else f.choice("kind", EdgeKind)
    return ProblemRecord(kind, f.text("message"))


def _panda(f: _Object | None) -> PandaRecord | None:
    if f is None:
        return None
    return PandaRecord(f.flag("ok"), f.time("asked"), f.maybe_time("last_good"), f.text("problem", ""))


def _edges(raw: Mapping[str, object]) -> dict[EdgeKind, bool]:
    edges: dict[EdgeKind, bool] = {}
    for name, ok in raw.items():
        if not isinstance(ok, bool):
            raise _Malformed(f"edges.{name}: {ok!r} is not true or false")
        try:
            edges[EdgeKind(name)] = ok
        except ValueError:
            continue  # an edge this version does not know of: nothing to say about it
    return edges


def _credential(f: _Object) -> CredentialRecord:
    return CredentialRecord(
        f.text("path"),
        f.choice("kind", CredentialKind),
        f.choice("state", CredentialState),
        f.text("message"),
    )


def _label(f: _Object) -> LabelRecord:
    return LabelRecord(
        pq=f.text("pq"),
        ce=f.text("ce"),
        status=f.text("status"),
        activated=f.maybe_count("activated", must_exist=True),
        share=f.maybe_count("share", must_exist=False),
        idle=f.maybe_count("idle", must_exist=True),
        running=f.maybe_count("running", must_exist=True),
        held=f.maybe_count("held", must_exist=True),
        decision=f.count("decision"),
        reason=f.text("reason"),
        submitted=f.count("submitted", 0),
        error=f.text("error", ""),
        last_submit=f.maybe_time("last_submit"),
        resource_type=f.optional_text("resource_type"),
        credentials=f.texts("credentials"),
        started=f.maybe_count("started", must_exist=False),
    )
