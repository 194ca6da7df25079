"""The local backend's registry: its pilots' records on disk, under ``<stateDir>/local/``.

::

    cluster            the last cluster number used (ids ``cluster.proc`` never repeat)
    lock               flock'ed by submit, census and remove (one writer at a time, also
                       across processes such as a second ``autopyfactory`` command)
    pilots/<cid>.json  one file per unfinished pilot (see :class:`LocalPilot`)
    history/<cid>.json finished pilots (see :class:`FinishedPilot`), kept ``history_keep`` seconds
    work/<cid>/        the pilot's fresh working directory, removed when it ends
    rc/<cid>.rc        "<exit code> <end epoch>", written by the pilot's supervisor

Every record is written atomically (write, fsync, rename): a reader sees the old record or the
new one, never half of one. A record that cannot be read is reported, never guessed at.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import logging
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from autopyfactory.batch.interface import BatchError
from autopyfactory.domain.model import JobStatus, Pilot
from autopyfactory.edges.files import atomic_write_text

log = logging.getLogger(__name__)

#: How long finished pilots stay in the history (seconds), and how often it is pruned.
HISTORY_KEEP = 7 * 86400.0
PRUNE_EVERY = 3600.0
#: Longest wait for the lock another submit/census/remove holds (a remove holds it ~KILL_GRACE).
LOCK_TIMEOUT = 60.0
LOCK_POLL = 0.05

_Number = TypeVar("_Number", int, float)
_JOB_ID = re.compile(r"^(\d+)\.(\d+)$")

#: A registry file that is not a valid record: (path, its label if readable, why).
Broken = tuple[Path, str | None, str]


class RegistryError(ValueError):
    """A registry or history file that cannot be read as a pilot record."""


class RunState(enum.StrEnum):
    IDLE = "idle"  # waiting for a slot (max_running)
    STARTING = "starting"  # being started; seen by a census only if the factory died meanwhile
    RUNNING = "running"


# ---- records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalPilot:
    """A registry entry: an unfinished pilot, and all it takes to start it later."""

    job_id: str  # cluster.proc
    label: str
    factory_id: str
    command: tuple[str, ...]  # the executable and its arguments, as the pilot receives them
    environment: tuple[tuple[str, str], ...]  # set on top of the factory's environment
    stdout: str
    stderr: str
    log: str
    queued: float
    state: RunState = RunState.IDLE
    pid: int | None = None  # the supervisor: its pid is also the process group and session id
    start_ticks: int | None = None  # /proc/<pid>/stat starttime, telling a reused pid apart
    started: float | None = None

    def as_pilot(self) -> Pilot:
        running = self.state is RunState.RUNNING
        entered = self.started if running and self.started is not None else self.queued
        status = JobStatus.RUNNING if running else JobStatus.IDLE
        return Pilot(self.job_id, self.label, status, int(entered), int(self.queued))

    def to_json(self) -> str:
        data = _common_json(self) | {
            "environment": dict(self.environment),
            "state": self.state.value,
            "pid": self.pid,
            "start_ticks": self.start_ticks,
        }
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LocalPilot:
        data = _object(text)
        common = _common_fields(data)
        environment = data.get("environment")
        if not isinstance(environment, dict) or not all(isinstance(v, str) for v in environment.values()):
            raise RegistryError("environment is not an object of strings")
        try:
            state = RunState(str(data.get("state")))
        except ValueError:
            raise RegistryError(f"unknown state {data.get('state')!r}") from None
        return cls(
            **common,
            environment=tuple(environment.items()),
            state=state,
            pid=_optional(data, "pid", int),
            start_ticks=_optional(data, "start_ticks", int),
            started=_optional(data, "started", float),
        )


@dataclass(frozen=True)
class FinishedPilot:
    """A finished pilot, as :meth:`Registry.history` returns it.

    ``rc`` is the pilot's exit code (128+N when killed by signal N), None when it is unknown: the
    pilot was removed, or vanished without its supervisor recording one. ``started`` is None for
    a pilot removed while it waited. ``ended`` is when the supervisor saw the pilot end, else when
    the factory noticed. ``reason`` says how it ended, for people.
    """

    job_id: str
    label: str
    factory_id: str
    command: tuple[str, ...]
    stdout: str
    stderr: str
    log: str
    queued: float
    started: float | None
    ended: float
    rc: int | None
    removed: bool
    reason: str

    @property
    def pilot(self) -> Pilot:
        """As a batch pilot: REMOVED or COMPLETED, entered that status when it ended."""
        status = JobStatus.REMOVED if self.removed else JobStatus.COMPLETED
        return Pilot(self.job_id, self.label, status, int(self.ended), int(self.queued))

    def to_json(self) -> str:
        data = _common_json(self) | {
            "ended": self.ended,
            "rc": self.rc,
            "removed": self.removed,
            "reason": self.reason,
        }
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> FinishedPilot:
        data = _object(text)
        removed, reason = data.get("removed"), data.get("reason")
        if not isinstance(removed, bool) or not isinstance(reason, str):
            raise RegistryError("removed/reason missing or of the wrong type")
        ended = _optional(data, "ended", float)
        if ended is None:
            raise RegistryError("no end time")
        return cls(
            **_common_fields(data),
            started=_optional(data, "started", float),
            ended=ended,
            rc=_optional(data, "rc", int),
            removed=removed,
            reason=reason,
        )


def _common_json(record: LocalPilot | FinishedPilot) -> dict[str, Any]:
    return {
        "job_id": record.job_id,
        "label": record.label,
        "factory_id": record.factory_id,
        "command": list(record.command),
        "stdout": record.stdout,
        "stderr": record.stderr,
        "log": record.log,
        "queued": record.queued,
        "started": record.started,
    }


def _object(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RegistryError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RegistryError("not a JSON object")
    return data


def _common_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The fields registry and history records share, type-checked (RegistryError if wrong)."""
    fields: dict[str, Any] = {}
    for key in ("job_id", "label", "factory_id", "stdout", "stderr", "log"):
        if not isinstance(data.get(key), str):
            raise RegistryError(f"{key} missing or not a string")
        fields[key] = data[key]
    if not _JOB_ID.match(fields["job_id"]):
        raise RegistryError(f"job_id {fields['job_id']!r} is not cluster.proc")
    command = data.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(w, str) for w in command):
        raise RegistryError("command is not a non-empty list of strings")
    queued = _optional(data, "queued", float)
    if queued is None:
        raise RegistryError("no queued time")
    return fields | {"command": tuple(command), "queued": queued}


def _optional(data: Mapping[str, Any], key: str, kind: type[_Number]) -> _Number | None:
    """``data[key]`` as ``kind`` (an int is a float too), None when null or absent."""
    value = data.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (kind is int and isinstance(value, float))
    ):
        raise RegistryError(f"{key} is not {'an integer' if kind is int else 'a number'}: {value!r}")
    return kind(value)


def job_key(job_id: str) -> tuple[int, int]:
    """``"12.3"`` -> (12, 3): the submission order (FIFO)."""
    match = _JOB_ID.match(job_id)
    if not match:
        raise RegistryError(f"job id {job_id!r} is not cluster.proc")
    return int(match[1]), int(match[2])


# ---- the files ---------------------------------------------------------------------------------


class Registry:
    """The records of one factory's local pilots (see the module docstring)."""

    def __init__(self, root: Path, factory_id: str) -> None:
        self.root, self._factory_id = root, factory_id
        self._last_prune: float | None = None

    def entry_path(self, job_id: str) -> Path:
        return self.root / "pilots" / f"{job_id}.json"

    def history_path(self, job_id: str) -> Path:
        return self.root / "history" / f"{job_id}.json"

    def work_dir(self, job_id: str) -> Path:
        return self.root / "work" / job_id

    def rc_path(self, job_id: str) -> Path:
        return self.root / "rc" / f"{job_id}.rc"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold ``<state>/local/lock``; waits at most LOCK_TIMEOUT (BatchError after that)."""
        self.root.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + LOCK_TIMEOUT
        with open(self.root / "lock", "a") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise BatchError(f"{self.root / 'lock'} held by another process") from None
                    time.sleep(LOCK_POLL)
            yield

    # -- unfinished pilots --

    def write(self, entry: LocalPilot) -> None:
        atomic_write_text(self.entry_path(entry.job_id), entry.to_json(), mode=0o600)

    def read(self, job_id: str) -> LocalPilot:
        """One entry; FileNotFoundError when there is none, another OSError, UnicodeDecodeError or
        RegistryError when it cannot be read."""
        return LocalPilot.from_json(self.entry_path(job_id).read_text(encoding="utf-8"))

    def scan(self) -> tuple[list[LocalPilot], list[Broken]]:
        """This factory's registry entries, and the broken ones: (path, label if readable, why)."""
        entries, broken = [], []
        directory = self.root / "pilots"
        paths = sorted(directory.glob("*.json")) if directory.is_dir() else []
        for path in paths:
            try:
                entry = LocalPilot.from_json(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, RegistryError) as exc:
                broken.append((path, _label_of(path), str(exc)))
                continue
            if entry.job_id != path.stem:
                broken.append((path, entry.label, f"holds job {entry.job_id}"))
            elif entry.factory_id == self._factory_id:
                entries.append(entry)
        return entries, broken

    def next_cluster(self) -> int:
        """One past the last cluster, persisted before use; BatchError if the counter is corrupt."""
        path = self.root / "cluster"
        try:
            last = int(path.read_text(encoding="utf-8").strip())
        except FileNotFoundError:
            last = self._highest_cluster_on_disk()
        except (OSError, ValueError) as exc:
            raise BatchError(f"cluster counter {path} unreadable ({exc}); nothing submitted") from None
        atomic_write_text(path, f"{last + 1}\n")
        return last + 1

    def _highest_cluster_on_disk(self) -> int:
        """Without a counter file, the highest cluster any record names (0 for a new state dir)."""
        names = [p.stem for sub in ("pilots", "history") for p in (self.root / sub).glob("*.json")]
        return max((job_key(n)[0] for n in names if _JOB_ID.match(n)), default=0)

    def read_rc(self, job_id: str) -> tuple[int | None, float] | None:
        """(exit code, end time) from the supervisor's rc file; None while there is none."""
        path = self.rc_path(job_id)
        try:
            words = path.read_text(encoding="utf-8").split()
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return None
        rc = int(words[0]) if words and words[0].isdigit() else None
        ended = float(words[1]) if len(words) > 1 and words[1].isdigit() else mtime
        return rc, ended

    # -- finished pilots --

    def archive(self, record: FinishedPilot) -> None:
        """Move a pilot to the history and clear what it left (registry entry, rc file, work dir)."""
        atomic_write_text(self.history_path(record.job_id), record.to_json(), mode=0o600)
        self.entry_path(record.job_id).unlink(missing_ok=True)
        rc_file = self.rc_path(record.job_id)
        rc_file.unlink(missing_ok=True)
        rc_file.with_name(rc_file.name + ".tmp").unlink(missing_ok=True)
        shutil.rmtree(self.work_dir(record.job_id), ignore_errors=True)

    def history(self, since: float | None = None) -> list[FinishedPilot]:
        """Finished pilots of this factory that ended at or after ``since``, newest first.

        Unreadable records are logged and skipped.
        """
        records = []
        directory = self.root / "history"
        for path in directory.glob("*.json") if directory.is_dir() else []:
            try:
                record = FinishedPilot.from_json(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, RegistryError) as exc:
                log.warning("local pilot history %s unreadable: %s", path, exc)
                continue
            if record.factory_id == self._factory_id and (since is None or record.ended >= since):
                records.append(record)
        records.sort(key=lambda r: (r.ended, job_key(r.job_id)), reverse=True)
        return records

    def prune_history(self, now: float, keep: float) -> None:
        """Drop history records older than ``keep`` seconds, at most every PRUNE_EVERY seconds."""
        if self._last_prune is not None and now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        for record in self.history():
            if record.ended < now - keep:
                self.history_path(record.job_id).unlink(missing_ok=True)


def _label_of(path: Path) -> str | None:
    """The label of a registry file that is not a valid record, if it can still be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    label = data.get("label") if isinstance(data, dict) else None
    return label if isinstance(label, str) else None
