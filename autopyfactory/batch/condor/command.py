"""Running HTCondor command-line tools with a timeout and the schedd/pool options."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

from autopyfactory.batch.interface import BatchError

#: How often a query that may be abandoned looks at the stop flag (seconds).
STOP_POLL = 0.2
#: The most of a streamed tool's stdout read at once (bytes): what is in memory before parsing.
CHUNK = 1 << 16
#: How much of a tool's stderr (and, for a streamed tool, stdout) an error message quotes.
MESSAGE = 500


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


def run_condor(
    tool: str, schedd: Schedd, args: Sequence[str], timeout: float, stop: Callable[[], bool] | None = None
) -> str:
    """Run ``tool [-name N] [-pool P] args...`` and return its stdout.

    Raises BatchError on a non-zero exit (with condor's own message), on a timeout (the whole
    process group is killed, so no child lingers) or when the tool is missing; also, within
    STOP_POLL seconds, when ``stop()`` says the factory is stopping (for read-only queries: a
    condor_q in a stopping factory's census is not worth waiting for).
    """
    argv = [tool, *schedd.options(), *args]
    try:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
    except OSError as exc:
        raise BatchError(f"{tool}: cannot run: {exc.strerror or exc}") from None
    deadline = time.monotonic() + timeout
    while True:
        step = deadline - time.monotonic() if stop is None else min(STOP_POLL, deadline - time.monotonic())
        try:
            stdout, stderr = process.communicate(timeout=max(0.0, step))
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                _kill_group(process)
                raise BatchError(f"{tool} ({schedd}): no answer within {timeout:g} s") from None
            if stop is not None and stop():
                _kill_group(process)
                raise BatchError(f"{tool} ({schedd}): abandoned, the factory is stopping") from None
    if process.returncode != 0:
        message = " ".join((stderr or stdout).split())[:500] or "no message"
        raise BatchError(f"{tool} ({schedd}) exited {process.returncode}: {message}")
    return stdout


@dataclass(frozen=True)
class Ran:
    """How a program run by :func:`run_program_keep` went: what it printed, how it ended ("" when
    it exited 0), and whether it started at all."""

    stdout: str
    error: str = ""
    started: bool = True


def run_program_keep(argv: Sequence[str], name: str, schedd: Schedd, timeout: float) -> Ran:
    """Run ``argv`` (a program that talks to ``schedd``) with a timeout, like :func:`run_condor`,
    but never raise: what it printed before it failed or was killed is kept (a submission that
    queued jobs before it failed must not lose their ids)."""
    try:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
    except OSError as exc:
        return Ran("", f"{name}: cannot run: {exc.strerror or exc}", started=False)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        return Ran(_kill_group(process), f"{name} ({schedd}): no answer within {timeout:g} s")
    if process.returncode != 0:
        message = " ".join(stderr.split())[:MESSAGE] or "no message"  # stdout is the program's answer
        return Ran(stdout, f"{name} ({schedd}) exited {process.returncode}: {message}")
    return Ran(stdout)


def _kill_group(process: subprocess.Popen[str]) -> str:
    """Kill the tool's process group; what it printed so far."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    stdout, _ = process.communicate()
    return stdout or ""


def stream_condor(
    tool: str,
    schedd: Schedd,
    args: Sequence[str],
    timeout: float,
    consume: Callable[[bytes], None],
    stop: Callable[[], bool] | None = None,
) -> None:
    """Like :func:`run_condor`, but stdout is handed to ``consume`` piece by piece (at most CHUNK
    bytes each) as it arrives, never held whole: a 100,000-job ``condor_q -json`` is ~25 MB.

    The same guarantees: one total ``timeout`` (reading and waiting for the exit), the process
    group killed on a timeout, on ``stop()`` and when ``consume`` raises (its exception
    propagates); BatchError on a non-zero exit, after all of stdout was consumed, so a caller
    must not trust what it consumed until this returns. stderr goes to an unlinked temporary
    file (a pipe nobody reads could fill and block the tool).
    """
    argv = [tool, *schedd.options(), *args]
    deadline = time.monotonic() + timeout
    with _stderr_file(tool) as errors:
        try:
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, start_new_session=True)
        except OSError as exc:
            raise BatchError(f"{tool}: cannot run: {exc.strerror or exc}") from None
        where = f"{tool} ({schedd})"
        try:
            head = _pump(process, deadline, consume, stop, where, timeout)
            _wait(process, deadline, stop, where, timeout)
        except BaseException:
            _end(process)
            raise
        finally:
            assert process.stdout is not None
            process.stdout.close()
        if process.returncode != 0:
            errors.seek(0)
            text = errors.read(MESSAGE * 4) or head
            message = " ".join(text.decode("utf-8", "replace").split())[:MESSAGE] or "no message"
            raise BatchError(f"{where} exited {process.returncode}: {message}")


def _stderr_file(tool: str) -> IO[bytes]:
    try:
        return tempfile.TemporaryFile()
    except OSError as exc:
        raise BatchError(f"{tool}: cannot run: no temporary file for its stderr: {exc}") from None


def _pump(
    process: subprocess.Popen[bytes],
    deadline: float,
    consume: Callable[[bytes], None],
    stop: Callable[[], bool] | None,
    where: str,
    timeout: float,
) -> bytes:
    """Hand stdout to ``consume`` until its end; the first MESSAGE bytes (for an error message)."""
    assert process.stdout is not None
    fd, head = process.stdout.fileno(), b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            _check(deadline, stop, where, timeout)
            left = deadline - time.monotonic()
            if not selector.select(max(0.0, left if stop is None else min(STOP_POLL, left))):
                continue
            data = os.read(fd, CHUNK)
            if not data:
                return head
            if len(head) < MESSAGE:
                head += data[: MESSAGE - len(head)]
            consume(data)


def _wait(
    process: subprocess.Popen[bytes],
    deadline: float,
    stop: Callable[[], bool] | None,
    where: str,
    timeout: float,
) -> None:
    """Wait for the exit of a tool that closed its stdout, within the same deadline."""
    while True:
        _check(deadline, stop, where, timeout)
        left = deadline - time.monotonic()
        try:
            process.wait(max(0.0, left if stop is None else min(STOP_POLL, left)))
            return
        except subprocess.TimeoutExpired:
            continue


def _check(deadline: float, stop: Callable[[], bool] | None, where: str, timeout: float) -> None:
    if time.monotonic() >= deadline:
        raise BatchError(f"{where}: no answer within {timeout:g} s")
    if stop is not None and stop():
        raise BatchError(f"{where}: abandoned, the factory is stopping")


def _end(process: subprocess.Popen[bytes]) -> None:
    """Kill a streamed tool's process group (unless the tool was reaped: its id may be reused)."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
