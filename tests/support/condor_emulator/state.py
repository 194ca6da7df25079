"""The emulator's state directory, shared by every condor_* invocation and by the test driver.

Each command is its own process and several may run at once, so the state is a directory of JSON
files: every update happens under an exclusive ``fcntl`` lock on ``lock`` and files are replaced
atomically (temp file + ``os.replace``), so a reader never sees a half-written file.

Layout::

    schedds/<name>/queue.json    {"next_cluster": 1, "jobs": [job ad, ...]}
    schedds/<name>/history.json  [job ad, ...]   (oldest first, as jobs left the queue)
    faults.json                  {command: [fault, ...]}   injected failures for the next calls
    calls.jsonl                  one {"command", "argv", "time"} line per invocation
    hanging/<pid>                commands sleeping in a "hang" fault, for clean-up

Job ads are stored as condor's own JSON form of a ClassAd after ``json.loads``: literal values are
plain JSON, unevaluated expressions are strings ``"/Expr(...)/"`` (see ``ads.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_ENV = "CONDOR_EMULATOR_STATE"
LOCAL_SCHEDD = "local"  # the schedd a command talks to when it is given no -name

Ad = dict[str, Any]


class UnknownScheddError(LookupError):
    """The -name given to a command is not a schedd configured in the state."""


@dataclass(frozen=True)
class Fault:
    """A failure injected into the next call(s) of one command."""

    kind: str  # "exit", "hang", "garbage"; "queued-exit"/"queued-hang": do the work, then fail/hang
    count: int = 1
    exit_code: int = 1
    message: str | None = None  # stderr for "exit"; None means a condor-like default
    output: str | None = None  # stdout for "garbage"; None means truncated JSON
    seconds: float = 60.0  # sleep for "hang"
    after: int = 0  # "hang-in": the submission program's schedd hangs after this many labels


@dataclass
class Schedd:
    """One schedd's job queue and history, loaded for reading or for an update."""

    name: str
    next_cluster: int = 1
    jobs: list[Ad] = field(default_factory=list)
    history: list[Ad] = field(default_factory=list)


@dataclass(frozen=True)
class State:
    root: Path

    @classmethod
    def from_env(cls) -> State:
        path = os.environ.get(STATE_ENV)
        if not path:
            raise RuntimeError(f"{STATE_ENV} is not set: the HTCondor emulator has no state directory")
        return cls(Path(path))

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.add_schedd(LOCAL_SCHEDD)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with open(self.root / "lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- schedds ---------------------------------------------------------------------------

    def add_schedd(self, name: str) -> None:
        directory = self._schedd_dir(name)
        with self.locked():
            if not directory.exists():
                directory.mkdir(parents=True)
                self._save(Schedd(name))

    def schedd_names(self) -> list[str]:
        return sorted(path.name for path in (self.root / "schedds").iterdir())

    def load(self, name: str | None) -> Schedd:
        """Read one schedd (no lock needed: files are replaced atomically)."""
        name = name or LOCAL_SCHEDD
        directory = self._schedd_dir(name)
        if not directory.is_dir():
            raise UnknownScheddError(name)
        queue = _read(directory / "queue.json", {})
        return Schedd(name, queue["next_cluster"], queue["jobs"], _read(directory / "history.json", []))

    @contextlib.contextmanager
    def update(self, name: str | None) -> Iterator[Schedd]:
        """Load a schedd under the lock and save it when the block ends without an exception."""
        with self.locked():
            schedd = self.load(name)
            yield schedd
            self._save(schedd)

    def config(self, name: str) -> dict[str, Any]:
        """The schedd's configuration knobs the emulator honours (``MAX_JOBS_PER_OWNER``,
        ``SUBMIT_REQUIREMENTS``)."""
        data = _read(self._schedd_dir(name) / "config.json", {})
        return data if isinstance(data, dict) else {}

    def set_config(self, name: str | None, **values: Any) -> None:
        with self.locked():
            directory = self._schedd_dir(name or LOCAL_SCHEDD)
            _write(directory / "config.json", {**self.config(name or LOCAL_SCHEDD), **values})

    def _save(self, schedd: Schedd) -> None:
        """History first: a lock-free reader may see a finished job twice, never in neither file
        (a job missing from both is how a factory decides a pilot went AWOL)."""
        directory = self._schedd_dir(schedd.name)
        _write(directory / "history.json", schedd.history)
        _write(directory / "queue.json", {"next_cluster": schedd.next_cluster, "jobs": schedd.jobs})

    def _schedd_dir(self, name: str) -> Path:
        if not name or "/" in name or name in (".", ".."):
            raise UnknownScheddError(name)
        return self.root / "schedds" / name

    # --- failure injection -----------------------------------------------------------------

    def add_fault(self, command: str, fault: Fault) -> None:
        with self.locked():
            faults = _read(self.root / "faults.json", {})
            faults.setdefault(command, []).append(asdict(fault))
            _write(self.root / "faults.json", faults)

    def begin_call(self, command: str, argv: list[str]) -> Fault | None:
        """Log one invocation and take the fault (if any) it must suffer."""
        with self.locked():
            with open(self.root / "calls.jsonl", "a") as log:
                log.write(json.dumps({"command": command, "argv": argv, "time": time.time()}) + "\n")
            faults = _read(self.root / "faults.json", {})
            pending = faults.get(command, [])
            if not pending:
                return None
            fault = Fault(**pending[0])
            if fault.count > 1:
                pending[0]["count"] = fault.count - 1
            else:
                pending.pop(0)
            _write(self.root / "faults.json", faults)
            return fault

    def calls(self) -> list[dict[str, Any]]:
        path = self.root / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    @contextlib.contextmanager
    def hanging(self) -> Iterator[None]:
        """Register this process while it hangs, so the fixture can kill it at teardown."""
        marker = self.root / "hanging" / str(os.getpid())
        marker.parent.mkdir(exist_ok=True)
        marker.touch()
        try:
            yield
        finally:
            marker.unlink(missing_ok=True)

    def hanging_pids(self) -> list[int]:
        directory = self.root / "hanging"
        return [int(path.name) for path in directory.iterdir()] if directory.exists() else []


def _read(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def _write(path: Path, data: object) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=1)
    os.replace(tmp, path)
