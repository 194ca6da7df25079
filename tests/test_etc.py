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
    assert args.workers > 1 and args.expire_every is None
    assert args.db.startswith("postgresql+psycopg://")


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
