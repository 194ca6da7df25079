"""The demo's pilot processes, wherever they moved: found by a marker in their environment and by
descent, and stopped at the end of the demo.

Stopping a local pilot signals its process group, but pilot 3 leaves it: once it has a job it
moves into a process group of its own (``os.setpgrp`` in its job control) and runs the payload in
a session of its own. Such processes outlive the pilot's group; the demo would leave them running
(and their work directories in ``$TMPDIR``). So every pilot of the demo carries
``APF_DEMO_RUN=<demo directory>`` in its environment (the payload inherits it), and what still
runs with it, or descends from a process that does, is killed when the demo ends. A process is
identified by its pid and its start time, so a reused pid is never signalled. Linux (``/proc``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

MARKER = "APF_DEMO_RUN"
POLL = 0.05


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a running process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parens
    return (int(fields[1]), int(fields[19])) if fields[0] not in ("Z", "X") else None


def _environ(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def demo_processes(run: str) -> dict[int, int]:
    """pid -> start time of every process whose environment says ``APF_DEMO_RUN=<run>``, and of
    every process descended from one of them."""
    table = {
        int(entry.name): stat
        for entry in os.scandir("/proc")
        if entry.name.isdigit() and (stat := _stat(int(entry.name)))
    }
    mark = f"{MARKER}={run}".encode()
    found = {pid for pid in table if mark in _environ(pid)}
    children: dict[int, list[int]] = {}
    for pid, (parent, _start) in table.items():
        children.setdefault(parent, []).append(pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return {pid: table[pid][1] for pid in found}


def kill(processes: dict[int, int], timeout: float) -> list[int]:
    """SIGKILL each process still running with the same start time; wait (at most ``timeout``
    seconds) until they are gone; the pids still there. Our own children are reaped on the way."""
    for pid, start in processes.items():
        stat = _stat(pid)
        if stat is not None and stat[1] == start:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while True:
        for pid in processes:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        left = sorted(pid for pid, start in processes.items() if (stat := _stat(pid)) and stat[1] == start)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(POLL)
