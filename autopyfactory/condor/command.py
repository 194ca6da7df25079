"""Running HTCondor command-line tools with a timeout and the schedd/pool options."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from autopyfactory.batch import BatchError


@dataclass(frozen=True)
class Schedd:
    """Which schedd a command talks to: ``-name``/``-pool``; empty strings mean the local one."""

    name: str = ""
    pool: str = ""

    def options(self) -> list[str]:
        opts = ["-name", self.name] if self.name else []
        return opts + (["-pool", self.pool] if self.pool else [])

    def __str__(self) -> str:
        return self.name or "local schedd"


def run_condor(tool: str, schedd: Schedd, args: Sequence[str], timeout: float) -> str:
    """Run ``tool [-name N] [-pool P] args...`` and return its stdout.

    Raises BatchError on a non-zero exit (with condor's own message), on a timeout (the whole
    process group is killed, so no child lingers) or when the tool is missing.
    """
    argv = [tool, *schedd.options(), *args]
    try:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
    except OSError as exc:
        raise BatchError(f"{tool}: cannot run: {exc.strerror or exc}") from None
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise BatchError(f"{tool} ({schedd}): no answer within {timeout:g} s") from None
    if process.returncode != 0:
        message = " ".join((stderr or stdout).split())[:500] or "no message"
        raise BatchError(f"{tool} ({schedd}) exited {process.returncode}: {message}")
    return stdout


def run_condor_keep(tool: str, schedd: Schedd, args: Sequence[str], timeout: float) -> tuple[str, str]:
    """Like :func:`run_condor`, but never raises: (stdout, error message or "").

    What the tool printed before it failed or was killed is kept: ``condor_submit -terse`` may
    have queued jobs before it failed, and their ids must not be thrown away.
    """
    argv = [tool, *schedd.options(), *args]
    try:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
    except OSError as exc:
        return "", f"{tool}: cannot run: {exc.strerror or exc}"
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stdout = _kill_group(process)
        return stdout, f"{tool} ({schedd}): no answer within {timeout:g} s"
    if process.returncode != 0:
        message = " ".join((stderr or stdout).split())[:500] or "no message"
        return stdout, f"{tool} ({schedd}) exited {process.returncode}: {message}"
    return stdout, ""


def _kill_group(process: subprocess.Popen[str]) -> str:
    """Kill the tool's process group; what it printed so far."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    stdout, _ = process.communicate()
    return stdout or ""
