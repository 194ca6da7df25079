"""What a test holds: the ``bin`` directory, the environment, and the levers on the schedds.

The driver changes the same state the emulated commands read, through the same functions, so a
test can play the CE and the schedd: start, hold, complete and remove pilots, age them, make the
next ``condor_q`` hang or print garbage, and read back which commands the factory ran.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import ads as adlib
from .ads import JobStatus
from .commands import COMMAND_NAMES, current_user, queue_jobs, remove_job, schedd_of
from .state import STATE_ENV, Ad, Fault, Schedd, State

REPO_ROOT = Path(__file__).resolve().parents[3]
FAULT_KINDS = ("exit", "hang", "garbage", "queued-exit", "queued-hang", "queued-noise", "hang-in")
_EXECUTABLE = """#!{python}
import sys
sys.path.insert(0, {root!r})
from tests.support.condor_emulator.commands import main
sys.exit(main({command!r}, sys.argv[1:]))
"""


@dataclass(frozen=True)
class Call:
    """One invocation of an emulated command, as logged by the command itself."""

    command: str
    argv: list[str]
    time: float

    @property
    def schedd(self) -> str | None:
        """The -name it was given; None means the local schedd."""
        return schedd_of(self.command, self.argv)


class CondorEmulator:
    """The emulated HTCondor of one test: executables in ``bin_dir``, state in ``state_dir``."""

    def __init__(self, root: Path, hang_seconds: float = 60.0) -> None:
        self.bin_dir = root / "bin"
        self.state_dir = root / "state"
        self.hang_seconds = hang_seconds
        self._state = State(self.state_dir)
        self._state.create()
        self._write_executables()

    @property
    def env(self) -> dict[str, str]:
        """``os.environ`` with the emulator first on PATH, for ``subprocess`` calls."""
        path = f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "PATH": path, STATE_ENV: str(self.state_dir)}

    def patch_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PATH", f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        monkeypatch.setenv(STATE_ENV, str(self.state_dir))

    # --- schedds and jobs ------------------------------------------------------------------

    def add_schedd(self, name: str) -> None:
        """Make ``-name <name>`` a known schedd with its own, empty queue."""
        self._state.add_schedd(name)

    def configure(self, schedd: str | None = None, **knobs: object) -> None:
        """Set schedd configuration the emulator honours: ``MAX_JOBS_PER_OWNER=4``, or
        ``SUBMIT_REQUIREMENTS={"MEM": ["maxMemory <= 16000", '"too much memory"']}`` (name ->
        [requirement, reason expression]: a job for which it is not true refuses the transaction)."""
        self._state.set_config(schedd, **knobs)

    def schedds(self) -> list[str]:
        return self._state.schedd_names()

    def jobs(self, schedd: str | None = None) -> list[Ad]:
        """The ads in a schedd's queue (by job id), as ``json.loads`` of ``condor_q -json``."""
        return adlib.by_job_id(self._state.load(schedd).jobs)

    def history(self, schedd: str | None = None) -> list[Ad]:
        """Jobs that left the queue, oldest first (``condor_history`` prints newest first)."""
        return list(self._state.load(schedd).history)

    def job(self, job_id: str, schedd: str | None = None) -> Ad:
        """One job by id, from the queue or else from the history."""
        loaded = self._state.load(schedd)
        for ad in [*loaded.jobs, *loaded.history]:
            if adlib.job_id(ad) == job_id:
                return ad
        raise LookupError(f"no job {job_id} in schedd {loaded.name}")

    def submit(self, text: str, schedd: str | None = None) -> list[str]:
        """Queue jobs as condor_submit would (e.g. pilots of another factory); returns job ids."""
        return [adlib.job_id(ad) for ad in queue_jobs(self._state, schedd, text, os.getcwd())]

    # --- what the schedd and the CE do -----------------------------------------------------

    def set_status(
        self,
        target: str,
        status: JobStatus | int,
        *,
        schedd: str | None = None,
        at: float | None = None,
        hold_reason: str | None = None,
        hold_reason_code: int | None = None,
        grid_status: str | None = None,
        started: float | None = None,
    ) -> list[str]:
        """Move jobs (a job id, a cluster or a constraint) to ``status`` at time ``at`` (now).

        Running counts a start (JobRunCount); Held sets HoldReason/HoldReasonCode; Completed and
        Removed move the job to the history. For grid jobs GridJobStatus/GridJobId are set as an
        HTCondor-CE reports them (``grid_status`` overrides the name), and ``started`` is when the
        CE started the job (JobCurrentStartDate; default ``at``), as a gridmanager reports it.
        """
        status = JobStatus(status)
        if status == JobStatus.COMPLETED:
            return self.complete(target, schedd=schedd, at=at)
        if status == JobStatus.REMOVED:
            return self.remove(target, schedd=schedd, at=at)
        with self._state.update(schedd) as queue:
            selected = self._select(queue, target)
            for ad in selected:
                self._move(ad, status, _when(at), hold_reason, hold_reason_code, grid_status, started)
        return [adlib.job_id(ad) for ad in selected]

    def complete(self, target: str, exit_code: int = 0, *, schedd: str | None = None,
                 at: float | None = None) -> list[str]:  # fmt: skip
        """The pilot exited with ``exit_code``: Completed, into the history."""
        return self._finish(target, JobStatus.COMPLETED, schedd, at, exit_code=exit_code)

    def remove(self, target: str, reason: str | None = None, *, schedd: str | None = None,
               at: float | None = None) -> list[str]:  # fmt: skip
        """Removed (e.g. by a periodic_remove or an operator), into the history."""
        reason = reason or f"via condor_rm (by user {current_user()})"
        return self._finish(target, JobStatus.REMOVED, schedd, at, reason=reason)

    def age(self, target: str, seconds: float, *, schedd: str | None = None) -> list[str]:
        """Make jobs older: QDate, EnteredCurrentStatus and the start dates move ``seconds`` into
        the past.

        Real time keeps running, so ClassAd ``time()`` in the factory's expressions stays right.
        """
        with self._state.update(schedd) as queue:
            selected = self._select(queue, target)
            for ad in selected:
                for key in ("QDate", "EnteredCurrentStatus", "JobCurrentStartDate", "JobStartDate"):
                    if key in ad:
                        ad[key] -= int(seconds)
        return [adlib.job_id(ad) for ad in selected]

    def run_periodic(self, schedd: str | None = None) -> dict[str, list[str]]:
        """One pass of the schedd's periodic policy (it runs every minute in a real schedd).

        Evaluates each job's periodic_hold/periodic_release/periodic_remove with the real
        classad2 and the real clock; returns the job ids held, released and removed.
        """
        done: dict[str, list[str]] = {"hold": [], "release": [], "remove": []}
        with self._state.update(schedd) as queue:
            now = int(time.time())
            for ad in list(queue.jobs):
                decision = adlib.periodic_action(ad)
                if decision is None:
                    continue
                action, reason = decision
                if action == "hold":
                    adlib.hold(ad, now, reason, code=3)  # 3: JobPolicy
                elif action == "release":
                    adlib.enter(ad, JobStatus.IDLE, now)
                else:
                    remove_job(queue, ad, now, reason)
                done[action].append(adlib.job_id(ad))
        return done

    # --- failures and the call log ---------------------------------------------------------

    def fail_next(
        self,
        command: str,
        kind: str,
        count: int = 1,
        exit_code: int = 1,
        *,
        message: str | None = None,
        output: str | None = None,
        seconds: float | None = None,
        after: int = 0,
    ) -> None:
        """Make the next ``count`` calls of ``command`` fail.

        ``exit``: print ``message`` (default: condor-like) on stderr and exit ``exit_code``;
        ``hang``: sleep ``seconds`` (default ``hang_seconds``) then behave normally;
        ``garbage``: print ``output`` (default: truncated JSON) and exit 0, doing nothing;
        ``queued-exit``: do the work (queue the jobs, print the ids, or ``output`` instead), then
        print ``message`` and exit ``exit_code``; ``queued-hang``: do the work, print, then hang;
        ``queued-noise``: like ``queued-exit``, with stray lines before, between and after the
        output lines; ``hang-in`` (the submission program only): its schedd hangs at the label
        after the first ``after`` ones, whose lines are printed.
        """
        if command not in COMMAND_NAMES or kind not in FAULT_KINDS:
            raise ValueError(f"unknown command {command!r} or kind {kind!r} (kinds: {FAULT_KINDS})")
        seconds = self.hang_seconds if seconds is None else seconds
        self._state.add_fault(command, Fault(kind, count, exit_code, message, output, seconds, after))

    def calls(self, command: str | None = None) -> list[Call]:
        calls = [Call(**call) for call in self._state.calls()]
        return [call for call in calls if command is None or call.command == command]

    def kill_hanging(self) -> None:
        """End commands still sleeping in a "hang" fault (the fixture does this at teardown)."""
        for pid in self._state.hanging_pids():
            if self._runs_our_command(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def _runs_our_command(self, pid: int) -> bool:
        """Guard against a reused pid: the process must be running one of our executables."""
        try:
            return str(self.bin_dir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    # --- internals -------------------------------------------------------------------------

    def _finish(self, target: str, status: JobStatus, schedd: str | None, at: float | None,
                exit_code: int = 0, reason: str = "") -> list[str]:  # fmt: skip
        with self._state.update(schedd) as queue:
            selected = self._select(queue, target)
            for ad in selected:
                if status == JobStatus.REMOVED:
                    remove_job(queue, ad, _when(at), reason)
                else:
                    adlib.finish(ad, status, _when(at), exit_code=exit_code)
                    adlib.set_grid_status(ad, status, None)
                    queue.jobs.remove(ad)
                    queue.history.append(ad)
        return [adlib.job_id(ad) for ad in selected]

    @staticmethod
    def _move(ad: Ad, status: JobStatus, at: int, reason: str | None, code: int | None,
              grid_status: str | None, started: float | None = None) -> None:  # fmt: skip
        if status == JobStatus.HELD:
            adlib.hold(ad, at, reason or f"via condor_hold (by user {current_user()})", code or 1)
        else:
            adlib.enter(ad, status, at, None if started is None else int(started))
        adlib.set_grid_status(ad, status, grid_status)

    @staticmethod
    def _select(queue: Schedd, target: str) -> list[Ad]:
        expr = adlib.parse_expr(adlib.target_constraint(target))
        if expr is None:
            raise ValueError(f"{target!r} is neither a job id, a cluster nor a valid constraint")
        selected = [ad for ad in queue.jobs if adlib.matches(expr, ad)]
        if not selected:
            raise LookupError(f"no job in the queue of schedd {queue.name} matches {target!r}")
        return selected

    def _write_executables(self, commands: Sequence[str] = COMMAND_NAMES) -> None:
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        for command in commands:
            path = self.bin_dir / command
            path.write_text(_EXECUTABLE.format(python=sys.executable, root=str(REPO_ROOT), command=command))
            path.chmod(0o755)


def _when(at: float | None) -> int:
    return int(time.time() if at is None else at)
