"""Running as a daemon: a locked pidfile, optional detaching (python-daemon) and dropping root.

Under systemd (``Type=notify``) the factory stays in the foreground and needs none of this but
perhaps the pidfile. The pidfile is locked with ``flock`` for the life of the process, so a
second factory with the same pidfile refuses to start, and a stale pidfile (its process gone, its
lock released by the kernel) is simply taken over. The lock is checked *before* detaching, so the
refusal reaches the terminal (python-daemon would report it after redirecting the streams).
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
from pathlib import Path
from types import TracebackType
from typing import IO

import daemon


class DaemonError(Exception):
    """Cannot start: another instance runs, or privileges cannot be dropped."""


class PidFile:
    """An flock-held pidfile; usable as python-daemon's ``pidfile`` context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def check(self) -> None:
        """Raise DaemonError when a live process holds the pidfile."""
        self.acquire()
        self.release()

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise DaemonError(f"{self.path} is locked: autopyfactory already runs as pid {holder}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self.path.unlink(missing_ok=True)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> PidFile:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def user_ids(name: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise DaemonError(f"--runas: no user {name!r}") from None
    return entry.pw_uid, entry.pw_gid


def drop_privileges(name: str) -> None:
    """Become user ``name`` (with its groups) when running as root; otherwise it must be us already."""
    uid, gid = user_ids(name)
    if os.geteuid() != 0:
        if os.geteuid() != uid:
            raise DaemonError(f"--runas {name}: only root can change user")
        return
    os.setgroups([g.gr_gid for g in grp.getgrall() if name in g.gr_mem] + [gid])
    os.setgid(gid)
    os.setuid(uid)


def detach(pidfile: PidFile | None, keep_files: list[int]) -> daemon.DaemonContext:
    """A DaemonContext to enter: forks, detaches, keeps the log file open, takes the pidfile."""
    if pidfile is not None:
        pidfile.check()
    return daemon.DaemonContext(
        pidfile=pidfile, files_preserve=keep_files, working_directory="/", umask=0o022, detach_process=True
    )
