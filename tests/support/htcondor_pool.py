"""A real HTCondor personal pool for the ``htcondor`` test group (fixture ``htcondor_pool``).

Where HTCondor comes from: ``APF_TEST_HTCONDOR`` names either

* the directory of ``personal-pool.sh`` (the prebuilt HTCondor beside it is unpacked and run by the
  script; needs root, because the pool runs as the unprivileged ``POOL_USER`` via ``runuser``), or
* an installed HTCondor's prefix (the directory holding ``bin/condor_submit`` and
  ``sbin/condor_master``, e.g. ``/usr`` on a submit host): a private personal pool is configured
  here with the same layout as the script's and run as the current user (as ``POOL_USER`` when
  root). The host's own HTCondor configuration and daemons are not touched.

Without ``APF_TEST_HTCONDOR`` (or when it names neither) every test using the fixture is skipped
with the reason. Environment honoured: ``APF_HTCONDOR_HOME`` (where the pool lives; default
``$TMPDIR/apf-htcondor``, as the script's), ``COLLECTOR_PORT`` (default 19618), ``POOL_USER``
(default ``condorpool``), ``NUM_CPUS`` (default 4). Two sessions at once need distinct
``APF_HTCONDOR_HOME`` and ``COLLECTOR_PORT``.

One pool per test session: it is stopped if it is left over from an earlier session, its state
(job queues, logs) wiped, started, and stopped at the end of the session. ``real_condor`` is the
same pool with both schedds' queues emptied before and after each test. Interface
(:class:`HTCondorPool`): ``env`` (CONDOR_CONFIG and PATH for the pool), ``command(argv)`` (argv
run as the pool user with that environment), ``run(argv)``, ``workdir(name)`` (a fresh
directory the pool user owns: factory state, logs, submit files), ``submit_schedd`` /
``ce_schedd`` (the schedd names), ``ce_endpoint`` (``<hostname>:<collector port>``, the CRIC
HTCONDOR-CE endpoint that makes the factory write ``grid_resource = condor <host> <host>:<port>``),
``jobs(schedd)`` (``condor_q -json`` of one schedd as a list of ads), ``processes()`` (pid ->
command line of the pool's daemons and jobs, e.g. to SIGSTOP a schedd), ``wait_for(predicate)`` and
``python_command(argv)`` (this checkout's python as the pool user, e.g. ``-m autopyfactory``).
The pool's PATH starts with a directory holding the factory's submission program
``autopyfactory-condor-submit`` for that python, so that a factory run as the pool user submits
with this checkout's code (a console script installed for another interpreter may be on PATH too).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ENV_VAR = "APF_TEST_HTCONDOR"
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "personal-pool.sh"
Ad = dict[str, Any]


def _is_root() -> bool:
    return os.geteuid() == 0


@dataclass(frozen=True)
class Found:
    """Where HTCondor was found: ``script`` (personal-pool.sh) or ``prefix`` (installed)."""

    kind: str
    path: Path


def find_htcondor(environ: dict[str, str] | os._Environ[str]) -> Found | str:
    """The HTCondor named by APF_TEST_HTCONDOR, or the reason there is none (the skip reason)."""
    raw = environ.get(ENV_VAR, "")
    if not raw:
        return f"{ENV_VAR} is not set (point it at personal-pool.sh's directory or an HTCondor prefix)"
    path = Path(raw).resolve()
    if (path / SCRIPT).is_file():
        if not _is_root():
            return f"{path / SCRIPT} runs the pool as another user via runuser: needs root"
        return Found("script", path)
    if (path / "bin" / "condor_submit").is_file() and (path / "sbin" / "condor_master").is_file():
        return Found("prefix", path)
    return f"{ENV_VAR}={raw}: neither {SCRIPT} nor bin/condor_submit and sbin/condor_master there"


@dataclass
class HTCondorPool:
    """A running personal pool (see the module docstring)."""

    home: Path
    prefix: Path
    user: str
    collector_port: int
    hostname: str = field(default_factory=socket.gethostname)
    #: An interpreter the pool user can run with this checkout and its dependencies importable
    #: (this session's own when it can; a virtualenv made from a python under /root cannot).
    python: str = sys.executable
    python_env: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.home / "pool" / "condor_config"

    @property
    def programs(self) -> Path:
        """The directory of ``autopyfactory-condor-submit`` for the pool user (first on PATH)."""
        return self.home / "pool" / "apf-bin"

    @property
    def env(self) -> dict[str, str]:
        path = (
            f"{self.programs}:{self.prefix}/bin:{self.prefix}/sbin:{os.environ.get('PATH', '/usr/bin:/bin')}"
        )
        return {"CONDOR_CONFIG": str(self.config), "PATH": path}

    @property
    def submit_schedd(self) -> str:
        return f"factory@{self.hostname}"

    @property
    def ce_schedd(self) -> str:
        return self.hostname

    @property
    def ce_endpoint(self) -> str:
        return f"{self.hostname}:{self.collector_port}"

    def _as_user(self) -> list[str]:
        if _is_root() and self.user != "root":
            return ["runuser", "-u", self.user, "--"]
        return []

    def command(self, argv: Sequence[str], extra_env: dict[str, str] | None = None) -> list[str]:
        """argv run as the pool user with the pool's environment (plus ``extra_env``)."""
        pairs = {**self.env, **(extra_env or {})}
        return [*self._as_user(), "env", *(f"{k}={v}" for k, v in pairs.items()), *argv]

    def run(
        self,
        argv: Sequence[str],
        timeout: float = 60,
        check: bool = True,
        extra_env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(argv, extra_env), capture_output=True, text=True, timeout=timeout, cwd=cwd
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr}")
        return result

    def python_command(self, argv: Sequence[str], extra_env: dict[str, str] | None = None) -> list[str]:
        """``python <argv>`` as the pool user, with this checkout importable."""
        return self.command([self.python, *argv], {**self.python_env, **(extra_env or {})})

    def workdir(self, name: str) -> Path:
        """A fresh, empty directory under the pool's home, owned by the pool user."""
        path = self.home / "work" / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        if _is_root():
            entry = pwd.getpwnam(self.user)
            for part in (self.home / "work", path):
                os.chown(part, entry.pw_uid, entry.pw_gid)
        (self.home / "work").chmod(0o755)
        return path

    def jobs(self, schedd: str | None = None, history: bool = False) -> list[Ad]:
        """All jobs of one schedd (default: the submit schedd) as condor_q/condor_history -json."""
        tool = "condor_history" if history else "condor_q"
        argv = [tool, "-name", schedd or self.submit_schedd, "-json"]
        if not history:
            argv.insert(1, "-allusers")
        out = self.run(argv).stdout.strip()
        return list(json.loads(out)) if out else []

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 120, what: str = "condition") -> Any:
        """Poll ``predicate`` until it returns something truthy (returned); fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.5)

    def processes(self) -> dict[int, list[str]]:
        """This pool's processes (daemons and jobs) and their command lines."""
        found = {}
        for pid in _pool_processes(self.config):
            with contextlib.suppress(OSError):
                found[pid] = (
                    Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
                )
        return found

    def remove_all(self) -> None:
        """Empty both schedds' queues (between tests), including jobs in the middle of removal."""
        for schedd in (self.submit_schedd, self.ce_schedd):
            self.run(["condor_rm", "-name", schedd, "-all"], check=False)
            self.run(["condor_rm", "-name", schedd, "-forcex", "-all"], check=False)


def _settings(environ: dict[str, str] | os._Environ[str]) -> tuple[Path, int, str]:
    tmp = environ.get("TMPDIR", "/tmp")
    home = Path(environ.get("APF_HTCONDOR_HOME") or f"{tmp}/apf-htcondor")
    return home, int(environ.get("COLLECTOR_PORT", "19618")), environ.get("POOL_USER", "condorpool")


def _pool_processes(config: Path) -> list[int]:
    """This pool's processes: started with its CONDOR_CONFIG (the master and its daemons), or
    working in its directory (jobs, whose environment is their own)."""
    marker = f"CONDOR_CONFIG={config}".encode()
    pool_dir = str(config.parent) + "/"
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "environ").read_bytes().split(b"\0") or (
                os.readlink(entry / "cwd") + "/"
            ).startswith(pool_dir):
                pids.append(int(entry.name))
    return pids


def _stop_pool(config: Path, pidfile: Path) -> None:
    """Fast shutdown (SIGQUIT to the master: daemons and jobs go at once), then SIGKILL to
    whatever of this pool is left, so that no daemon outlives the session or meets the next one."""
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pidfile.read_text().strip()), signal.SIGQUIT)
    deadline = time.monotonic() + 30
    while _pool_processes(config) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in _pool_processes(config):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


#: Added to the pool's configuration (config.d): periodic_hold/_remove are evaluated every 5 s
#: instead of every 60 s, so a test waits seconds for the factory's policy to act (or not).
TEST_KNOBS = "PERIODIC_EXPR_INTERVAL = 5\n"


def _prefix_config(home: Path, prefix: Path, port: int, cpus: str, hostname: str) -> str:
    """The script's personal pool, for an installed prefix (same daemons, names and intervals)."""
    local = home / "pool" / "local"
    libexec = (
        prefix / "libexec" / "condor" if (prefix / "libexec" / "condor").is_dir() else prefix / "libexec"
    )
    return f"""RELEASE_DIR = {prefix}
LIBEXEC = {libexec}
LOCAL_DIR = {local}
LOCAL_CONFIG_FILE =
LOCAL_CONFIG_DIR = {home}/pool/config.d
REQUIRE_LOCAL_CONFIG_FILE = False
use ROLE : Personal
CONDOR_HOST = 127.0.0.1
COLLECTOR_HOST = $(CONDOR_HOST):{port}
NETWORK_INTERFACE = 127.0.0.1
BIND_ALL_INTERFACES = False
USE_SHARED_PORT = False
use SECURITY : USER_BASED
SCHEDD_INTERVAL = 5
NEGOTIATOR_INTERVAL = 2
NEGOTIATOR_CYCLE_DELAY = 5
STARTER_UPDATE_INTERVAL = 5
SHADOW_QUEUE_UPDATE_INTERVAL = 10
UPDATE_INTERVAL = 5
RUNBENCHMARKS = 0
NUM_CPUS = {cpus}
MEMORY = 30000
SCHEDD_NAME = factory@{hostname}
GRIDMANAGER_JOB_PROBE_INTERVAL = 10
C_GAHP_CONTACT_SCHEDD_DELAY = 2
DEFAULT_DOMAIN_NAME = localdomain
CE_SCHEDD = $(SCHEDD)
CE_SCHEDD_ARGS = -local-name CE
CE.SCHEDD_NAME = {hostname}
CE.SCHEDD_LOG = $(LOG)/SchedLog.CE
CE.SPOOL = {local}/ce/spool
CE.SCHEDD_ADDRESS_FILE = {local}/ce/spool/.schedd_address
CE.SCHEDD_DAEMON_AD_FILE = {local}/ce/spool/.schedd_classad
CE_SCHEDD_ENVIRONMENT = "_CONDOR_SPOOL={local}/ce/spool"
DAEMON_LIST = $(DAEMON_LIST) CE_SCHEDD
DC_DAEMON_LIST = + CE_SCHEDD
"""


class _Lifecycle:
    """Start and stop the pool the way the found HTCondor needs."""

    def __init__(self, found: Found, environ: dict[str, str] | os._Environ[str]) -> None:
        self.found = found
        self.home, self.port, user = _settings(environ)
        self.user = user if _is_root() else pwd.getpwuid(os.geteuid()).pw_name
        self.cpus = environ.get("NUM_CPUS", "4")
        prefix = self.home / "condor" if found.kind == "script" else found.path
        self.pool = HTCondorPool(self.home, prefix, self.user, self.port)

    def _script(self, action: str) -> None:
        env = {
            **os.environ,
            "APF_HTCONDOR_HOME": str(self.home),
            "COLLECTOR_PORT": str(self.port),
            "POOL_USER": self.user,
            "NUM_CPUS": self.cpus,
        }
        subprocess.run(
            ["bash", str(self.found.path / SCRIPT), action],
            env=env,
            check=True,
            timeout=180,
            capture_output=True,
            text=True,
        )

    def start(self) -> HTCondorPool:
        self.stop()
        shutil.rmtree(self.home / "pool", ignore_errors=True)
        shutil.rmtree(self.home / "work", ignore_errors=True)
        (self.home / "pool" / "config.d").mkdir(parents=True)
        (self.home / "pool" / "config.d" / "50-apf-tests.conf").write_text(TEST_KNOBS)
        if self.found.kind == "script":
            self._script("start")
        else:
            self._start_prefix()
        self.choose_python()
        self.write_programs()
        return self.pool

    def write_programs(self) -> None:
        """``autopyfactory-condor-submit`` for the pool user: this checkout's module, run by the
        python the pool user can run."""
        self.pool.programs.mkdir(parents=True, exist_ok=True)
        script = self.pool.programs / "autopyfactory-condor-submit"
        env = " ".join(f"{key}={shlex.quote(value)}" for key, value in self.pool.python_env.items())
        python = shlex.quote(self.pool.python)
        script.write_text(
            f'#!/bin/sh\nexec env {env} {python} -m autopyfactory.batch.condor.submitter "$@"\n'
        )
        script.chmod(0o755)

    def _start_prefix(self) -> None:
        pool = self.home / "pool"
        for sub in ("log", "spool", "execute", "lock", "run", "cred_dir", "ce/spool"):
            (pool / "local" / sub).mkdir(parents=True, exist_ok=True)
        text = _prefix_config(self.home, self.found.path, self.port, self.cpus, self.pool.hostname)
        self.pool.config.write_text(text)
        if _is_root():
            subprocess.run(["chown", "-R", f"{self.user}:", str(pool)], check=True, timeout=30)
        pool.chmod(0o755)
        self.home.chmod(0o755)
        self.pool.run(["condor_master", "-pidfile", str(pool / "master.pid")])
        self.pool.wait_for(self._up, timeout=90, what="the personal pool's slots and schedds")

    def choose_python(self) -> None:
        """Use this session's interpreter if the pool user can run it, else a system python3 of
        the same version with this checkout and the session's site-packages on PYTHONPATH."""
        probe = ["-c", "import sys; print(sys.version_info[:2])"]
        if self.pool.run([sys.executable, *probe], check=False).returncode == 0:
            return
        paths = {str(ROOT), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        same = str(sys.version_info[:2])
        for candidate in (f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}", "/usr/bin/python3"):
            result = self.pool.run([candidate, *probe], check=False)
            if result.returncode == 0 and result.stdout.strip() == same:
                self.pool.python = candidate
                self.pool.python_env = {"PYTHONPATH": ":".join(sorted(paths))}
                return
        why = f"the pool user {self.user} can run neither {sys.executable} nor a python {same}"
        raise AssertionError(why)

    def _up(self) -> bool:
        slots = self.pool.run(["condor_status", "-af", "Name"], check=False).stdout.split()
        schedds = self.pool.run(["condor_status", "-schedd", "-af", "Name"], check=False).stdout.split()
        return len(slots) >= 1 and len(schedds) >= 2

    def stop(self) -> None:
        _stop_pool(self.pool.config, self.home / "pool" / "master.pid")


@contextlib.contextmanager
def running_pool(environ: dict[str, str] | os._Environ[str]) -> Iterator[HTCondorPool]:
    """A personal pool for a script (benchmarks/cycle_scale.py), started and stopped like the
    fixture's; SystemExit with the reason when there is no HTCondor."""
    found = find_htcondor(environ)
    if isinstance(found, str):
        raise SystemExit(f"no real HTCondor: {found}")
    lifecycle = _Lifecycle(found, environ)
    try:
        yield lifecycle.start()
    finally:
        lifecycle.stop()


@pytest.fixture(scope="session")
def htcondor_pool() -> Iterator[HTCondorPool]:
    """The session's real personal pool; skips the test with the reason when there is no HTCondor."""
    found = find_htcondor(os.environ)
    if isinstance(found, str):
        pytest.skip(f"no real HTCondor: {found}")
    lifecycle = _Lifecycle(found, os.environ)
    try:
        pool = lifecycle.start()
    except (subprocess.SubprocessError, OSError, AssertionError) as exc:
        lifecycle.stop()
        detail = getattr(exc, "stderr", "") or ""
        pytest.fail(f"the real HTCondor pool did not start: {exc} {detail}")
    try:
        yield pool
    finally:
        lifecycle.stop()


@pytest.fixture
def real_condor(htcondor_pool: HTCondorPool) -> Iterator[HTCondorPool]:
    """The session's pool with both schedds' queues emptied before and after the test."""
    htcondor_pool.remove_all()
    yield htcondor_pool
    htcondor_pool.remove_all()
