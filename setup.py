"""Packaging for autopyfactory (setuptools; see docs/production.md, "Building the RPM").

Two kinds of install use this file:

* ``pip install .`` (or ``-e .``): the Python package, its data (``autopyfactory/data``: the
  pilot wrapper; the monitor's templates, static files and alembic migrations) and the
  console scripts ``autopyfactory``, ``autopyfactory-monitor`` and ``autopyfactory-condor-submit``
  (the HTCondor backend's submission program). Nothing else: no file with an
  absolute path, so even ``pip install .`` as root into a virtualenv never writes to ``/etc`` or
  ``/usr/libexec``.

* ``python setup.py bdist --formats=rpm`` (setuptools' ``bdist_rpm``, options in ``setup.cfg``):
  the RPM. Its ``%install`` section is ``packaging/rpm-install.sh``, which runs ``setup.py
  install --root=$RPM_BUILD_ROOT`` for the Python part and then the custom command
  ``install_system_files`` defined here, which copies the host files listed in
  :data:`SYSTEM_FILES` (``/etc/autopyfactory/factory.conf``, cron, logrotate, sysconfig, the
  systemd units, ``/usr/libexec/autopyfactory/*.sh``) under that root and records them. That
  command is never part of ``install``, ``build`` or a wheel, and it refuses to run without an
  explicit ``--root`` (``--root=/`` installs onto this host, by hand). ``packaging/rpm_files.py``
  then turns the two records into the RPM's file list: ``%config(noreplace)`` for ``/etc``,
  directory entries for the Python package (so whatever byte-compiled files exist are owned
  without listing them one by one), and ``%dir %attr(...)`` for ``/var/log/autopyfactory`` and
  ``/var/lib/autopyfactory``.

The wrapper's only source is ``wrappers/runpilot3-wrapper.sh``;
``autopyfactory/data/runpilot3-wrapper.sh`` is a relative symlink to it, which ``build_py``
copies as a regular file into wheels and installs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from setuptools import Command, find_packages, setup
from setuptools.command.bdist_rpm import bdist_rpm as _bdist_rpm
from setuptools.errors import OptionError


def read_version() -> str:
    """Read ``__version__`` without importing the package (its dependencies may be missing)."""
    for line in Path("autopyfactory/__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip('"')
    raise RuntimeError("no __version__ in autopyfactory/__init__.py")


# Host files of the RPM: (source in this tree, absolute destination, mode). Destinations under
# /etc are configuration (%config(noreplace), see packaging/rpm_files.py).
SYSTEM_FILES: list[tuple[str, str, int]] = [
    # may hold tokens and database passwords: 0640 root:autopyfactory (packaging/rpm_files.py)
    ("etc/factory.conf.example", "/etc/autopyfactory/factory.conf", 0o640),
    ("etc/sysconfig/autopyfactory", "/etc/sysconfig/autopyfactory", 0o640),
    ("etc/cron.d/autopyfactory", "/etc/cron.d/autopyfactory", 0o644),
    ("etc/logrotate/autopyfactory", "/etc/logrotate.d/autopyfactory", 0o644),
    ("etc/systemd/autopyfactory.service", "/usr/lib/systemd/system/autopyfactory.service", 0o644),
    (
        "etc/systemd/autopyfactory-monitor.service",
        "/usr/lib/systemd/system/autopyfactory-monitor.service",
        0o644,
    ),
    (
        "etc/systemd/autopyfactory-monitor-expire.service",
        "/usr/lib/systemd/system/autopyfactory-monitor-expire.service",
        0o644,
    ),
    (
        "etc/systemd/autopyfactory-monitor-expire.timer",
        "/usr/lib/systemd/system/autopyfactory-monitor-expire.timer",
        0o644,
    ),
    (
        "etc/systemd/autopyfactory-monitor-clean.service",
        "/usr/lib/systemd/system/autopyfactory-monitor-clean.service",
        0o644,
    ),
    (
        "etc/systemd/autopyfactory-monitor-clean.timer",
        "/usr/lib/systemd/system/autopyfactory-monitor-clean.timer",
        0o644,
    ),
    # an example to copy into /etc/httpd/conf.d/, not active by itself
    (
        "etc/httpd/autopyfactory-pilots.conf",
        "/usr/share/autopyfactory/httpd/autopyfactory-pilots.conf",
        0o644,
    ),
    ("wrappers/runpilot3-wrapper.sh", "/usr/libexec/autopyfactory/runpilot3-wrapper.sh", 0o755),
    ("cron/mon-exiting.sh", "/usr/libexec/autopyfactory/mon-exiting.sh", 0o755),
    ("cron/mon-stale.sh", "/usr/libexec/autopyfactory/mon-stale.sh", 0o755),
]

# Empty directories the RPM creates (and owns; ownership and modes in packaging/rpm_files.py).
SYSTEM_DIRS: list[str] = [
    "/etc/autopyfactory/queues.d",
    "/var/log/autopyfactory",
    "/var/lib/autopyfactory",
]


class install_system_files(Command):  # distutils command names are lower case
    """Copy :data:`SYSTEM_FILES` under ``--root`` (used by the RPM's %install, never by pip)."""

    description = "install the host files (/etc, /usr/libexec, systemd units) under --root"
    user_options = [  # noqa: RUF012 (distutils API)
        ("root=", None, "install everything relative to this directory (required; '/' for this host)"),
        ("record=", None, "append the installed files, as absolute paths without root, to this file"),
    ]

    def initialize_options(self) -> None:
        self.root: str | None = None
        self.record: str | None = None

    def finalize_options(self) -> None:
        if not self.root:
            raise OptionError("install_system_files needs --root (e.g. --root=$RPM_BUILD_ROOT)")

    def run(self) -> None:
        assert self.root is not None
        root = Path(self.root)
        installed: list[str] = []
        for source, dest, mode in SYSTEM_FILES:
            target = root / dest.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            os.chmod(target, mode)
            installed.append(dest)
        for directory in SYSTEM_DIRS:
            (root / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
        if self.record:
            with open(self.record, "a") as f:
                f.writelines(path + "\n" for path in installed)


INSTALL_REQUIRES = [
    "htcondor>=24.0",
    "requests>=2.31",
    "urllib3>=2.0",
    "python-daemon>=3.0",
    "cryptography>=42",
    "prometheus-client>=0.20",
]

#: What the factory runs besides Python: condor_submit/condor_q (HTCondor) and the wrapper's curl.
RPM_SYSTEM_REQUIRES = ["condor", "curl"]

RPM_DESCRIPTION = """\
autopyfactory submits PanDA pilots through HTCondor (or as local processes) as PanDA queues need
them: it reads factory.conf and the CRIC schedconfig, asks PanDA for activated jobs and HTCondor
for its pilots, decides per queue how many pilots to submit, and reports to an optional
monitoring webservice (autopyfactory-monitor). See /usr/share/doc/autopyfactory/README.md."""


def rpm_requires(python_version: str) -> list[str]:
    """The RPM's Requires: each Python dependency as the ``pythonX.Ydist(name)`` that EL/Fedora
    Python packages provide for the interpreter the RPM is built for (on EL9 with Python 3.11:
    python3.11-requests etc.), then HTCondor and curl."""
    requires = []
    for requirement in INSTALL_REQUIRES:
        name, op, version = re.match(r"([A-Za-z0-9_.-]+)\s*(>=|==)?\s*(\S*)", requirement).groups()
        dist = f"python{python_version}dist({re.sub(r'[-_.]+', '-', name).lower()})"
        requires.append(f"{dist} {op} {version}" if op else dist)
    return [*requires, *RPM_SYSTEM_REQUIRES]


class bdist_rpm(_bdist_rpm):  # distutils command names are lower case
    """bdist_rpm with real Requires for the target interpreter and a short %description."""

    def finalize_package_data(self) -> None:
        super().finalize_package_data()
        version = subprocess.run(
            [self.python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        self.requires = [*(self.requires or []), *rpm_requires(version)]

    def _make_spec_file(self) -> list[str]:
        spec = super()._make_spec_file()
        at = spec.index("%description")
        spec[at + 1] = RPM_DESCRIPTION  # not the whole README
        # %doc files in /usr/share/doc/autopyfactory/ (EL's layout; the unit's Documentation=),
        # also where rpm's own default would add the version
        return ["%define _docdir_fmt %%{NAME}", *spec]


MONITOR = [
    "fastapi>=0.110",
    "sqlalchemy>=2.0",
    "alembic>=1.13",
    "uvicorn>=0.29",
    "httptools>=0.6",  # uvicorn parses HTTP with it (C) instead of h11 (pure Python): about half the CPU
    "uvloop>=0.19",  # and runs on this event loop
    "jinja2>=3.1",
    "fastapi-offline>=1.7",  # Swagger UI and ReDoc assets for /docs and /redoc, served locally
    "python-multipart>=0.0.9",
    "psycopg[binary]>=3.1",
    "typing-extensions>=4.6",  # a TypedDict pydantic validates before Python 3.12 (schemas.JobRow)
]

TEST = [
    *MONITOR,
    "pytest>=8",
    "pytest-timeout>=2.3",
    "hypothesis>=6.100",
    "pytest-httpserver>=1.0",
    "mypy>=1.10",
    "ruff>=0.5",
    "types-requests",
    "selenium>=4.15",
    "import-linter>=2.0",  # the import rules between the package's rooms (pyproject.toml)
    "mkdocs>=1.6",  # the documentation site, built with --strict by tests/test_docs.py (mkdocs.yml)
]

setup(
    name="autopyfactory",
    version=read_version(),
    description="Pilot factory for the PanDA workload system",
    long_description=Path("README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["autopyfactory", "autopyfactory.*"]),
    package_data={
        "autopyfactory": [
            "py.typed",
            "data/*",
            "data/**/*",
            "monitor_service/templates/*",
            "monitor_service/templates/**/*",
            "monitor_service/static/*",
            "monitor_service/static/**/*",
            "monitor_service/migrations/*",
            "monitor_service/migrations/**/*",
        ]
    },
    exclude_package_data={"autopyfactory": ["*.pyc", "*.pyo", "*/__pycache__/*"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require={"monitor": MONITOR, "test": TEST},
    entry_points={
        "console_scripts": [
            "autopyfactory=autopyfactory.cli.main:main",
            "autopyfactory-monitor=autopyfactory.monitor_service.cli:main",
            "autopyfactory-condor-submit=autopyfactory.batch.condor.submitter:main",
        ]
    },
    scripts=[],
    cmdclass={"install_system_files": install_system_files, "bdist_rpm": bdist_rpm},
)
