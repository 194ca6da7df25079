"""The package stays ruff clean (lint and format), mypy --strict clean and within its import rules;
the shell scripts stay shellcheck clean; the tests share code only through tests/support/."""

from __future__ import annotations

import ast
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


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return found | {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }


def test_tests_share_code_only_through_tests_support():
    """A test module imports no other test module: what tests share is in tests/support/ (with
    the fixtures in conftest.py files), so moving or deleting one test never breaks another."""
    tests = ROOT / "tests"
    outside = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sorted(tests.rglob("*.py"))
        for module in sorted(_imported_modules(path))
        if module.startswith("tests.")
        and not module.startswith("tests.support.")
        and module != "tests.support"
    ]
    assert outside == []
    helpers = [
        str(path.relative_to(ROOT))
        for path in sorted(tests.rglob("*.py"))
        if not path.name.startswith("test_")
        and path.name not in ("conftest.py", "__init__.py")
        and tests / "support" not in path.parents
    ]
    assert helpers == []  # shared test code lives in tests/support/
