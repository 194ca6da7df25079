"""The real daemon, ``autopyfactory run`` in the background with its log in a file, for tests that
signal it, reload it or watch it cycle. The ``daemons`` fixture (tests/conftest.py) kills what a
test left running."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.support.condor_emulator.driver import CondorEmulator
from tests.support.waiting import wait_for


class Daemon:
    """``autopyfactory run -c conf --log-file log *args`` in the background."""

    def __init__(
        self, conf: Path, condor: CondorEmulator, log: Path, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.log = log
        argv = [sys.executable, "-m", "autopyfactory", "run", "-c", str(conf), "--log-file", str(log), *args]
        self.process = subprocess.Popen(
            argv, env=env or condor.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def text(self) -> str:
        """The log so far ("" before the daemon opened it)."""
        return self.log.read_text() if self.log.exists() else ""

    def wait_log(self, fragment: str, count: int = 1, seconds: float = 30.0) -> None:
        """Wait until the log has ``fragment`` ``count`` times; fail (with the log and the
        daemon's stderr) if the daemon exits first or it takes longer than ``seconds``."""
        wait_for(
            lambda: self.text().count(fragment) >= count or self.process.poll() is not None,
            seconds,
            f"{count} x {fragment!r}",
        )
        # the message (and so the read of stderr, which waits for the exit) only on a failure
        assert self.text().count(fragment) >= count, self.text() + self._stderr()

    def _stderr(self) -> str:
        return self.process.stderr.read() if self.process.stderr else ""

    def stop(self, seconds: float = 30.0) -> int:
        """SIGTERM (if still running) and its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(seconds)

    def kill(self) -> None:
        """SIGKILL if still running (what a test left behind)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def start(daemons: list[Daemon], *args: object, **kwargs: object) -> Daemon:
    """A :class:`Daemon` the ``daemons`` fixture stops at the end of the test."""
    daemon = Daemon(*args, **kwargs)  # type: ignore[arg-type]
    daemons.append(daemon)
    return daemon
