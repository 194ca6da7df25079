"""The real daemon in a subprocess: signals, reload, pidfile, log rotation, systemd notifications,
held pilots, an expiring proxy, ``status`` and the metrics endpoint."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import requests

from autopyfactory.batch.condor.bulk import SUBMITTER
from tests.support.condor_emulator.ads import JobStatus
from tests.support.daemon import start
from tests.support.e2e import per_label, write_config
from tests.support.proxies import proxy
from tests.support.waiting import free_port, wait_for


def test_sighup_applies_a_good_config_and_rejects_a_broken_one(tmp_path, stand, condor, daemons):
    stand.stats = {"TEST-SITE": {"activated": 5}, "NDGF-T1": {"activated": 50}}
    conf = write_config(tmp_path, stand, "[TEST-SITE]")
    daemon = start(daemons, conf, condor, tmp_path / "factory.log")
    daemon.wait_log("cycle 0:")
    assert set(per_label(condor.jobs())) == {"TEST-SITE-ce01.test.example-default"}

    write_config(tmp_path, stand, "[TEST-SITE]\n[NDGF-T1]")
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log("configuration reloaded: 2 queues (1 added, 0 removed)")
    wait_for(lambda: "NDGF-T1-arc01.ndgf.org-atlas" in per_label(condor.jobs()), what="NDGF pilots")

    conf.write_text(conf.read_text().replace("[Factory]", "[Factory]\nfactoryOwnr = typo"))
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log("reload rejected, the previous configuration stays in force")
    assert "factoryOwnr: unknown key (did you mean 'factoryOwner'?)" in daemon.text()
    cycles = daemon.text().count(", decided ")
    daemon.wait_log(", decided ", count=cycles + 1)  # still cycling, with the old config
    assert daemon.text().rsplit("cycle ", 1)[1].startswith(str(cycles))  # cycle numbers carry on
    assert daemon.stop() == 0
    assert "stopped after" in daemon.text()


def test_sighup_with_a_typo_in_a_queue_section_keeps_the_whole_old_config(tmp_path, stand, condor, daemons):
    """A reload is all-or-nothing for queue sections too: never a half-applied config."""
    stand.stats = {"TEST-SITE": {"activated": 5}}
    conf = write_config(tmp_path, stand, "[TEST-SITE]\n[CERN]")
    daemon = start(daemons, conf, condor, tmp_path / "factory.log")
    daemon.wait_log("cycle 0: 14 labels")
    conf.write_text(conf.read_text().replace("[CERN]", "[CERN]\nnqeue = 3"))
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log("reload rejected, the previous configuration stays in force")
    assert "[CERN] nqeue: unknown key (did you mean 'nqueue'?)" in daemon.text()
    assert "configuration reloaded" not in daemon.text()
    cycles = daemon.text().count(", decided ")
    daemon.wait_log(", decided ", count=cycles + 1)
    assert daemon.text().rsplit("cycle ", 1)[1].split(":")[1].startswith(" 14 labels")  # CERN kept
    assert daemon.stop() == 0


def test_sigterm_during_a_submission_finishes_it_and_submits_nothing_more(tmp_path, stand, condor, daemons):
    stand.stats = {"CERN": {"activated": 26}}
    condor.fail_next(SUBMITTER, "hang")
    conf = write_config(tmp_path, stand, "[CERN]")
    daemon = start(daemons, conf, condor, tmp_path / "factory.log")
    wait_for(lambda: condor.calls(SUBMITTER), what="the first submission")
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(30) == 0
    assert len(condor.calls(SUBMITTER)) == 1  # one per schedd: all 13 labels in it
    hung = f"{SUBMITTER} (local schedd): no answer within"
    assert daemon.text().count(f"error='outcome unknown: {hung}") == 1  # the label it was at
    assert daemon.text().count(f"error='not submitted: {hung}") == 12  # the labels it had not reached
    state = json.loads((tmp_path / "state" / "status.json").read_text())
    assert state["cycle"] == 0
    assert len(state["labels"]) == 13


def test_a_second_factory_with_the_same_pidfile_refuses_to_start(tmp_path, stand, condor, daemons):
    conf = write_config(tmp_path, stand, "[TEST-SITE]")
    pidfile = tmp_path / "apf.pid"
    first = start(daemons, conf, condor, tmp_path / "one.log", "--pidfile", str(pidfile))
    first.wait_log("cycle 0:")
    second = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "run", "-c", str(conf), "--pidfile", str(pidfile), "--once"],
        env=condor.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert second.returncode == 1
    assert f"is locked: autopyfactory already runs as pid {first.process.pid}" in second.stderr
    assert first.stop() == 0
    assert not pidfile.exists()


def test_a_stale_pidfile_is_taken_over(tmp_path, stand, condor):
    conf = write_config(tmp_path, stand, "[TEST-SITE]")
    pidfile = tmp_path / "apf.pid"
    pidfile.write_text("999999\n")  # no such process, no lock held
    result = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "run", "-c", str(conf), "--pidfile", str(pidfile), "--once"],
        env=condor.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_log_file_is_reopened_after_logrotate_moved_it(tmp_path, stand, condor, daemons):
    conf = write_config(tmp_path, stand, "[TEST-SITE]")
    log = tmp_path / "factory.log"
    daemon = start(daemons, conf, condor, log)
    daemon.wait_log("cycle 0:")
    log.rename(tmp_path / "factory.log.1")
    wait_for(lambda: log.exists() and ", decided " in log.read_text(), what="a new log file")
    assert daemon.stop() == 0
    assert "cycle 0:" in (tmp_path / "factory.log.1").read_text()


def test_systemd_notifications(tmp_path, stand, condor, daemons):
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(30)
    conf = write_config(tmp_path, stand, "[TEST-SITE]")
    daemon = start(daemons, conf, condor, tmp_path / "f.log", "--cycles", "2",
                   env={**condor.env, "NOTIFY_SOCKET": address})  # fmt: skip
    messages = []
    while not any("STOPPING=1" in m for m in messages):
        messages.append(listener.recv(4096).decode())
    listener.close()
    assert daemon.process.wait(30) == 0
    assert messages[0].startswith("READY=1\nSTATUS=cycle 0 started")
    statuses = [m for m in messages if m.startswith("STATUS=cycle")]
    assert len(statuses) == 2
    assert all(m.endswith("WATCHDOG=1") for m in statuses)
    assert ", decided" in statuses[0]


def test_held_pilots_are_released_or_removed(tmp_path, stand, condor):
    stand.stats = {}
    queue = "[TEST-SITE]\nholdRecoverableCodes = 12\nholdReleaseBackoff = 60\nholdTimeout = 600\n"
    conf = write_config(tmp_path, stand, queue)
    argv = [sys.executable, "-m", "autopyfactory", "run", "-c", str(conf), "--once"]
    condor.submit(_pilot_submit("TEST-SITE-ce01.test.example-default", 3))
    condor.set_status("1.0", JobStatus.HELD, hold_reason="Transfer input files failure", hold_reason_code=12)
    condor.set_status("1.1", JobStatus.HELD, hold_reason="Error from CE: auth failed", hold_reason_code=2)
    condor.set_status("1.2", JobStatus.HELD, hold_reason="Error from CE: auth failed", hold_reason_code=2)
    condor.age("1.0", 120)
    condor.age("1.1", 700)
    result = subprocess.run(argv, env=condor.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [c.argv[-1] for c in condor.calls("condor_release")] == ["1.0"]
    assert [c.argv[-1] for c in condor.calls("condor_rm")] == ["1.1"]  # 1.2 is not held long enough yet
    assert "housekeeping: released 1, removed 1" in result.stderr


def _pilot_submit(label: str, n: int) -> str:
    return (
        f'universe = vanilla\nexecutable = /bin/true\n+FactoryId = "e2e-factory"\n'
        f'+MATCH_APF_QUEUE = "{label}"\nqueue {n}\n'
    )


def test_a_proxy_near_expiry_stops_submission_for_its_queues(tmp_path, stand, condor):
    stand.stats = {"TEST-SITE": {"activated": 5}, "DOWN-SITE": {"activated": 5}, "NDGF-T1": {"activated": 5}}
    short, good = proxy(tmp_path / "short.pem", 1), proxy(tmp_path / "good.pem", 48)
    queues = f"[NDGF-T1]\nx509userproxy = {short}\n[TEST-SITE]\nx509userproxy = {good}\n"
    conf = write_config(tmp_path, stand, queues)
    result = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "run", "-c", str(conf), "--once"],
        env=condor.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert set(per_label(condor.jobs())) == {"TEST-SITE-ce01.test.example-default"}
    assert f"Credentials: in=3 proxy {short}: " in result.stderr  # NDGF-T1's 5 jobs: 3 + 2
    assert "below proxyMinLifetime 6h: nothing submitted -> 0" in result.stderr
    status = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "status", "-c", str(conf)],
        env=condor.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Credentials:" in status.stdout


def test_status_and_metrics_while_running(tmp_path, stand, condor, daemons):
    port = free_port()
    stand.stats = {"NDGF-T1": {"activated": 7}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]", factory=f"metricsPort = {port}")
    # One cycle only while we look: with the usual 1 s sleep the next cycle (which submits nothing,
    # the depth being reached) would overwrite the state file between the two `status` runs.
    conf.write_text(conf.read_text().replace("\nsleep = 1\n", "\nsleep = 3600\n"))
    daemon = start(daemons, conf, condor, tmp_path / "f.log")
    daemon.wait_log("cycle 0:")  # logged before the observers run: wait for the state file too
    wait_for((tmp_path / "state" / "status.json").exists, what="the state file of cycle 0")

    status = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "status", "-c", str(conf)],
        env=condor.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].startswith("factory e2e-factory (autopyfactory ")
    assert lines[1].startswith("PanDA: activated counts from an answer ")
    header = lines[2].split()
    assert header[:5] == ["label", "PQ", "CE", "status", "PQ-activated"]
    row = next(line for line in lines if line.startswith("NDGF-T1-arc01.ndgf.org-atlas"))
    assert row.split()[1:5] == ["NDGF-T1", "arc01.ndgf.org:2811", "online", "7"]
    as_json = json.loads(subprocess.run(
        [sys.executable, "-m", "autopyfactory", "status", "-c", str(conf), "--json"],
        env=condor.env, capture_output=True, text=True, timeout=60).stdout)  # fmt: skip
    assert as_json["labels"]["NDGF-T1-arc02.ndgf.org-atlas"]["submitted"] == 3  # 7 jobs: 4 + 3

    submitted = 'apf_pilots_submitted_total{label="NDGF-T1-arc01.ndgf.org-atlas"} 4.0'

    def metrics_of_cycle_0() -> str | None:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        return text if submitted in text else None

    metrics = wait_for(metrics_of_cycle_0, what="the metrics of cycle 0")
    assert 'apf_activated_jobs{pq="NDGF-T1"} 7.0' in metrics
    assert 'apf_last_success_timestamp_seconds{source="condor"}' in metrics
    assert "cycle 1:" not in daemon.text()  # what was read above all came from cycle 0
    assert daemon.stop() == 0


def test_status_before_any_cycle_says_so(tmp_path, stand):
    conf = write_config(tmp_path, stand, "[TEST-SITE]")
    result = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "status", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert result.returncode == 1
    assert "has the factory run a cycle yet?" in result.stderr


def test_daemon_mode_detaches_and_holds_the_pidfile(tmp_path, stand, condor):
    conf = write_config(tmp_path, stand, "[TEST-SITE]")
    pidfile, log = tmp_path / "apf.pid", tmp_path / "daemon.log"
    result = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "run", "-c", str(conf), "--daemon", "--pidfile", str(pidfile),
         "--log-file", str(log)],
        env=condor.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr  # the launcher returns at once
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the pidfile"))
    try:
        wait_for(lambda: log.exists() and "cycle 0:" in log.read_text(), what="the daemon's first cycle")
        os.kill(pid, 0)  # alive, detached from us
        second = subprocess.run(
            [sys.executable, "-m", "autopyfactory", "run", "-c", str(conf), "--daemon",
             "--pidfile", str(pidfile)],
            env=condor.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert second.returncode == 1
        assert f"already runs as pid {pid}" in second.stderr  # reported before detaching, not lost
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pidfile.exists(), what="the pidfile to go")
    assert "stopped after" in log.read_text()


def test_runas_an_unknown_user_fails_before_starting(tmp_path, stand, condor):
    conf = write_config(tmp_path, stand, "[TEST-SITE]")
    result = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "run", "-c", str(conf), "--once",
         "--runas", "no-such-user-apf"],
        env=condor.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "--runas: no user 'no-such-user-apf'" in result.stderr
    assert condor.calls("condor_q") == []
