"""``<stateDir>/control.json``: the runtime control requests on disk (the rules are in
``domain/control.py``).

Every change is a read-modify-write under an exclusive ``flock`` on ``<stateDir>/.control.lock``
and replaces the file atomically, so the commands and the daemon (which consumes removal
requests) never lose each other's updates and readers never see half a file. It is an edge, not
part of the cycle, because it is a file with a lock: the cycle reads and updates it through its
runtime control port, and the commands write it directly.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from autopyfactory.domain.control import ControlError, Controls, controls_from_json
from autopyfactory.edges.files import atomic_write_text

CONTROL_FILE = "control.json"
LOCK_FILE = ".control.lock"


class InvalidControlFile(ControlError):
    """The control file is there but is no valid control file (not JSON, a wrong field)."""


class ControlStore:
    """``<stateDir>/control.json``, read without a lock and changed under one."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / CONTROL_FILE
        self._lock_path = state_dir / LOCK_FILE

    def read(self) -> Controls:
        """The current controls; no file means none. Raises ControlError when unreadable,
        InvalidControlFile when its content is wrong (the message names the field)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return Controls()
        except OSError as exc:
            raise ControlError(f"{self.path}: {exc.strerror or exc}") from None
        try:
            return controls_from_json(json.loads(text))
        except (ValueError, RecursionError) as exc:
            raise InvalidControlFile(f"{self.path}: {exc}") from None

    def read_or_hold(self) -> Controls:
        """For the daemon: unreadable controls become a problem that holds every queue back."""
        try:
            return self.read()
        except ControlError as exc:
            return Controls(problem=str(exc))

    def update(self, change: Callable[[Controls], Controls]) -> Controls:
        """Apply ``change`` to the current controls atomically; returns the new ones."""
        with self._locked():
            new = change(self.read())
            atomic_write_text(self.path, json.dumps(new.to_json(), indent=1, sort_keys=True) + "\n")
            self._keep_owner(self.path)
        return new

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self._lock_path, os.O_RDONLY | os.O_CREAT, 0o644)  # flock needs no write access
        except OSError as exc:
            raise ControlError(f"{self._lock_path}: {exc.strerror or exc}") from None
        try:
            self._keep_owner(self._lock_path)
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _keep_owner(self, path: Path) -> None:
        """Files root creates in the daemon's state dir belong to the dir's owner (the service user)."""
        if os.geteuid() != 0:
            return
        directory = path.parent.stat()
        if path.stat().st_uid != directory.st_uid:
            os.chown(path, directory.st_uid, directory.st_gid)


def new_removal_id() -> str:
    """A short random id for a removal request (shown to the operator, dropped once done)."""
    return secrets.token_hex(4)
