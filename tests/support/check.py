"""``autopyfactory check`` (and any other command) as a user runs it, on the shipped example
factory.conf with its placeholders filled in as an operator going live would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import CRIC_DUMP, REPO

EXAMPLE = REPO / "etc" / "factory.conf.example"
DUMP = CRIC_DUMP
WRAPPER = REPO / "wrappers" / "runpilot3-wrapper.sh"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``python -m autopyfactory *args`` from the repository, whatever its exit code."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "autopyfactory", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


#: The example's placeholders, replaced as an operator going live would.
LIVE_VALUES = {
    "factoryId = example-factory": "factoryId = cern-factory-1",
    "factoryOwner = admin@example.org": "factoryOwner = atlas-factory-admins@cern.ch",
    "baseLogDirUrl = http://factory.example.org/pilots": "baseLogDirUrl = http://factory1.cern.ch/pilots",
    "executable = /usr/libexec/autopyfactory/runpilot3-wrapper.sh": f"executable = {WRAPPER}",
}


def live_example() -> str:
    """The example's text with its placeholders filled in (same lines, same line numbers)."""
    text = EXAMPLE.read_text()
    for placeholder, value in LIVE_VALUES.items():
        assert placeholder in text
        text = text.replace(placeholder, value)
    return text


def example_with(tmp_path: Path, after: str, lines: str) -> tuple[Path, int]:
    """The live example with ``lines`` inserted after the line ``after``; returns (path, first line)."""
    text = live_example().splitlines(keepends=True)
    at = text.index(after + "\n") + 1
    text[at:at] = [lines]
    path = tmp_path / "factory.conf"
    path.write_text("".join(text))
    return path, at + 1


def findings(output: str, level: str) -> list[str]:
    """The findings of one level (``error``, ``warning``, ``ok``) in check's output, without the prefix."""
    prefix = f"{level}: "
    return [line.removeprefix(prefix) for line in output.splitlines() if line.startswith(prefix)]
