"""The package stays ruff clean (lint and format), mypy --strict clean and within its import rules;
the shell scripts stay shellcheck clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

ROOT = REPO


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff():
    result = run(sys.executable, "-m", "ruff", "check", "autopyfactory", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format():
    result = run(sys.executable, "-m", "ruff", "format", "--check", "autopyfactory", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict():
    result = run(sys.executable, "-m", "mypy", "autopyfactory")
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (.ci/run installs it)")
    scripts = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("wrappers/*.sh"), *ROOT.glob("cron/*.sh")])
    assert scripts
    result = run("shellcheck", *scripts)
    assert result.returncode == 0, result.stdout


def test_import_rules():
    """The rooms of the package import each other only as pyproject.toml's contracts allow."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = run(str(lint_imports), "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr
