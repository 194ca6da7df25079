"""The files in etc/ run commands that our own argument parsers accept, with the sysconfig values."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from autopyfactory.cli.main import build_parser as factory_parser
from autopyfactory.config import loader as config
from autopyfactory.monitor_service.cli import build_parser as monitor_parser
from tests.support.paths import REPO
from tests.support.waiting import free_port

ETC = REPO / "etc"


def sysconfig() -> dict[str, str]:
    values = {}
    for line in (ETC / "sysconfig" / "autopyfactory").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key] = value
    return values


def expand(command: str, values: dict[str, str]) -> list[str]:
    command = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), ""), command)
    return shlex.split(command)


def exec_start(unit: str) -> list[str]:
    lines = (ETC / "systemd" / unit).read_text().splitlines()
    line = next(text for text in lines if text.startswith("ExecStart="))
    return expand(line.removeprefix("ExecStart="), sysconfig())


def test_factory_unit_command_parses():
    argv = exec_start("autopyfactory.service")
    assert argv[0] == "/usr/bin/autopyfactory"
    args = factory_parser().parse_args(argv[1:])
    assert args.command == "run"
    assert args.config == "/etc/autopyfactory/factory.conf"


def test_monitor_unit_command_parses():
    argv = exec_start("autopyfactory-monitor.service")
    assert argv[0] == "/usr/bin/autopyfactory-monitor"
    args = monitor_parser().parse_args(argv[1:])
    assert args.command == "serve"


def commented_example(*names: str) -> dict[str, str]:
    """The sysconfig values with the commented-out PostgreSQL example lines for ``names`` in force."""
    values = sysconfig()
    for line in (ETC / "sysconfig" / "autopyfactory").read_text().splitlines():
        name, _, value = line.removeprefix("#").partition("=")
        if line.startswith("#") and name in names:
            values[name] = value
    return values


PARSERS = {"/usr/bin/autopyfactory": factory_parser, "/usr/bin/autopyfactory-monitor": monitor_parser}


@pytest.mark.parametrize("unit", sorted(p.name for p in (ETC / "systemd").glob("*.service")))
@pytest.mark.parametrize("example", ["default", "postgresql"])
def test_every_exec_start_parses(unit, example):
    """Every ExecStart of every unit, with the shipped sysconfig and with its PostgreSQL example."""
    values = sysconfig() if example == "default" else commented_example("MONITOR_OPTIONS")
    lines = [t for t in (ETC / "systemd" / unit).read_text().splitlines() if t.startswith("ExecStart=")]
    assert lines
    for line in lines:
        argv = expand(line.removeprefix("ExecStart="), values)
        PARSERS[argv[0]]().parse_args(argv[1:])


def test_the_postgresql_example_runs_several_workers():
    values = commented_example("MONITOR_OPTIONS", "AUTOPYFACTORY_MONITOR_DB")
    argv = expand(
        next(
            t
            for t in (ETC / "systemd" / "autopyfactory-monitor.service").read_text().splitlines()
            if t.startswith("ExecStart=")
        ).removeprefix("ExecStart="),
        values,
    )
    args = monitor_parser().parse_args(["--db", values["AUTOPYFACTORY_MONITOR_DB"], *argv[1:]])
    assert args.workers > 1
    assert args.expire_every is None
    assert args.db.startswith("postgresql+psycopg://")


def test_cron_lines_run_the_shipped_helpers():
    lines = [
        t for t in (ETC / "cron.d" / "autopyfactory").read_text().splitlines() if t and t[0] in "*0123456789"
    ]
    assert [line.split()[6] for line in lines] == [
        "/usr/libexec/autopyfactory/mon-exiting.sh",
        "/usr/libexec/autopyfactory/mon-stale.sh",
    ]


# --- the monitor's expiry and retention -------------------------------------------------------

MONITOR_TIMERS = {"autopyfactory-monitor-expire": "expire", "autopyfactory-monitor-clean": "clean"}
#: The documented retention of final pilots at the monitor (docs/monitor.md), in days.
RETENTION_DAYS = 30


def unit_section(path: Path, section: str) -> dict[str, list[str]]:
    """Each key of ``section`` of the unit file with all its values, in order."""
    found: dict[str, list[str]] = {}
    current = ""
    for line in path.read_text().splitlines():
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_the_monitor_unit_brings_up_its_expiry_and_retention_timers():
    """Enabling the monitor is enough: its unit wants both timers, and they stop with it."""
    monitor = unit_section(ETC / "systemd" / "autopyfactory-monitor.service", "Unit")
    wanted = {name for value in monitor["Wants"] for name in value.split()}
    assert {f"{name}.timer" for name in MONITOR_TIMERS} <= wanted
    for name in MONITOR_TIMERS:
        timer = unit_section(ETC / "systemd" / f"{name}.timer", "Unit")
        assert timer["PartOf"] == ["autopyfactory-monitor.service"]


def test_expiry_runs_every_10_minutes_and_retention_daily():
    expire = unit_section(ETC / "systemd" / "autopyfactory-monitor-expire.timer", "Timer")
    assert expire["OnUnitActiveSec"] == ["10min"]
    assert expire["OnActiveSec"]  # and soon after the monitor starts
    clean = unit_section(ETC / "systemd" / "autopyfactory-monitor-clean.timer", "Timer")
    assert clean["OnCalendar"] == ["*-*-* 03:30:00"]
    assert clean["Persistent"] == ["true"]


@pytest.mark.parametrize("values", ["sysconfig", "unit defaults"])
def test_the_timers_run_expire_and_clean_with_the_documented_retention(values):
    """With the shipped sysconfig, and with an older one that lacks the new variables (an RPM
    upgrade keeps the edited file): expire with the default rules, clean with 30 days."""
    for name, command in MONITOR_TIMERS.items():
        path = ETC / "systemd" / f"{name}.service"
        service = unit_section(path, "Service")
        assert service["Type"] == ["oneshot"]
        defaults = dict(value.split("=", 1) for value in service.get("Environment", []))
        environment = defaults | (sysconfig() if values == "sysconfig" else {})
        (line,) = service["ExecStart"]
        argv = expand(line, environment)
        assert argv[0] == "/usr/bin/autopyfactory-monitor"
        args = monitor_parser().parse_args(argv[1:])
        assert args.command == command
        if command == "clean":
            assert args.days == RETENTION_DAYS
        else:
            assert args.flagged_hours == 24
    assert sysconfig()["MONITOR_RETENTION_DAYS"] == str(RETENTION_DAYS)


def test_the_rpm_installs_every_unit_and_disables_the_timers_on_erase():
    system_files = (REPO / "setup.py").read_text()  # its SYSTEM_FILES: what the RPM installs
    for unit in (ETC / "systemd").iterdir():
        assert re.search(rf'"etc/systemd/{unit.name}",\s*"/usr/lib/systemd/system/{unit.name}"', system_files)
    preun = (REPO / "packaging" / "rpm-preun.sh").read_text()
    assert all(f"{name}.timer" in preun for name in MONITOR_TIMERS)


def test_the_example_config_loads_without_errors():
    loaded = config.load(ETC / "factory.conf.example")
    assert loaded.errors == ()
    assert [q.name for q in loaded.queues] == ["CERN"]


def test_factory_unit_reload_checks_the_config_before_the_sighup():
    """`systemctl reload` fails, saying why, when the new config is broken."""
    lines = (ETC / "systemd" / "autopyfactory.service").read_text().splitlines()
    reload = [expand(t.removeprefix("ExecReload="), sysconfig()) for t in lines if "ExecReload=" in t[:11]]
    assert [argv[0] for argv in reload] == ["/usr/bin/autopyfactory", "/bin/kill"]
    args = factory_parser().parse_args(reload[0][1:])
    assert args.command == "check"
    assert args.config_only
    assert args.config == "/etc/autopyfactory/factory.conf"
    assert reload[1][1:] == ["-HUP"]  # $MAINPID is systemd's, empty here


# --- systemd hardening ----------------------------------------------------------------------

UNITS = tuple(sorted(p.name for p in (ETC / "systemd").glob("*.service")))
MAX_EXPOSURE = 5.0


def unit_settings(unit: str) -> dict[str, list[str]]:
    """Each key of the [Service] section with all its values, in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in (ETC / "systemd" / unit).read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


@pytest.mark.parametrize("unit", UNITS)
def test_units_are_hardened(unit):
    s = unit_settings(unit)
    for key, value in (
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictSUIDSGID", "yes"),
        ("SystemCallArchitectures", "native"),
    ):
        assert s.get(key) == [value], f"{unit}: {key}={s.get(key)}"
    assert "PrivateTmp" in s
    assert s["User"] == ["autopyfactory"]


def writable(s: dict[str, list[str]]) -> list[str]:
    """Directories a ProtectSystem=strict unit may write."""
    paths = [p for v in s.get("ReadWritePaths", []) for p in v.split()]
    paths += [f"/var/lib/{d}" for v in s.get("StateDirectory", []) for d in v.split()]
    paths += [f"/var/log/{d}" for v in s.get("LogsDirectory", []) for d in v.split()]
    return paths


def is_under(path: str, directories: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in directories)


def test_the_factory_may_write_its_default_dirs_and_condor_can_authenticate():
    from autopyfactory.config.schema import Scope, find

    s = unit_settings("autopyfactory.service")
    for key in ("baseLogDir", "stateDir"):
        option = find(key, Scope.FACTORY)
        assert option is not None
        assert is_under(str(option.default), writable(s)), f"{key} default {option.default} read-only"
    assert is_under("/var/log/autopyfactory/factory.log", writable(s))  # ExecStart's --log-file
    # FS authentication: condor_submit creates a directory the schedd names in its /tmp
    assert s["PrivateTmp"] == ["no"]
    assert is_under("/tmp/FS_XXXXXXXXX", writable(s))
    families = s["RestrictAddressFamilies"][0].split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"} <= set(families)  # schedd, interfaces


def test_the_monitor_may_write_its_default_database():
    database = sysconfig()["AUTOPYFACTORY_MONITOR_DB"]
    assert is_under(database, writable(unit_settings("autopyfactory-monitor.service")))


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_security_scores_at_most_5(unit, tmp_path):
    import shutil
    import subprocess

    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is missing (apt-get install systemd; .ci/run does)")
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(ETC / "systemd" / unit)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    if found is None and "offline" in result.stderr.lower():
        pytest.skip(f"this systemd-analyze cannot analyse offline: {result.stderr.strip()[:200]}")
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


# --- the pilot logs served by Apache httpd --------------------------------------------------

HTTPD_SNIPPET = ETC / "httpd" / "autopyfactory-pilots.conf"
APACHE, APACHE_MODULES = "/usr/sbin/apache2", Path("/usr/lib/apache2/modules")
MODULES = ("mpm_event", "authz_core", "alias", "autoindex", "dir", "mime", "rewrite", "headers")


def example_keys() -> dict[str, str]:
    keys = {}
    for line in (ETC / "factory.conf.example").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith(("#", ";")):
            keys[key.strip()] = value.strip()
    return keys


def test_httpd_snippet_serves_the_example_base_log_dir_at_its_url():
    from urllib.parse import urlsplit

    text = HTTPD_SNIPPET.read_text()
    keys = example_keys()
    alias = re.search(r"^Alias (\S+) (\S+)$", text, re.MULTILINE)
    assert alias, "no Alias line"
    assert alias.group(2) == keys["baseLogDir"]
    assert alias.group(1) == urlsplit(keys["baseLogDirUrl"]).path
    assert f"<Directory {keys['baseLogDir']}>" in text
    assert "Options Indexes SymLinksIfOwnerMatch\n" in text
    assert f"RewriteBase {alias.group(1)}/" in text


@pytest.fixture
def httpd(tmp_path):
    """Apache httpd on 127.0.0.1 with etc/'s snippet, its log tree in a world-readable temp dir."""
    import shutil
    import socket
    import subprocess
    import tempfile
    import time

    if not Path(APACHE).exists():
        pytest.skip(f"{APACHE} is missing (apt-get install apache2; .ci/run does)")
    logs = Path(tempfile.mkdtemp(prefix="apf-httpd-"))
    logs.chmod(0o755)  # httpd's worker user must read it
    port = free_port()
    snippet = HTTPD_SNIPPET.read_text().replace("/var/log/autopyfactory/pilots", str(logs))
    loads = "\n".join(
        f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so"
        for m in MODULES
        if (APACHE_MODULES / f"mod_{m}.so").exists()  # else built in
    )
    (tmp_path / "httpd.conf").write_text(
        f"{loads}\nServerRoot {tmp_path}\nListen 127.0.0.1:{port}\nServerName 127.0.0.1\n"
        f"PidFile {tmp_path}/httpd.pid\nErrorLog {tmp_path}/error.log\nUser nobody\nGroup nogroup\n"
        f"TypesConfig /etc/mime.types\nDocumentRoot {logs}\n{snippet}\n"
    )
    process = subprocess.Popen([APACHE, "-f", str(tmp_path / "httpd.conf"), "-DFOREGROUND"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "httpd did not start"
            time.sleep(0.05)
        yield logs, f"http://127.0.0.1:{port}/pilots"
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(logs, ignore_errors=True)


def test_monitor_log_links_resolve_through_the_httpd_snippet(httpd):
    import gzip
    from datetime import UTC, datetime

    import requests

    from autopyfactory.batch.pilot import log_dir
    from autopyfactory.monitor_service.pages import log_links

    logs, url = httpd
    created = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    label = "CERN-ce503.cern.ch-share"
    directory = Path(log_dir(str(logs), "2026-03-02", label))  # where the factory writes them
    directory.mkdir(parents=True)
    for day in (directory.parent, directory):
        day.chmod(0o755)
    (directory / "1023.3.out").write_text("pilot stdout\n")
    (directory / "1023.3.err").write_text("pilot stderr\n")
    (directory / "1023.3.log").write_text("000 (1023.003.000) Job submitted\n")
    (directory / "1023.4.out.gz").write_bytes(gzip.compress(b"compressed stdout\n"))  # logCompressDays
    for file in directory.iterdir():
        file.chmod(0o644)

    with requests.Session() as http:
        http.trust_env = False
        for name, href in log_links(url, created, label, "1023.3"):
            answer = http.get(href, timeout=10)
            assert answer.status_code == 200, (href, answer.status_code)
            assert answer.headers["Content-Type"].startswith("text/plain")
            assert answer.text.startswith({"out": "pilot stdout", "err": "pilot stderr", "log": "000 "}[name])
        [(_, compressed)] = [link for link in log_links(url, created, label, "1023.4") if link[0] == "out"]
        answer = http.get(compressed, timeout=10)
        assert (answer.status_code, answer.text) == (200, "compressed stdout\n")
        assert answer.headers["Content-Type"].startswith("text/plain")
        index = http.get(f"{url}/", timeout=10)
        assert index.status_code == 200
        assert "2026-03-02/" in index.text
        day = http.get(f"{url}/2026-03-02/{label}/", timeout=10)
        assert "1023.3.out" in day.text
        assert "1023.4.out.gz" in day.text
