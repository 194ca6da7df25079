"""Reloads (SIGHUP) of the real daemon: every edge is built anew from the new configuration (the
monitor client with its token, the metrics endpoint), a rejected reload leaves a trace in
``status``, ``status --check`` and the metrics until one is accepted, and repeated reloads leave
nothing behind (threads, sessions, open files, log handlers, metric series): counted in-process
across 20 reloads, not measured as memory."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from autopyfactory.batch.local.backend import LocalBackend
from autopyfactory.config import loader as config
from autopyfactory.observers.monitor import MonitorObserver
from autopyfactory.runtime.service import RunOptions, Service
from autopyfactory.runtime.systemd import Notifier
from tests.support.daemon import start
from tests.support.e2e import job_ids, write_config
from tests.support.refusing_monitor import TokenChecking, announced, refusals, serve_api
from tests.support.waiting import free_port, wait_for


def state(tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "state" / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def status(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autopyfactory", "status", "-c", str(conf), *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def metric(port: int, sample: str) -> float | None:
    """The value of ``sample`` (``name{labels}``) at the metrics endpoint, None when absent or
    when nothing serves there (yet)."""
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.ConnectionError:
        return None
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return None


def test_a_reload_with_the_right_monitor_token_delivers_every_pilot_refused_before(
    tmp_path, stand, condor, daemons
):
    port = free_port()
    api = serve_api(stand.server, TokenChecking("good"))
    stand.stats = {"NDGF-T1": {"activated": 7}}
    monitor = {"monitorURL": api, "monitorToken": "wrong", "metricsPort": port}
    conf = write_config(tmp_path, stand, "[NDGF-T1]", factory=monitor)
    daemon = start(daemons, conf, condor, tmp_path / "f.log")
    wait_for(lambda: state(tmp_path).get("monitor_refused"), what="the refusal in the state file")
    assert state(tmp_path)["monitor_refused"] == "HTTP 401 invalid token"
    check = status(conf, "--check")
    assert check.returncode == 1, check.stdout
    assert check.stdout.startswith("WARNING: the monitor refuses the factory (HTTP 401 invalid token)")
    assert "a configuration error (monitorToken?)" in check.stdout
    assert wait_for(lambda: metric(port, 'apf_config_error{edge="monitor"}') == 1.0)
    assert "monitor: the monitor refuses the factory" in status(conf).stdout
    refused_before = refusals(stand.server)
    submitted = job_ids(condor.jobs())
    assert len(submitted) == 7
    assert announced(stand.server) == []

    conf.write_text(conf.read_text().replace("monitorToken = wrong", "monitorToken = good"))
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log("configuration reloaded")
    wait_for(lambda: sorted(announced(stand.server)) == sorted(submitted), what="every pilot announced")
    assert wait_for(lambda: state(tmp_path).get("monitor_refused") == "", what="the refusal gone")
    assert status(conf, "--check").returncode == 0
    assert wait_for(lambda: metric(port, 'apf_config_error{edge="monitor"}') == 0.0)
    assert refusals(stand.server) <= refused_before + 1  # the one in flight at most: then the new token
    assert daemon.stop() == 0
    assert "items unsent" not in daemon.text()


def test_a_rejected_reload_shows_in_status_check_and_metrics_until_one_is_accepted(
    tmp_path, stand, condor, daemons
):
    port = free_port()
    stand.stats = {"NDGF-T1": {"activated": 7}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]", factory={"metricsPort": port})
    good = conf.read_text()
    daemon = start(daemons, conf, condor, tmp_path / "f.log")
    daemon.wait_log("cycle 0:")
    conf.write_text(good.replace("[Factory]", "[Factory]\nfactoryOwnr = typo"))
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log("reload rejected")
    wait_for(lambda: (state(tmp_path).get("config") or {}).get("rejected_at"), what="the rejection")

    shown = status(conf).stdout
    assert "RELOAD REJECTED: last reload rejected at " in shown
    assert "factoryOwnr: unknown key (did you mean 'factoryOwner'?)" in shown
    assert f"; in force: {conf} as read at " in shown
    assert "(start-up)" in shown
    check = status(conf, "--check")
    assert check.returncode == 1, check.stdout
    assert check.stdout.startswith("WARNING: last reload rejected at ")
    assert wait_for(lambda: metric(port, "apf_config_reload_rejected") == 1.0)
    assert metric(port, 'apf_config_reloads_total{result="rejected"}') == 1.0

    conf.write_text(good)
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log("configuration reloaded")
    wait_for(lambda: (state(tmp_path).get("config") or {}).get("read_by") == "reload", what="accepted")
    assert state(tmp_path)["config"]["rejected_at"] is None
    assert status(conf, "--check").returncode == 0
    assert "REJECTED" not in status(conf).stdout
    assert wait_for(lambda: metric(port, "apf_config_reload_rejected") == 0.0)
    assert metric(port, 'apf_config_reloads_total{result="accepted"}') == 1.0
    assert daemon.stop() == 0


def test_a_reload_moves_the_metrics_endpoint_or_is_rejected_when_the_new_port_is_taken(
    tmp_path, stand, condor, daemons
):
    first, taken, second = free_port(), socket.socket(), free_port()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    conf = write_config(tmp_path, stand, "[TEST-SITE]", factory={"metricsPort": first})
    daemon = start(daemons, conf, condor, tmp_path / "f.log")
    wait_for(lambda: metric(first, "apf_cycles_total"), what="metrics on the first port")

    conf.write_text(conf.read_text().replace(f"= {first}", f"= {taken.getsockname()[1]}"))
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log("reload rejected")
    assert f"metricsPort {taken.getsockname()[1]}: " in daemon.text()
    assert wait_for(lambda: metric(first, "apf_config_reload_rejected") == 1.0)  # the old one serves

    conf.write_text(conf.read_text().replace(f"= {taken.getsockname()[1]}", f"= {second}"))
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log("configuration reloaded")
    assert wait_for(lambda: metric(second, "apf_config_reload_rejected") == 0.0)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{first}/metrics", timeout=5)
    taken.close()
    assert daemon.stop() == 0


def resources(service: Service) -> dict[str, int]:
    """What a reload could leave behind, counted."""
    gc.collect()
    return {
        "threads": threading.active_count(),
        "open files": len(os.listdir("/proc/self/fd")),
        "sessions": sum(isinstance(o, requests.Session) for o in gc.get_objects()),
        "monitor clients": sum(isinstance(o, MonitorObserver) for o in gc.get_objects()),
        "log handlers": sum(
            len(getattr(logger, "handlers", ()))
            for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
        ),
        "metric series": sum(len(metric.samples) for metric in service.metrics.registry.collect()),
    }


def test_repeated_reloads_leave_nothing_behind(tmp_path, stand, condor):
    """Each reload builds a session, a monitor client with its thread and session, and here a
    metrics endpoint on the other of two ports: the old ones must all be gone."""
    api = serve_api(stand.server, TokenChecking("good"))
    stand.stats = {"NDGF-T1": {"activated": 3}}
    ports = [free_port(), free_port()]
    factory = {"monitorURL": api, "monitorToken": "good", "metricsPort": ports[0]}
    conf = write_config(tmp_path, stand, "[NDGF-T1]", factory=factory)
    service = Service(conf, config.load(conf), RunOptions(), Notifier(None))

    def reload_and_cycle(number: int) -> None:
        old, new = ports[number % 2], ports[(number + 1) % 2]
        conf.write_text(conf.read_text().replace(f"metricsPort = {old}", f"metricsPort = {new}"))
        assert service.reload()
        service.factory.run_cycle(number)
        monitor = service.monitor
        assert monitor is not None
        wait_for(lambda: monitor.pending() == 0, what="the monitor client's outbox sent")

    for number in range(3):
        reload_and_cycle(number)
    before = resources(service)
    for number in range(3, 23):
        reload_and_cycle(number)

    def grown() -> dict[str, tuple[int, int]]:
        """What grew by a third of a reload's worth or more over 20 reloads (before, now): what
        a reload leaves behind grows by one or more per reload. A count may grow by a few once (a
        series for an error kind first seen, a connection pool thread started late on a loaded
        machine) or be lower (the third reload's old edges still stopping when ``before`` was
        taken)."""
        now = resources(service)
        return {name: (before[name], now[name]) for name in before if now[name] >= before[name] + 7}

    try:
        wait_for(lambda: not grown(), seconds=30, what="no count grown with the reloads")
    except AssertionError:
        pytest.fail(f"grown over 20 reloads (before, now): {grown()}")
    assert metric(ports[1], 'apf_config_reloads_total{result="accepted"}') == 23.0


def cric_downloads(stand) -> int:
    return sum(request.path == "/cric.json" for request, _response in stand.server.log)


def test_a_reload_keeps_the_schedconfig_dump_until_its_refresh_is_due_or_its_location_changes(
    tmp_path, stand, condor
):
    """Downloading and parsing the whole dump at every reload left the process larger each time
    (a dump of many MB): the new source starts from the old one's dump when both read the same
    location."""
    stand.stats = {"NDGF-T1": {"activated": 3}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]", factory={"schedconfigRefresh": 3600})
    service = Service(conf, config.load(conf), RunOptions(), Notifier(None))
    service.factory.run_cycle(0)
    for number in range(1, 4):
        assert service.reload()
        service.factory.run_cycle(number)
    assert cric_downloads(stand) == 1

    conf.write_text(conf.read_text().replace(stand.cric_url, stand.cric_url + "?moved"))
    assert service.reload()
    service.factory.run_cycle(4)
    assert cric_downloads(stand) == 2


def test_a_reload_hands_the_local_backends_waiting_pilot_keys_to_the_new_one(tmp_path, stand, condor):
    """The keys of local pilots still waiting for a slot live in the backend's memory only: the
    reload's new backend takes them over (else those pilots would start without their key)."""
    api = serve_api(stand.server, TokenChecking("good"))
    factory = {"monitorURL": api, "monitorToken": "good"}
    conf = write_config(tmp_path, stand, "[NDGF-T1]", factory=factory)
    service = Service(conf, config.load(conf), RunOptions(), Notifier(None))
    old = service.factory.backends["local"]
    assert isinstance(old, LocalBackend)
    old._keys["7.0"] = "apfp_waiting"  # as a pilot registered, waiting for a slot, leaves it
    assert service.reload()
    new = service.factory.backends["local"]
    assert isinstance(new, LocalBackend)
    assert new is not old
    assert new._keys == {"7.0": "apfp_waiting"}
    assert old._keys == {}
