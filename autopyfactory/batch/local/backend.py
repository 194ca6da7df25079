"""The local batch backend (``batch = local``): pilots run as processes on the factory host.

Like APF's Exec plugin, for tests and small sites. It sits behind the same :class:`Backend`
interface as HTCondor, with its own submission and status, kept in files under
``<stateDir>/local/``::

    cluster            the last cluster number used (ids ``cluster.proc`` never repeat)
    lock               flock'ed by submit, census and remove (one writer at a time, also
                       across processes such as a second ``autopyfactory`` command)
    pilots/<cid>.json  the registry: one file per unfinished pilot (see :class:`LocalPilot`)
    history/<cid>.json finished pilots (see :class:`FinishedPilot`), kept ``history_keep`` seconds
    work/<cid>/        the pilot's fresh working directory, removed when it ends
    rc/<cid>.rc        "<exit code> <end epoch>", written by the pilot's supervisor

**Exit codes survive the factory.** A pilot is not a child the factory waits for: it is started
through a tiny ``/bin/sh`` supervisor (:data:`SUPERVISOR`) in a new session. The supervisor runs
the pilot in its working directory, then removes that directory, appends the end line to the
pilot's ``.log`` and writes the rc file (write-then-rename, so it is never seen half written).
The pilot's command reaches it as positional parameters (``"$@"``), never spliced into shell
text, so nothing in the arguments is interpreted. The supervisor catches SIGTERM/SIGINT/SIGHUP
(only to outlive its pilot: the pilot itself gets the default dispositions back), so a pilot
killed by a signal is still recorded, as 128+N. Only SIGKILL of the supervisor loses the code;
such a pilot is recorded with ``rc`` None. A shell supervisor rather than a Python runner: it
starts in a millisecond and needs nothing from the factory's virtualenv.

It is started with ``posix_spawn`` (setsid, signals reset to their defaults as ``subprocess``
does, stdin from /dev/null, stdout/stderr to ``<cid>.out``/``<cid>.err``), not ``Popen``: no
process object has to outlive the call, so a backend rebuilt on reload, or a new factory process,
treats every pilot alike. Every finished supervisor that is our child is reaped when its pilot
is settled (no zombies pile up under a long-running factory).

**A started pilot is always tracked or killed.** If its RUNNING registry entry cannot be written
(full or read-only disk), its process group is SIGKILLed at once and it is recorded as not
started: a pilot never runs uncounted, so the next cycle cannot over-submit.

**Pid reuse.** The registry keeps each pilot's pid together with its start time from
``/proc/<pid>/stat``; a process counts as the pilot only if both match, and nothing is signalled
otherwise. This backend therefore needs Linux (``/proc``).

**Waiting pilots.** With ``max_running``, at most that many pilots of this factory run at once;
the others wait in the registry as IDLE and are started first in, first out by later census or
submit calls as slots free up. Nothing starts them while the factory is down: the factory is this
batch system's scheduler. A dry run's backend (``read_only=True``) only reads the registry: no
lock, nothing started, settled or written; a pilot that ended counts as gone, one being started
as running (never fewer pilots than there are, so a dry run never decides more than the daemon).

Not enforced here: the label's cores, memory, disk and wall time, and the periodic hold/remove
ages of the condor path (housekeeping's ``idleTimeout`` works, through :meth:`remove`).
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import logging
import os
import re
import shlex
import shutil
import signal
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from autopyfactory.batch.interface import (
    BatchError,
    SubmitContext,
    SubmitOutcome,
    SubmitRequests,
    Tidy,
    submit_each,
    tidy_each,
)
from autopyfactory.batch.pilot import SubmitRenderError, log_dir, pilot_arguments, pilot_environment
from autopyfactory.domain.label import Label
from autopyfactory.domain.model import Census, JobStatus, Pilot, Supply
from autopyfactory.edges.files import atomic_write_text

log = logging.getLogger(__name__)

#: Seconds between SIGTERM and SIGKILL of a removed pilot's process group.
KILL_GRACE = 5.0
#: Seconds to wait for a SIGKILLed group to disappear.
KILL_WAIT = 2.0
#: How long finished pilots stay in the history (seconds), and how often it is pruned.
HISTORY_KEEP = 7 * 86400.0
PRUNE_EVERY = 3600.0
#: Longest wait for the lock another submit/census/remove holds (a remove holds it ~KILL_GRACE).
LOCK_TIMEOUT = 60.0
POLL = 0.05
#: How long a census waits for a supervisor that wrote its rc file to exit (so it can be reaped).
REAP_WAIT = 1.0

#: The supervisor: ``sh -c SUPERVISOR apf-local-pilot <cid> <rc file> <work dir> <log> <cmd...>``.
SUPERVISOR = r"""
cid=$1 rc_file=$2 work=$3 log=$4
shift 4
trap : HUP INT TERM
cd -- "$work" && "$@"
rc=$?
cd / && rm -rf -- "$work"
printf '005 (%s) %s ended: exit code %s\n' "$cid" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$rc" >>"$log"
printf '%s %s\n' "$rc" "$(date +%s)" >"$rc_file.tmp" && mv -f -- "$rc_file.tmp" "$rc_file"
"""
SUPERVISOR_NAME = "apf-local-pilot"
#: Reset to the default disposition in the supervisor (an ignored signal would be inherited).
RESET_SIGNALS = (
    signal.SIGPIPE, signal.SIGXFSZ, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM,
    signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGCHLD,
)  # fmt: skip

_Number = TypeVar("_Number", int, float)
_JOB_ID = re.compile(r"^(\d+)\.(\d+)$")
#: How a dry run shows the job id a pilot would get (as condor's submit files write it).
SHOWN_JOB_ID = "$(Cluster).$(Process)"


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
        return Pilot(self.job_id, self.label, status, int(entered), int(self.queued), int(running))

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
    """A finished pilot, as :meth:`LocalBackend.history` returns it.

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
        runs = int(self.started is not None)
        return Pilot(self.job_id, self.label, status, int(self.ended), int(self.queued), runs)

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


# ---- commands ----------------------------------------------------------------------------------


def describe(label: Label, context: SubmitContext, job_id: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The pilot's command (the executable's absolute path, then its argument words) and its own
    environment, both as the pilot sees them (batch/pilot.py).

    Raises SubmitRenderError for a bad template or an executable that is not an executable file.
    """
    exe = label.submit.executable
    resolved = shutil.which(exe) if exe else None
    if resolved is None:
        raise SubmitRenderError(f"{label.name}: executable {exe!r} is not an executable file")
    command = [os.path.abspath(resolved), *pilot_arguments(label, context)]
    return command, environment_of(label, context, job_id)


def environment_of(label: Label, context: SubmitContext, job_id: str) -> list[tuple[str, str]]:
    """The pilot's own environment, with ``PILOT_NOKILL=1`` unless the queue's ``environ`` sets it.

    Why: after a job, pilot 3 kills every process of its user whose parent is init (on a worker
    node that reaps the payload's orphans). A local pilot runs on the factory's host, as the
    factory's user, beside the factory and other daemons: without this it kills them.
    """
    environment = pilot_environment(label, context, job_id)
    if any(name == "PILOT_NOKILL" for name, _ in environment):
        return environment
    return [("PILOT_NOKILL", "1"), *environment]


def _timestamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _append_log(path: str, code: str, job_id: str, when: float, text: str) -> None:
    """One line of the pilot's ``.log``, condor user-log style (000 submitted ... 005 ended)."""
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{code} ({job_id}) {_timestamp(when)} {text}\n")
    except OSError as exc:
        log.warning("%s: cannot write %s: %s", job_id, path, exc)


# ---- processes ---------------------------------------------------------------------------------


def process_identity(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) from ``/proc/<pid>/stat``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parens
    return fields[0], int(fields[19])


def _process_group(pgid: int) -> list[tuple[int, str]]:
    """(pid, state) of every process in group ``pgid``."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            members.append((int(entry.name), fields[0]))
    return members


def _reap(pid: int) -> None:
    """Collect a finished supervisor that is our own child (a no-op for anybody else's)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _kill_untracked(job_id: str, pid: int) -> None:
    """Kill a just-started supervisor's group that could not be registered (full disk): a pilot
    runs only while the registry counts it. Its group is SIGKILLed and waited for (and reaped)."""
    log.error("local pilot %s: registry write failed after start, killing process group %d", job_id, pid)
    _signal_groups({job_id: pid}, signal.SIGKILL)
    if _wait_gone({job_id: pid}, KILL_WAIT):
        log.error("local pilot %s: process group %d survived SIGKILL", job_id, pid)


def _reap_supervisor(pid: int, start_ticks: int | None, wait: float) -> bool:
    """Reap the finished supervisor ``pid`` if it is our child; False if it did not exit in time.

    Its rc file is written just before it exits, so a census that saw the file waits a moment
    for the exit. A pid that is not ours (another factory process started it) or that was reused
    (other start time) is left alone.
    """
    identity = process_identity(pid)
    if identity is None or identity[1] != start_ticks:
        return True
    deadline = time.monotonic() + wait
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if done or time.monotonic() >= deadline:
            return bool(done)
        time.sleep(0.005)


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs; our own zombies are reaped on the way."""
    alive = False
    for pid, state in _process_group(pgid):
        if state == "Z":
            _reap(pid)
        else:
            alive = True
    return alive


# ---- the backend -------------------------------------------------------------------------------


class LocalBackend:
    """Pilots as local processes; see the module docstring for the files and guarantees."""

    name = "local"

    def __init__(
        self,
        factory_id: str,
        state_dir: Path,
        clock: Callable[[], float] = time.time,
        max_running: int | None = None,
        *,
        kill_grace: float = KILL_GRACE,
        history_keep: float = HISTORY_KEEP,
        read_only: bool = False,
    ) -> None:
        if max_running is not None and max_running < 1:
            raise ValueError(f"max_running must be at least 1 (or None), got {max_running}")
        self._factory_id, self._clock, self._max_running = factory_id, clock, max_running
        self._kill_grace, self._history_keep = kill_grace, history_keep
        self._root = Path(state_dir) / "local"
        self._last_prune: float | None = None
        self._unreaped: dict[int, int | None] = {}  # finished supervisors not yet reaped: pid -> ticks
        self._read_only = read_only  # a dry run: census reads, submit/remove/release never called

    # -- paths --

    def _entry_path(self, job_id: str) -> Path:
        return self._root / "pilots" / f"{job_id}.json"

    def _history_path(self, job_id: str) -> Path:
        return self._root / "history" / f"{job_id}.json"

    def _work_dir(self, job_id: str) -> Path:
        return self._root / "work" / job_id

    def _rc_path(self, job_id: str) -> Path:
        return self._root / "rc" / f"{job_id}.rc"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold ``<state>/local/lock``; waits at most LOCK_TIMEOUT (BatchError after that)."""
        self._root.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + LOCK_TIMEOUT
        with open(self._root / "lock", "a") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise BatchError(f"{self._root / 'lock'} held by another process") from None
                    time.sleep(POLL)
            yield

    # -- the registry --

    def _write(self, entry: LocalPilot) -> None:
        atomic_write_text(self._entry_path(entry.job_id), entry.to_json(), mode=0o600)

    def _scan(self) -> tuple[list[LocalPilot], list[tuple[Path, str | None, str]]]:
        """This factory's registry entries, and the broken ones: (path, label if readable, why)."""
        entries, broken = [], []
        directory = self._root / "pilots"
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

    def _next_cluster(self) -> int:
        """One past the last cluster, persisted before use; BatchError if the counter is corrupt."""
        path = self._root / "cluster"
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
        names = [p.stem for sub in ("pilots", "history") for p in (self._root / sub).glob("*.json")]
        return max((job_key(n)[0] for n in names if _JOB_ID.match(n)), default=0)

    # -- submit --

    def submit(self, label: Label, n: int, context: SubmitContext) -> SubmitOutcome:
        """Register ``n`` pilots as one cluster and start as many as ``max_running`` allows.

        Errors come back in the outcome, with the ids registered before the error.
        """
        try:
            if n < 1:
                raise SubmitRenderError(f"{label.name}: cannot submit {n} pilots")
            command, environment = describe(label, context, SHOWN_JOB_ID)
            directory = Path(log_dir(context.base_log_dir, context.date, label.name))
        except SubmitRenderError as exc:
            log.error("%s: no submission: %s", label.name, exc)
            return SubmitOutcome(error=str(exc))
        if context.dry_run:
            return self._dry_run(label, n, command, environment)
        registered: list[LocalPilot] = []
        try:
            with self._locked():
                directory.mkdir(parents=True, exist_ok=True)
                cluster = self._next_cluster()
                for proc in range(n):
                    job_id = f"{cluster}.{proc}"
                    environment = environment_of(label, context, job_id)
                    registered.append(self._register(label, job_id, command, environment, directory))
                errors = self._start_waiting(self._scan())
        except (OSError, BatchError) as exc:
            errors = [f"{type(exc).__name__}: {exc}"]
        ids = tuple(entry.job_id for entry in registered)
        if ids:
            log.info("%s: submitted %d local pilots %s..%s", label.name, len(ids), ids[0], ids[-1])
        for error in errors:
            log.error("%s: %s", label.name, error)
        return SubmitOutcome(job_ids=ids, error="; ".join(errors), extra={"log_dir": str(directory)})

    def submit_batch(self, requests: SubmitRequests, context: SubmitContext) -> dict[str, SubmitOutcome]:
        """The batch interface: label by label (local pilots need no scheduler round trip)."""
        return submit_each(self, requests, context)

    def _dry_run(
        self, label: Label, n: int, command: list[str], environment: list[tuple[str, str]]
    ) -> SubmitOutcome:
        """Start nothing, write nothing: say what would run (the job id shown as SHOWN_JOB_ID)."""
        line = shlex.join(command)
        env = " ".join(shlex.quote(f"{k}={v}") for k, v in environment)
        log.info("%s: dry run, %d local pilots would run: %s %s", label.name, n, env, line)
        return SubmitOutcome(extra={"command": line, "environment": env, "count": str(n)})

    def _register(
        self,
        label: Label,
        job_id: str,
        command: Sequence[str],
        environment: Sequence[tuple[str, str]],
        directory: Path,
    ) -> LocalPilot:
        entry = LocalPilot(
            job_id=job_id,
            label=label.name,
            factory_id=self._factory_id,
            command=tuple(command),
            environment=tuple(environment),
            stdout=str(directory / f"{job_id}.out"),
            stderr=str(directory / f"{job_id}.err"),
            log=str(directory / f"{job_id}.log"),
            queued=self._clock(),
        )
        _append_log(
            entry.log,
            "000",
            job_id,
            entry.queued,
            f"submitted: label {label.name}, factory {self._factory_id}",
        )
        self._write(entry)
        return entry

    def _start_waiting(self, scan: tuple[list[LocalPilot], list[tuple[Path, str | None, str]]]) -> list[str]:
        """Start idle pilots, oldest first, while there are free slots; returns start errors.

        Broken registry entries count as running: the host limit holds even when one is unreadable.
        """
        entries, broken = scan
        waiting = sorted((e for e in entries if e.state is RunState.IDLE), key=lambda e: job_key(e.job_id))
        free = len(waiting)
        if self._max_running is not None:
            free = self._max_running - (len(entries) - len(waiting)) - len(broken)
        errors = []
        for entry in waiting[: max(0, free)]:
            try:
                self._start(entry)
            except OSError as exc:
                errors.append(f"{entry.job_id} not started: {exc}")
                self._finish(entry, None, self._clock(), f"not started: {exc}")
        return errors

    def _start(self, entry: LocalPilot) -> LocalPilot:
        """Spawn the supervisor for ``entry`` in a new session; the registry says RUNNING after."""
        work, rc_file = self._work_dir(entry.job_id), self._rc_path(entry.job_id)
        work.mkdir(parents=True, exist_ok=True)
        rc_file.parent.mkdir(parents=True, exist_ok=True)
        rc_file.unlink(missing_ok=True)
        self._write(replace(entry, state=RunState.STARTING))
        argv = [
            "/bin/sh",
            "-c",
            SUPERVISOR,
            SUPERVISOR_NAME,
            entry.job_id,
            str(rc_file),
            str(work),
            entry.log,
        ]
        append = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        pid = os.posix_spawn(
            "/bin/sh",
            [*argv, *entry.command],
            {**os.environ, **dict(entry.environment)},
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, entry.stdout, append, 0o644),
                (os.POSIX_SPAWN_OPEN, 2, entry.stderr, append, 0o644),
            ],
            setsid=True,
            setsigmask=(),
            setsigdef=RESET_SIGNALS,
        )
        try:
            return self._record_started(entry, pid)
        except BaseException:
            _kill_untracked(entry.job_id, pid)
            raise

    def _record_started(self, entry: LocalPilot, pid: int) -> LocalPilot:
        """Log and register the started supervisor ``pid`` as RUNNING (OSError if the disk fails)."""
        identity = process_identity(pid)  # our unreaped child: readable even if it already ended
        started = self._clock()
        _append_log(
            entry.log,
            "001",
            entry.job_id,
            started,
            f"started: pid {pid}, command: {shlex.join(entry.command)}",
        )
        ticks = None if identity is None else identity[1]
        running = replace(entry, state=RunState.RUNNING, pid=pid, start_ticks=ticks, started=started)
        self._write(running)
        return running

    # -- census --

    def census(self, labels: Sequence[Label], keep: Collection[str] = ()) -> Census:
        """Finish what ended, start what may start, then count per label (see the module doc);
        every pilot is listed, whatever ``keep`` says."""
        if self._read_only:
            entries, broken = self._scan()
            live = [entry for entry in entries if entry.state is not RunState.RUNNING or self._running(entry)]
            return self._count(labels, live, broken, [])
        try:
            with self._locked():
                return self._census(labels)
        except (OSError, BatchError) as exc:
            return Census(
                dict.fromkeys((label.name for label in labels), None), None, (f"local pilots: {exc}",)
            )

    def _census(self, labels: Sequence[Label]) -> Census:
        self._unreaped = {
            pid: ticks for pid, ticks in self._unreaped.items() if not _reap_supervisor(pid, ticks, 0.0)
        }
        entries, broken = self._scan()
        live = [entry for entry in entries if self._settle(entry)]
        problems = self._start_waiting((live, broken))
        live, broken = self._scan()  # started ones are RUNNING now
        self._prune_history()
        return self._count(labels, live, broken, problems)

    def _running(self, entry: LocalPilot) -> bool:
        """Read-only: a RUNNING entry's supervisor is alive and has written no exit code yet."""
        identity = process_identity(entry.pid) if entry.pid is not None else None
        alive = identity is not None and identity[1] == entry.start_ticks and identity[0] != "Z"
        return alive and self._read_rc(entry.job_id) is None

    def _count(
        self,
        labels: Sequence[Label],
        live: Sequence[LocalPilot],
        broken: Sequence[tuple[Path, str | None, str]],
        problems: Sequence[str],
    ) -> Census:
        problems = [f"local pilot registry {path}: {why}" for path, _, why in broken] + list(problems)
        unknown = {label for _, label, _ in broken}
        pilots: dict[str, list[Pilot]] = {}
        for entry in live:
            pilots.setdefault(entry.label, []).append(entry.as_pilot())
        supply: dict[str, Supply | None] = {}
        for label in labels:
            found = pilots.get(label.name, [])
            if None in unknown or label.name in unknown:
                supply[label.name] = None
            else:
                running = sum(1 for p in found if p.status is JobStatus.RUNNING)
                supply[label.name] = Supply(idle=len(found) - running, running=running)
        by_label = {label: tuple(found) for label, found in pilots.items()}
        return Census(supply, len(live) + len(broken), tuple(problems), by_label)

    def _settle(self, entry: LocalPilot) -> bool:
        """True if ``entry`` is still unfinished; a finished one goes to the history."""
        if entry.state is RunState.IDLE:
            return True
        ended = self._read_rc(entry.job_id)
        if ended is None and entry.state is RunState.RUNNING and self._alive(entry):
            return True
        ended = ended or self._read_rc(entry.job_id)  # it may have finished since the first look
        if ended is not None:
            rc, when = ended
            self._finish(entry, rc, when, "exited" if rc is not None else "exit code file unreadable")
        elif entry.state is RunState.STARTING:
            self._finish(entry, None, self._clock(), "the factory stopped while starting it")
        else:
            self._finish(entry, None, self._clock(), "vanished without an exit code")
        return False

    def _alive(self, entry: LocalPilot) -> bool:
        """The supervisor runs: its pid exists and started when the registry says (no reused pid)."""
        if entry.pid is None or entry.start_ticks is None:
            return False
        identity = process_identity(entry.pid)
        if identity is None or identity[1] != entry.start_ticks:
            return False
        if identity[0] == "Z":
            _reap(entry.pid)
            return False
        return True

    def _read_rc(self, job_id: str) -> tuple[int | None, float] | None:
        """(exit code, end time) from the supervisor's rc file; None while there is none."""
        path = self._rc_path(job_id)
        try:
            words = path.read_text(encoding="utf-8").split()
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return None
        rc = int(words[0]) if words and words[0].isdigit() else None
        ended = float(words[1]) if len(words) > 1 and words[1].isdigit() else mtime
        return rc, ended

    def _finish(
        self, entry: LocalPilot, rc: int | None, ended: float, reason: str, removed: bool = False
    ) -> None:
        """Move ``entry`` to the history and clear what it left (registry, rc file, work dir)."""
        record = FinishedPilot(
            job_id=entry.job_id,
            label=entry.label,
            factory_id=entry.factory_id,
            command=entry.command,
            stdout=entry.stdout,
            stderr=entry.stderr,
            log=entry.log,
            queued=entry.queued,
            started=entry.started,
            ended=ended,
            rc=rc,
            removed=removed,
            reason=reason,
        )
        atomic_write_text(self._history_path(entry.job_id), record.to_json(), mode=0o600)
        self._entry_path(entry.job_id).unlink(missing_ok=True)
        rc_file = self._rc_path(entry.job_id)
        rc_file.unlink(missing_ok=True)
        rc_file.with_name(rc_file.name + ".tmp").unlink(missing_ok=True)
        shutil.rmtree(self._work_dir(entry.job_id), ignore_errors=True)
        if entry.pid is not None and not _reap_supervisor(entry.pid, entry.start_ticks, REAP_WAIT):
            self._unreaped[entry.pid] = entry.start_ticks  # reaped by a later census
        if rc is None:
            _append_log(entry.log, "009", entry.job_id, ended, reason)
        log.info("%s: local pilot %s finished: rc=%s (%s)", entry.label, entry.job_id, rc, reason)

    # -- history --

    def history(self, since: float | None = None) -> list[FinishedPilot]:
        """Finished pilots of this factory that ended at or after ``since``, newest first.

        For the helper that reports finished pilots to the monitor. Unreadable records are
        logged and skipped.
        """
        records = []
        directory = self._root / "history"
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

    def _prune_history(self) -> None:
        """Drop history records older than ``history_keep``, at most every PRUNE_EVERY seconds."""
        now = self._clock()
        if self._last_prune is not None and now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        for record in self.history():
            if record.ended < now - self._history_keep:
                self._history_path(record.job_id).unlink(missing_ok=True)

    # -- remove / release --

    def remove(self, label: Label, job_ids: Sequence[str], reason: str = "") -> None:
        """Remove pilots of ``label``: a waiting one is dropped, a running one's process group
        gets SIGTERM, then SIGKILL after ``kill_grace`` seconds. All are recorded as removed
        (``rc`` None); one that had already ended keeps its exit code and is not marked removed.

        Raises BatchError if a group survived SIGKILL (it is still recorded as removed).
        ``reason`` is not kept: a local pilot's record has no place for it.
        """
        if not job_ids:
            return
        with self._locked():
            targets = self._removal_targets(label, job_ids)
            survivors = self._terminate([entry for entry in targets if entry.state is RunState.RUNNING])
            for entry in targets:
                why = {RunState.RUNNING: "removed", RunState.IDLE: "removed before it started"}
                self._finish(entry, None, self._clock(), why.get(entry.state, "removed"), removed=True)
        if survivors:
            raise BatchError(f"local pilots still running after SIGKILL: {', '.join(survivors)}")

    def _removal_targets(self, label: Label, job_ids: Sequence[str]) -> list[LocalPilot]:
        """The unfinished registry entries to remove (a pilot found ended is settled instead)."""
        targets = []
        for job_id in job_ids:
            path = self._entry_path(job_id)
            try:
                entry = LocalPilot.from_json(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                log.info("%s: local pilot %s not in the registry (finished?)", label.name, job_id)
                continue
            except (OSError, UnicodeDecodeError, RegistryError) as exc:
                log.warning("%s: cannot remove %s: %s: %s", label.name, job_id, path, exc)
                continue
            if entry.label != label.name or entry.factory_id != self._factory_id:
                log.warning("%s: local pilot %s belongs to %s, not removed", label.name, job_id, entry.label)
                continue
            if self._settle(entry):
                targets.append(entry)
        return targets

    def _terminate(self, entries: Sequence[LocalPilot]) -> list[str]:
        """SIGTERM the groups, SIGKILL what is left after the grace; the ids that still run."""
        groups = {entry.job_id: entry.pid for entry in entries if entry.pid is not None}
        _signal_groups(groups, signal.SIGTERM)
        left = _wait_gone(groups, self._kill_grace)
        if left:
            log.warning(
                "local pilots %s ignored SIGTERM for %.1f s: SIGKILL", ", ".join(left), self._kill_grace
            )
            _signal_groups(left, signal.SIGKILL)
            left = _wait_gone(left, KILL_WAIT)
        return sorted(left)

    def release(self, label: Label, job_ids: Sequence[str]) -> None:
        """Nothing to do: a local pilot is never held."""

    def tidy(self, work: Sequence[Tidy]) -> dict[str, str]:
        return tidy_each(self, work)


def _label_of(path: Path) -> str | None:
    """The label of a registry file that is not a valid record, if it can still be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    label = data.get("label") if isinstance(data, dict) else None
    return label if isinstance(label, str) else None


def _signal_groups(groups: Mapping[str, int], sig: signal.Signals) -> None:
    for job_id, pgid in groups.items():
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            log.error("local pilot %s: cannot send %s to group %d: %s", job_id, sig.name, pgid, exc)


def _wait_gone(groups: Mapping[str, int], timeout: float) -> dict[str, int]:
    """Poll until every group is gone or ``timeout`` seconds passed; the groups left."""
    deadline = time.monotonic() + timeout
    while True:
        left = {job_id: pgid for job_id, pgid in groups.items() if _group_alive(pgid)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(POLL)
