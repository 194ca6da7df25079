"""The RPM: `python setup.py bdist --formats=rpm` builds it; its files, config files and scripts.

The build runs on a copy of the checkout in a tmp dir (it writes build/, dist/ and egg-info), with
PYTHONDONTWRITEBYTECODE unset as the README says. Skips when rpmbuild is missing (Debian package
`rpm`; .ci/run installs it).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

ROOT = REPO
sys.path.insert(0, str(ROOT / "packaging"))
import rpm_files  # noqa: E402

pytestmark = pytest.mark.slow

# The RPM's site-packages and console-script interpreter follow the building interpreter's version.
PYTHON = f"python{sys.version_info.major}.{sys.version_info.minor}"

COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "node_modules",
)

CONFIG_FILES = [
    "/etc/autopyfactory/factory.conf",
    "/etc/cron.d/autopyfactory",
    "/etc/logrotate.d/autopyfactory",
    "/etc/sysconfig/autopyfactory",
]

EXPECTED_PATHS = [
    *CONFIG_FILES,
    "/etc/autopyfactory",
    "/etc/autopyfactory/queues.d",
    "/usr/bin/autopyfactory",
    "/usr/bin/autopyfactory-monitor",
    "/usr/libexec/autopyfactory",
    "/usr/libexec/autopyfactory/runpilot3-wrapper.sh",
    "/usr/libexec/autopyfactory/mon-exiting.sh",
    "/usr/libexec/autopyfactory/mon-stale.sh",
    "/usr/lib/systemd/system/autopyfactory.service",
    "/usr/lib/systemd/system/autopyfactory-monitor.service",
    "/usr/lib/systemd/system/autopyfactory-monitor-expire.service",
    "/usr/lib/systemd/system/autopyfactory-monitor-expire.timer",
    "/usr/lib/systemd/system/autopyfactory-monitor-clean.service",
    "/usr/lib/systemd/system/autopyfactory-monitor-clean.timer",
    "/var/log/autopyfactory",
    "/var/lib/autopyfactory",
]


def rpm_query(rpm: Path, *args: str) -> str:
    return subprocess.run(
        ["rpm", "-qp", *args, str(rpm)], check=True, capture_output=True, text=True, timeout=60
    ).stdout


@pytest.fixture(scope="module")
def built_rpm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("rpmbuild") is None or shutil.which("rpm") is None:
        pytest.skip("rpmbuild not installed (Debian: apt-get install -y rpm); the RPM build is not tested")
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools not installed in this interpreter; the RPM build is not tested")
    tmp = tmp_path_factory.mktemp("rpm")
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=COPY_IGNORE)
    (tmp / "dist").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["HOME"] = str(tmp)  # no ~/.rpmmacros of the user's
    # setup.cfg's bdist_rpm `python = python3`: let that be the interpreter running the tests.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
    proc = subprocess.run(
        [sys.executable, "setup.py", "bdist", "--formats=rpm", f"--dist-dir={tmp / 'dist'}"],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "installed (but unpackaged)" not in (proc.stdout + proc.stderr).lower()
    (spec,) = src.glob("build/bdist.*/rpm/SPECS/autopyfactory.spec")
    # a definition of the macro, not a mention (the README, embedded as %description, names it)
    assert not re.search(r"^\s*%(define|global)\s+_unpackaged_files_terminate_build", spec.read_text(), re.M)
    (rpm,) = (tmp / "dist").glob("autopyfactory-*.noarch.rpm")
    return rpm


def test_the_rpm_lists_every_installed_path(built_rpm: Path) -> None:
    listed = set(rpm_query(built_rpm, "-l").splitlines())
    missing = [p for p in EXPECTED_PATHS if p not in listed]
    assert not missing, missing
    site = [p for p in listed if p.endswith("/site-packages/autopyfactory")]
    assert site == [f"/usr/lib/{PYTHON}/site-packages/autopyfactory"], site
    package = site[0]
    for module in (
        "__init__.py",
        "cli/main.py",
        "monitor_service/cli.py",
        "monitor_service/migrations/env.py",
        "monitor_service/migrations/script.py.mako",
        "monitor_service/migrations/versions/0001_initial.py",
        "data/runpilot3-wrapper.sh",
    ):
        assert f"{package}/{module}" in listed, module
    # every template and static file of the monitor (whatever there is in the checkout)
    for sub in ("templates", "static"):
        for f in (ROOT / "autopyfactory" / "monitor_service" / sub).rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts:
                rel = f.relative_to(ROOT / "autopyfactory").as_posix()
                assert f"{package}/{rel}" in listed, rel
    # byte-compiled files are shipped (owned through the package directory)
    tag = sys.implementation.cache_tag
    assert f"{package}/cli/__pycache__/main.{tag}.pyc" in listed
    assert f"{package}/cli/__pycache__/main.{tag}.opt-1.pyc" in listed
    assert not [p for p in listed if p.startswith(("/tmp", "/root", "/work"))]


def test_config_files_are_noreplace_and_dirs_owned_by_the_user(built_rpm: Path) -> None:
    assert sorted(rpm_query(built_rpm, "--configfiles").split()) == sorted(CONFIG_FILES)
    files = {}
    for line in rpm_query(
        built_rpm, "--qf", "[%{FILEFLAGS} %{FILEUSERNAME}:%{FILEMODES:perms} %{FILEGROUPNAME} %{FILENAMES}\n]"
    ).splitlines():
        fileflags, owner_mode, group, path = line.split(" ", 3)
        files[path] = (int(fileflags), owner_mode, group)
    for path in CONFIG_FILES:
        fileflags = files[path][0]
        assert fileflags & 1, (path, fileflags)  # RPMFILE_CONFIG
        assert fileflags & 16, (path, fileflags)  # RPMFILE_NOREPLACE
    assert files["/var/log/autopyfactory"][1] == "autopyfactory:drwxr-xr-x"
    assert files["/var/lib/autopyfactory"][1] == "autopyfactory:drwxr-x---"
    assert files["/usr/libexec/autopyfactory/runpilot3-wrapper.sh"][1] == "root:-rwxr-xr-x"
    assert files["/usr/bin/autopyfactory"][1] == "root:-rwxr-xr-x"
    # may hold tokens and database passwords
    for path in ("/etc/autopyfactory/factory.conf", "/etc/sysconfig/autopyfactory"):
        assert files[path][1:] == ("root:-rw-r-----", "autopyfactory"), path


def test_scripts_create_the_system_user(built_rpm: Path) -> None:
    scripts = rpm_query(built_rpm, "--scripts")
    pre = scripts.split("preinstall scriptlet", 1)[1].split("scriptlet", 1)[0]
    assert "groupadd -r autopyfactory" in pre
    assert "useradd -r -g autopyfactory" in pre
    assert "postinstall scriptlet" in scripts
    assert "systemctl daemon-reload" in scripts


def test_requires_the_interpreter_of_the_console_scripts(built_rpm: Path) -> None:
    requires = rpm_query(built_rpm, "--requires")
    assert f"/usr/bin/{PYTHON}" in requires


def test_requires_what_the_service_imports_and_runs(built_rpm: Path) -> None:
    """Without them the unit restarts forever on ModuleNotFoundError."""
    requires = set(rpm_query(built_rpm, "--requires").splitlines())
    dist = f"{PYTHON}dist"
    for expected in (
        f"{dist}(requests) >= 2.31",
        f"{dist}(python-daemon) >= 3.0",
        f"{dist}(htcondor) >= 24.0",
        f"{dist}(cryptography) >= 42",
        f"{dist}(urllib3) >= 2.0",
        f"{dist}(prometheus-client) >= 0.20",
        "condor",
        "curl",
    ):
        assert expected in requires, (expected, sorted(requires))


def test_short_description_and_the_units_documentation_is_in_the_package(built_rpm: Path) -> None:
    description = rpm_query(built_rpm, "--qf", "%{DESCRIPTION}")
    assert len(description.splitlines()) <= 6
    assert "## " not in description
    assert description.startswith("autopyfactory submits PanDA pilots")
    listed = set(rpm_query(built_rpm, "-l").splitlines())
    unit = (ROOT / "etc" / "systemd" / "autopyfactory.service").read_text()
    documentation = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("Documentation=")]
    assert documentation
    for url in documentation:
        assert url.startswith("file://"), url
        assert url.removeprefix("file://") in listed, (url, sorted(listed))


def test_the_wrapper_in_the_package_is_the_wrapper() -> None:
    link = ROOT / "autopyfactory" / "data" / "runpilot3-wrapper.sh"
    assert link.is_symlink()
    assert os.readlink(link) == "../../wrappers/runpilot3-wrapper.sh"
    assert link.read_bytes() == (ROOT / "wrappers" / "runpilot3-wrapper.sh").read_bytes()


def test_file_list_from_records() -> None:
    root = "/build/root"
    site = "/usr/lib/python3.11/site-packages"
    records = [
        f"{root}{site}/autopyfactory/__init__.py",
        f"{site}/autopyfactory/__pycache__/__init__.cpython-311.pyc",
        f"{site}/autopyfactory-0.1.0-py3.11.egg-info/PKG-INFO",
        "/usr/bin/autopyfactory",
        "/etc/autopyfactory/factory.conf",
        "",
    ]
    out = rpm_files.file_list(records, root, site)
    assert out[:5] == [
        f"{site}/autopyfactory",
        f"{site}/autopyfactory-0.1.0-py3.11.egg-info",
        "/usr/bin/autopyfactory",
        "%config(noreplace) %attr(0640,root,autopyfactory) /etc/autopyfactory/factory.conf",
        "%dir /etc/autopyfactory",
    ]
    assert "%dir %attr(0750,autopyfactory,autopyfactory) /var/lib/autopyfactory" in out
    with pytest.raises(SystemExit):
        rpm_files.file_list(["/usr/bin/a b"], root, site)
    with pytest.raises(SystemExit):
        rpm_files.file_list(["/usr/bin/autopyfactory"], root, site)


def test_plain_setup_install_never_writes_system_files(tmp_path: Path) -> None:
    """install_system_files is a separate command and needs --root; `install` does not run it."""
    proc = subprocess.run(
        [sys.executable, "setup.py", "install_system_files"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "--root" in proc.stderr
    # setup() declares no data file with an absolute path: pip never installs into /etc etc.
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "from setuptools import distutils; from distutils.core import run_setup; "
            "d = run_setup('setup.py', stop_after='init'); "
            "print(repr(d.data_files)); print(d.get_command_class('install').sub_commands)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    data_files, sub_commands = check.stdout.splitlines()[-2:]
    assert data_files in ("None", "[]"), data_files
    assert "install_system_files" not in sub_commands
