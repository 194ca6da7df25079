"""The local batch backend (``batch = local``): pilots run as processes on the factory host.

Like APF's Exec plugin, for tests and small sites. It sits behind the same :class:`Backend`
interface as HTCondor, with its own submission and status: the records are kept in files under
``<stateDir>/local/`` (:mod:`.registry`), the pilots run under a small supervisor that records
their exit codes even when the factory is gone (:mod:`.processes`). Every finished supervisor
that is our child is reaped when its pilot is settled (no zombies pile up under a long-running
factory). A pilot whose supervisor was SIGKILLed is recorded with ``rc`` None.

**A started pilot is always tracked or killed.** If its RUNNING registry entry cannot be written
(full or read-only disk), its process group is SIGKILLed at once and it is recorded as not
started: a pilot never runs uncounted, so the next cycle cannot over-submit.

**Waiting pilots.** With ``max_running``, at most that many pilots of this factory run at once;
the others wait in the registry as IDLE and are started first in, first out by later census or
submit calls as slots free up. Nothing starts them while the factory is down: the factory is this
batch system's scheduler. A dry run's backend (``read_only=True``) only reads the registry: no
lock, nothing started, settled or written; a pilot that ended counts as gone, one being started
as running (never fewer pilots than there are, so a dry run never decides more than the daemon).

**For the cron helpers** the history is the finished pilots' source (one checkpoint,
:data:`SOURCE`), the registry the queued ones. The local backend declares no pilot lost: its
history is pruned after ``history_keep`` and an unreadable record is skipped, so a pilot missing
from both does not prove that it vanished.

**Pilot keys.** With ``pilot_keys`` (and a monitor), each pilot gets its own key (domain/pilot_keys.py)
when it is registered: its digest goes into the submission's outcome, the key itself stays in
this backend's memory and reaches only the pilot's own environment when it starts. The registry
on disk holds the pilot's environment without the key. A pilot still waiting when the factory
restarts has lost its key with the factory's memory: it starts without one (its reports are then
refused by a monitor that requires keys; the factory's own reports of its end still count).

Not enforced here: the label's cores, memory, disk and wall time, and the periodic hold/remove
ages of the condor path (housekeeping's ``idleTimeout`` works, through :meth:`remove`).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from autopyfactory.batch.interface import (
    BatchError,
    End,
    EndedPilot,
    Finished,
    Removal,
    Stale,
    StalePilot,
    SubmitContext,
    SubmitOutcome,
    SubmitRequests,
    Tidy,
    removed_pilot,
)
from autopyfactory.batch.local.processes import (
    KILL_GRACE,
    REAP_WAIT,
    append_log,
    kill_untracked,
    process_identity,
    reap_supervisor,
    spawn_supervised,
    supervisor_alive,
    supervisor_seems_alive,
    terminate,
)
from autopyfactory.batch.local.registry import (
    HISTORY_KEEP,
    Broken,
    FinishedPilot,
    LocalPilot,
    Registry,
    RegistryError,
    RunState,
    job_key,
)
from autopyfactory.batch.pilot import SubmitRenderError, log_dir, pilot_arguments, pilot_environment
from autopyfactory.domain.label import Label
from autopyfactory.domain.model import Census, JobStatus, Pilot, Supply
from autopyfactory.domain.pilot_keys import KEY_VARIABLE, key_digest, new_pilot_key

log = logging.getLogger(__name__)

#: The checkpoint name of the local history for the cron helpers.
SOURCE = "batch=local"
#: How a dry run shows the job id a pilot would get (as condor's submit files write it).
SHOWN_JOB_ID = "$(Cluster).$(Process)"


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


def ended_pilot(record: FinishedPilot) -> EndedPilot:
    """A history record in the cron helpers' terms."""
    if record.removed:
        return removed_pilot(record.job_id, record.reason)
    rc = record.rc if record.rc is not None and 0 <= record.rc <= 255 else None
    return EndedPilot(record.job_id, End.COMPLETED, rc, f"Completed: {record.reason}")


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
        pilot_keys: bool = False,
    ) -> None:
        if max_running is not None and max_running < 1:
            raise ValueError(f"max_running must be at least 1 (or None), got {max_running}")
        self._factory_id, self._clock, self._max_running = factory_id, clock, max_running
        self._kill_grace, self._history_keep = kill_grace, history_keep
        self._registry = Registry(Path(state_dir) / "local", factory_id)
        self._unreaped: dict[int, int | None] = {}  # finished supervisors not yet reaped: pid -> ticks
        self._read_only = read_only  # a dry run: census reads, submit/remove never called
        self._pilot_keys = pilot_keys
        self._keys: dict[str, str] = {}  # job id -> the key of a pilot not started yet (memory only)

    def take_over(self, old: LocalBackend) -> None:
        """Carry on for ``old``, the backend of the configuration a reload replaced: the keys of
        its pilots still waiting for a slot (memory only: without them they would start keyless)
        and its finished supervisors not yet reaped (else zombies until the factory exits)."""
        self._keys.update(old._keys)
        self._unreaped.update(old._unreaped)
        old._keys, old._unreaped = {}, {}

    # -- submit --

    def submit(self, requests: SubmitRequests, context: SubmitContext) -> dict[str, SubmitOutcome]:
        """Label by label (local pilots need no scheduler round trip); one label's failure stays
        its own."""
        outcomes: dict[str, SubmitOutcome] = {}
        for label, n in requests:
            try:
                outcomes[label.name] = self._submit_label(label, n, context)
            except Exception as exc:  # noqa: BLE001  one label's failure never stops the others
                outcomes[label.name] = SubmitOutcome(error=f"{type(exc).__name__}: {exc}")
            context.tell_submitted({label.name: outcomes[label.name]})
        return outcomes

    def _submit_label(self, label: Label, n: int, context: SubmitContext) -> SubmitOutcome:
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
        keyed = self._pilot_keys and bool(context.monitor_url)
        digests: dict[str, str] = {}
        try:
            with self._registry.locked():
                directory.mkdir(parents=True, exist_ok=True)
                cluster = self._registry.next_cluster()
                for proc in range(n):
                    job_id = f"{cluster}.{proc}"
                    environment = environment_of(label, context, job_id)
                    registered.append(self._register(label, job_id, command, environment, directory))
                    if keyed:
                        digests[job_id] = self._new_key(job_id)
                failed = self._start_waiting(self._registry.scan())
                errors = [why for _, why in failed]
        except (OSError, BatchError) as exc:
            failed, errors = [], [f"{type(exc).__name__}: {exc}"]
        not_started = {job_id for job_id, _ in failed}  # finished as "not started": never queued
        ids = tuple(entry.job_id for entry in registered if entry.job_id not in not_started)
        if ids:
            log.info("%s: submitted %d local pilots %s..%s", label.name, len(ids), ids[0], ids[-1])
        for error in errors:
            log.error("%s: %s", label.name, error)
        return SubmitOutcome(
            job_ids=ids,
            error="; ".join(errors),
            extra={"log_dir": str(directory)},
            key_digests={job_id: digests[job_id] for job_id in ids if job_id in digests},
        )

    def _new_key(self, job_id: str) -> str:
        """Make the pilot's key, keep it in memory until the pilot starts; its digest."""
        key = self._keys[job_id] = new_pilot_key()
        return key_digest(key)

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
        append_log(
            entry.log,
            "000",
            job_id,
            entry.queued,
            f"submitted: label {label.name}, factory {self._factory_id}",
        )
        self._registry.write(entry)
        return entry

    def _start_waiting(self, scan: tuple[list[LocalPilot], list[Broken]]) -> list[tuple[str, str]]:
        """Start idle pilots, oldest first, while there are free slots; returns (job id, why) of
        those whose start failed (they are finished at once, never announced).

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
                errors.append((entry.job_id, f"{entry.job_id} not started: {exc}"))
                self._finish(entry, None, self._clock(), f"not started: {exc}")
        return errors

    def _start(self, entry: LocalPilot) -> LocalPilot:
        """Spawn the supervisor for ``entry`` in a new session; the registry says RUNNING after."""
        registry = self._registry
        work, rc_file = registry.work_dir(entry.job_id), registry.rc_path(entry.job_id)
        work.mkdir(parents=True, exist_ok=True)
        rc_file.parent.mkdir(parents=True, exist_ok=True)
        rc_file.unlink(missing_ok=True)
        registry.write(replace(entry, state=RunState.STARTING))
        files = (entry.stdout, entry.stderr, entry.log)
        environment = dict(entry.environment)
        key = self._keys.pop(entry.job_id, "")
        if key:
            environment[KEY_VARIABLE] = key
        pid = spawn_supervised(entry.job_id, entry.command, environment, files, work, rc_file)
        try:
            return self._record_started(entry, pid)
        except BaseException:
            kill_untracked(entry.job_id, pid)
            raise

    def _record_started(self, entry: LocalPilot, pid: int) -> LocalPilot:
        """Log and register the started supervisor ``pid`` as RUNNING (OSError if the disk fails)."""
        identity = process_identity(pid)  # our unreaped child: readable even if it already ended
        started = self._clock()
        append_log(
            entry.log,
            "001",
            entry.job_id,
            started,
            f"started: pid {pid}, command: {shlex.join(entry.command)}",
        )
        ticks = None if identity is None else identity[1]
        running = replace(entry, state=RunState.RUNNING, pid=pid, start_ticks=ticks, started=started)
        self._registry.write(running)
        return running

    # -- census --

    def census(
        self, labels: Sequence[Label], keep: Collection[str] = (), started_since: float | None = None
    ) -> Census:
        """Finish what ended, start what may start, then count per label (see the module doc);
        every pilot is listed, whatever ``keep`` says. ``started_since``: see the Backend protocol
        (a running pilot's start is the registry's ``started``)."""
        if self._read_only:
            entries, broken = self._registry.scan()
            live = [entry for entry in entries if entry.state is not RunState.RUNNING or self._running(entry)]
            return self._count(labels, live, broken, [], started_since)
        try:
            with self._registry.locked():
                return self._census(labels, started_since)
        except (OSError, BatchError) as exc:
            return Census(
                dict.fromkeys((label.name for label in labels), None), None, (f"local pilots: {exc}",)
            )

    def _census(self, labels: Sequence[Label], started_since: float | None = None) -> Census:
        self._unreaped = {
            pid: ticks for pid, ticks in self._unreaped.items() if not reap_supervisor(pid, ticks, 0.0)
        }
        entries, broken = self._registry.scan()
        live = [entry for entry in entries if self._settle(entry)]
        problems = [why for _, why in self._start_waiting((live, broken))]
        live, broken = self._registry.scan()  # started ones are RUNNING now
        self._registry.prune_history(self._clock(), self._history_keep)
        return self._count(labels, live, broken, problems, started_since)

    def _running(self, entry: LocalPilot) -> bool:
        """Read-only: a RUNNING entry's supervisor is alive and has written no exit code yet."""
        alive = supervisor_seems_alive(entry.pid, entry.start_ticks)
        return alive and self._registry.read_rc(entry.job_id) is None

    def _count(
        self,
        labels: Sequence[Label],
        live: Sequence[LocalPilot],
        broken: Sequence[Broken],
        problems: Sequence[str],
        started_since: float | None = None,
    ) -> Census:
        problems = [f"local pilot registry {path}: {why}" for path, _, why in broken] + list(problems)
        unknown = {label for _, label, _ in broken}
        pilots: dict[str, list[Pilot]] = {}
        started: dict[str, int] = {}
        for entry in live:
            pilots.setdefault(entry.label, []).append(entry.as_pilot())
            if started_since is not None and _started_since(entry, started_since):
                started[entry.label] = started.get(entry.label, 0) + 1
        supply: dict[str, Supply | None] = {}
        for label in labels:
            found = pilots.get(label.name, [])
            if None in unknown or label.name in unknown:
                supply[label.name] = None
            else:
                running = sum(1 for p in found if p.status is JobStatus.RUNNING)
                supply[label.name] = Supply(
                    idle=len(found) - running, running=running, started=started.get(label.name, 0)
                )
        by_label = {label: tuple(found) for label, found in pilots.items()}
        return Census(supply, len(live) + len(broken), tuple(problems), by_label)

    def _settle(self, entry: LocalPilot) -> bool:
        """True if ``entry`` is still unfinished; a finished one goes to the history."""
        if entry.state is RunState.IDLE:
            return True
        ended = self._registry.read_rc(entry.job_id)
        if (
            ended is None
            and entry.state is RunState.RUNNING
            and supervisor_alive(entry.pid, entry.start_ticks)
        ):
            return True
        ended = ended or self._registry.read_rc(entry.job_id)  # it may have finished since the first look
        if ended is not None:
            rc, when = ended
            self._finish(entry, rc, when, "exited" if rc is not None else "exit code file unreadable")
        elif entry.state is RunState.STARTING:
            self._finish(entry, None, self._clock(), "the factory stopped while starting it")
        else:
            self._finish(entry, None, self._clock(), "vanished without an exit code")
        return False

    def _finish(
        self, entry: LocalPilot, rc: int | None, ended: float, reason: str, removed: bool = False
    ) -> None:
        """Move ``entry`` to the history and clear what it left (registry, rc file, work dir)."""
        self._keys.pop(entry.job_id, None)
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
        self._registry.archive(record)
        if entry.pid is not None and not reap_supervisor(entry.pid, entry.start_ticks, REAP_WAIT):
            self._unreaped[entry.pid] = entry.start_ticks  # reaped by a later census
        if rc is None:
            append_log(entry.log, "009", entry.job_id, ended, reason)
        log.info("%s: local pilot %s finished: rc=%s (%s)", entry.label, entry.job_id, rc, reason)

    def history(self, since: float | None = None) -> list[FinishedPilot]:
        """Finished pilots of this factory that ended at or after ``since``, newest first."""
        return self._registry.history(since)

    # -- remove --

    def remove(self, label: Label, job_ids: Sequence[str], reason: str = "") -> None:
        """Remove pilots of ``label``: a waiting one is dropped, a running one's process group
        gets SIGTERM, then SIGKILL after ``kill_grace`` seconds. All are recorded as removed
        (``rc`` None); one that had already ended keeps its exit code and is not marked removed.

        Raises BatchError if a group survived SIGKILL (it is still recorded as removed).
        ``reason`` is not kept: a local pilot's record has no place for it.
        """
        survivors = self._remove(job_ids, label.name)
        if survivors:
            raise BatchError(f"local pilots still running after SIGKILL: {', '.join(survivors)}")

    def _remove(self, job_ids: Sequence[str], label: str | None) -> list[str]:
        """Remove these pilots (of ``label``, when given); the ids whose group survived SIGKILL."""
        if not job_ids:
            return []
        with self._registry.locked():
            targets = self._removal_targets(job_ids, label)
            survivors = terminate(
                {e.job_id: e.pid for e in targets if e.state is RunState.RUNNING and e.pid is not None},
                self._kill_grace,
            )
            for entry in targets:
                why = {RunState.RUNNING: "removed", RunState.IDLE: "removed before it started"}
                self._finish(entry, None, self._clock(), why.get(entry.state, "removed"), removed=True)
        return survivors

    def _removal_targets(self, job_ids: Sequence[str], label: str | None) -> list[LocalPilot]:
        """The unfinished registry entries to remove (a pilot found ended is settled instead)."""
        targets = []
        who = label or "local"
        for job_id in job_ids:
            try:
                entry = self._registry.read(job_id)
            except FileNotFoundError:
                log.info("%s: local pilot %s not in the registry (finished?)", who, job_id)
                continue
            except (OSError, UnicodeDecodeError, RegistryError) as exc:
                log.warning(
                    "%s: cannot remove %s: %s: %s", who, job_id, self._registry.entry_path(job_id), exc
                )
                continue
            if (label is not None and entry.label != label) or entry.factory_id != self._factory_id:
                log.warning("%s: local pilot %s belongs to %s, not removed", who, job_id, entry.label)
                continue
            if self._settle(entry):
                targets.append(entry)
        return targets

    def tidy(self, work: Sequence[Tidy]) -> dict[str, str]:
        """Label by label (a local pilot is never held: nothing to release); a failure stays
        its label's."""
        failed: dict[str, str] = {}
        for item in work:
            try:
                for reason, job_ids in item.remove.items():
                    self.remove(item.label, job_ids, reason)
            except BatchError as exc:
                failed[item.label.name] = str(exc)
        return failed

    # -- the cron helpers --

    def sources(self) -> tuple[str, ...]:
        return (SOURCE,)

    def finished(self, since: Callable[[str], float]) -> Finished:
        """The history since ``since(SOURCE)``, and the registry's pilots as queued. Without a
        ``<stateDir>/local`` directory this factory never ran a local pilot: nothing is read."""
        if not self._registry.root.is_dir():
            return Finished()
        ended = tuple(ended_pilot(record) for record in self._registry.history(since(SOURCE)))
        entries, _ = self._registry.scan()  # a broken entry's pilot is not traced either
        return Finished(ended, frozenset(entry.job_id for entry in entries), (SOURCE,))

    def trace(self, job_ids: Sequence[str]) -> tuple[EndedPilot, ...]:
        """The pilots of ``job_ids`` in the history, however old; none is declared lost (see the
        module docstring)."""
        wanted = set(job_ids)
        return tuple(ended_pilot(r) for r in self._registry.history() if r.job_id in wanted)

    def stale(self, now: float, older_than: Mapping[JobStatus, int]) -> Stale:
        """Registry entries waiting (idle) or running for longer than allowed."""
        entries, _ = self._registry.scan()
        found = []
        for entry in entries:
            pilot = entry.as_pilot()
            age = int(now) - pilot.entered_status
            if pilot.status in older_than and age > older_than[pilot.status]:
                found.append(StalePilot(pilot.job_id, pilot.status, age, SOURCE))
        return Stale(tuple(found))

    def remove_stale(self, pilots: Sequence[StalePilot], reason: str) -> Removal:
        """Removed as by :meth:`remove`, whatever their label."""
        ids = [pilot.job_id for pilot in pilots]
        try:
            survivors = self._remove(ids, None)
        except (OSError, BatchError) as exc:
            return Removal(problems=(f"local pilots {', '.join(ids)} not removed: {exc}",))
        problems = (f"local pilots still running after SIGKILL: {', '.join(survivors)}",) if survivors else ()
        return Removal(frozenset(ids) - set(survivors), problems)


def _started_since(entry: LocalPilot, since: float) -> bool:
    """A running pilot started at or after ``since``, or with no start time recorded (the safe
    side: it may just have taken a job PanDA still counts as activated)."""
    return entry.state is RunState.RUNNING and (entry.started is None or entry.started >= since)
