"""The local backend's processes: a pilot started under its supervisor, signalled, reaped.

**Exit codes survive the factory.** A pilot is not a child the factory waits for: it is started
through a tiny ``/bin/sh`` supervisor (:data:`SUPERVISOR`) in a new session. The supervisor runs
the pilot in its working directory, then removes that directory, appends the end line to the
pilot's ``.log`` and writes the rc file (write-then-rename, so it is never seen half written).
The pilot's command reaches it as positional parameters (``"$@"``), never spliced into shell
text, so nothing in the arguments is interpreted. The supervisor catches SIGTERM/SIGINT/SIGHUP
(only to outlive its pilot: the pilot itself gets the default dispositions back), so a pilot
killed by a signal is still recorded, as 128+N. Only SIGKILL of the supervisor loses the code.
A shell supervisor rather than a Python runner: it starts in a millisecond and needs nothing
from the factory's virtualenv.

It is started with ``posix_spawn`` (setsid, signals reset to their defaults as ``subprocess``
does, stdin from /dev/null, stdout/stderr appended to the pilot's files), not ``Popen``: no
process object has to outlive the call, so a backend rebuilt on reload, or a new factory process,
treats every pilot alike. The supervisor's pid is also its process group and session id: the
whole pilot is signalled through the group.

**Pid reuse.** A process counts as a pilot's supervisor only if its pid and its start time from
``/proc/<pid>/stat`` both match what was recorded; nothing is signalled otherwise. This needs
Linux (``/proc``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

#: Seconds between SIGTERM and SIGKILL of a removed pilot's process group.
KILL_GRACE = 5.0
#: Seconds to wait for a SIGKILLed group to disappear.
KILL_WAIT = 2.0
#: How long a census waits for a supervisor that wrote its rc file to exit (so it can be reaped).
REAP_WAIT = 1.0
POLL = 0.05

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


def spawn_supervised(
    job_id: str,
    command: Sequence[str],
    environment: Mapping[str, str],
    files: tuple[str, str, str],
    work: Path,
    rc_file: Path,
) -> int:
    """Start ``command`` under the supervisor in a new session; its pid (= process group).

    ``files``: the pilot's stdout, stderr (appended to) and ``.log`` (the supervisor's end line).
    ``environment`` is set on top of the factory's own.
    """
    stdout, stderr, user_log = files
    argv = ["/bin/sh", "-c", SUPERVISOR, SUPERVISOR_NAME, job_id, str(rc_file), str(work), user_log]
    append = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    return os.posix_spawn(
        "/bin/sh",
        [*argv, *command],
        {**os.environ, **environment},
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, stdout, append, 0o644),
            (os.POSIX_SPAWN_OPEN, 2, stderr, append, 0o644),
        ],
        setsid=True,
        setsigmask=(),
        setsigdef=RESET_SIGNALS,
    )


def append_log(path: str, code: str, job_id: str, when: float, text: str) -> None:
    """One line of the pilot's ``.log``, condor user-log style (000 submitted, 001 started, 009
    removed or lost; the supervisor writes 005 ended)."""
    stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{code} ({job_id}) {stamp} {text}\n")
    except OSError as exc:
        log.warning("%s: cannot write %s: %s", job_id, path, exc)


def process_identity(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) from ``/proc/<pid>/stat``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parens
    return fields[0], int(fields[19])


def supervisor_alive(pid: int | None, start_ticks: int | None) -> bool:
    """The supervisor runs: ``pid`` exists and started at ``start_ticks`` (no reused pid). A
    finished one that is our child is reaped on the way."""
    if pid is None or start_ticks is None:
        return False
    identity = process_identity(pid)
    if identity is None or identity[1] != start_ticks:
        return False
    if identity[0] == "Z":
        reap(pid)
        return False
    return True


def supervisor_seems_alive(pid: int | None, start_ticks: int | None) -> bool:
    """:func:`supervisor_alive` without reaping anything (for a reader that changes nothing)."""
    identity = process_identity(pid) if pid is not None else None
    return identity is not None and identity[1] == start_ticks and identity[0] != "Z"


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


def reap(pid: int) -> None:
    """Collect a finished supervisor that is our own child (a no-op for anybody else's)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def kill_untracked(job_id: str, pid: int) -> None:
    """Kill a just-started supervisor's group that could not be registered (full disk): a pilot
    runs only while the registry counts it. Its group is SIGKILLed and waited for (and reaped)."""
    log.error("local pilot %s: registry write failed after start, killing process group %d", job_id, pid)
    signal_groups({job_id: pid}, signal.SIGKILL)
    if wait_gone({job_id: pid}, KILL_WAIT):
        log.error("local pilot %s: process group %d survived SIGKILL", job_id, pid)


def reap_supervisor(pid: int, start_ticks: int | None, wait: float) -> bool:
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
            reap(pid)
        else:
            alive = True
    return alive


def signal_groups(groups: Mapping[str, int], sig: signal.Signals) -> None:
    """Send ``sig`` to each process group (job id -> group id); gone groups are skipped."""
    for job_id, pgid in groups.items():
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            log.error("local pilot %s: cannot send %s to group %d: %s", job_id, sig.name, pgid, exc)


def wait_gone(groups: Mapping[str, int], timeout: float) -> dict[str, int]:
    """Poll until every group is gone or ``timeout`` seconds passed; the groups left."""
    deadline = time.monotonic() + timeout
    while True:
        left = {job_id: pgid for job_id, pgid in groups.items() if _group_alive(pgid)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(POLL)


def terminate(groups: Mapping[str, int], grace: float) -> list[str]:
    """SIGTERM the groups (job id -> group id), SIGKILL what is left after ``grace`` seconds; the
    ids whose group still runs after that."""
    signal_groups(groups, signal.SIGTERM)
    left = wait_gone(groups, grace)
    if left:
        log.warning("local pilots %s ignored SIGTERM for %.1f s: SIGKILL", ", ".join(left), grace)
        signal_groups(left, signal.SIGKILL)
        left = wait_gone(left, KILL_WAIT)
    return sorted(left)
