"""``run --dry-run`` with ``batch = local`` next to a live factory's pilots, safe to run beside the
daemon: the dry run reads the local registry but starts, settles and writes nothing in the live state dir."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from autopyfactory.batch.local.processes import process_identity
from autopyfactory.batch.local.registry import LocalPilot
from tests.support.e2e import Stand
from tests.support.factory_conf import write_factory_conf


def registry(state: Path) -> dict[str, bytes]:
    """Every file under the local backend's state, with its content."""
    root = state / "local"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def kill_pilots(state: Path) -> None:
    for path in (state / "local" / "pilots").glob("*.json"):
        entry = LocalPilot.from_json(path.read_text())
        identity = process_identity(entry.pid) if entry.pid else None
        if entry.pid and identity and identity[1] == entry.start_ticks:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(entry.pid, signal.SIGKILL)


def test_dry_run_reads_the_local_registry_and_changes_nothing(tmp_path: Path, httpserver) -> None:
    stand = Stand(httpserver)
    stand.stats = {"LOCALQ": {"activated": 50}}
    pilot = tmp_path / "pilot.sh"
    pilot.write_text("#!/bin/sh\nexit 0\n")  # ends at once: its slot is free for the next
    pilot.chmod(0o755)
    own = {
        "factoryId": "dry-run-factory",
        "pandaserver": stand.panda_url,
        "schedconfig": stand.cric_url,
        "baseLogDir": f"{tmp_path}/logs",
        "baseLogDirUrl": "http://factory1.cern.ch/pilots",
        "stateDir": f"{tmp_path}/state",
        "httpTimeout": 5,
        "httpRetries": 0,
        "localMaxRunning": 1,
        "logMinFreeGB": 0,
    }
    queue = {"autoconfigure": False, "batch": "local", "executable": pilot, "nqueue": 3}
    conf = write_factory_conf(tmp_path, factory=own, queues={"LOCALQ": queue})
    state = tmp_path / "state"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "autopyfactory", "run", "-c", str(conf), "--once", *args],
            capture_output=True, text=True, timeout=90,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done

    try:
        run()  # the live factory: 3 pilots, 1 started, 2 waiting for a slot
        deadline = time.monotonic() + 60
        while not list((state / "local" / "rc").glob("*.rc")):  # the started one has ended
            assert time.monotonic() < deadline, "the first pilot did not end"
            time.sleep(0.05)
        before = registry(state)
        states = sorted(
            LocalPilot.from_json(v.decode()).state.value for k, v in before.items() if "pilots/" in k
        )
        assert states == ["idle", "idle", "running"], states
        done = run("--dry-run", "--dry-run-dir", str(tmp_path / "dry"))
        # (the live daemon's next census settles the ended pilot and starts the next one)
        assert registry(state) == before  # nothing started, settled, locked or written
        assert "LOCALQ-local" in done.stderr
        assert "idle=2 running=0" in done.stderr
    finally:
        kill_pilots(state)
