"""The files in etc/ run commands that our own argument parsers accept, with the sysconfig values."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from autopyfactory import config
from autopyfactory.cli import build_parser as factory_parser
from autopyfactory.monitor_service.cli import build_parser as monitor_parser

ETC = Path(__file__).resolve().parent.parent / "etc"


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
    assert args.command == "run" and args.config == "/etc/autopyfactory/factory.conf"


def test_monitor_unit_command_parses():
    argv = exec_start("autopyfactory-monitor.service")
    assert argv[0] == "/usr/bin/autopyfactory-monitor"
    args = monitor_parser().parse_args(argv[1:])
    assert args.command == "serve"


@pytest.mark.parametrize("tool", ["autopyfactory-monitor"])
def test_cron_lines_parse(tool):
    lines = (ETC / "cron.d" / "autopyfactory").read_text().splitlines()
    commands = [text.split(f"/usr/bin/{tool}", 1)[1] for text in lines if f"/usr/bin/{tool}" in text]
    assert commands
    for command in commands:
        monitor_parser().parse_args(shlex.split(command))


def test_the_example_config_loads_without_errors():
    loaded = config.load(ETC / "factory.conf.example")
    assert loaded.errors == ()
    assert [q.name for q in loaded.queues] == ["CERN"]


def test_factory_unit_reload_checks_the_config_before_the_sighup():
    """Issue 14.3: `systemctl reload` fails, saying why, when the new config is broken."""
    lines = (ETC / "systemd" / "autopyfactory.service").read_text().splitlines()
    reload = [expand(t.removeprefix("ExecReload="), sysconfig()) for t in lines if "ExecReload=" in t[:11]]
    assert [argv[0] for argv in reload] == ["/usr/bin/autopyfactory", "/bin/kill"]
    args = factory_parser().parse_args(reload[0][1:])
    assert args.command == "check" and args.config_only and args.config == "/etc/autopyfactory/factory.conf"
    assert reload[1][1:] == ["-HUP"]  # $MAINPID is systemd's, empty here
