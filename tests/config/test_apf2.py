"""``autopyfactory migrate-apf2`` through the real CLI, on APF 2 configuration written from the keys
APF 2 documents (tests/data/apf2/): the result loads as a factory.conf, every mapped value is
there, and every key without an equivalent is listed."""

from __future__ import annotations

import subprocess
import sys

from autopyfactory.config import loader as config
from tests.support.paths import DATA

APF2 = DATA / "apf2"


def migrate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autopyfactory", "migrate-apf2",
         str(APF2 / "autopyfactory.conf"), str(APF2 / "queues.conf"), *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_result_is_an_equivalent_factory_conf(tmp_path):
    out = tmp_path / "factory.conf"
    result = migrate("-o", str(out))
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}: 5 queues" in result.stderr
    loaded = config.load(out)
    assert loaded.errors == ()
    f = loaded.factory
    assert (f.identity.factory_id, f.identity.owner, f.identity.sleep, f.panda.max_age) == (
        "EXAMPLE-apf01-ops",
        "ops@example.org",
        360,
        360,
    )
    assert (f.logs.base_dir, f.logs.base_url) == (
        "/home/autopyfactory/factory/logs",
        "http://apf01.example.org:25880",
    )
    queues = {q.name: q for q in loaded.queues}
    assert set(queues) == {
        "EXAMPLE_MCORE-ce01",
        "EXAMPLE_ARC",
        "EXAMPLE_CREAM",
        "EXAMPLE_LOCAL",
        "EXAMPLE_CLOUD",
    }

    mcore = queues["EXAMPLE_MCORE-ce01"]
    assert (mcore.pq, mcore.get("siteid"), mcore.get("autoconfigure")) == ("EXAMPLE_MCORE", "EXAMPLE", False)
    assert (mcore.get("ceFlavour"), mcore.get("ceEndpoint")) == ("HTCONDOR-CE", "ce01.example.org:9619")
    assert mcore.get("x509userproxy") == "/var/lib/autopyfactory/x509up"
    assert mcore.get("sched.maxpending.maximum") == 25
    assert mcore.get("sched.maxpercycle.maximum") == 50
    assert (
        mcore.get("arguments")
        == "-s %(siteid)s -h %(pq)s -p 25443 -w https://pandaserver.cern.ch -u managed -k 0"
    )
    assert mcore.get("logKeepDays") == 7

    arc = queues["EXAMPLE_ARC"]
    assert (arc.get("ceFlavour"), arc.get("ceEndpoint"), arc.get("ceQueue")) == (
        "ARC-CE",
        "arc01.example.org",
        "grid",
    )
    assert arc.get("schedplugin") == ("Ready", "Scale", "MinPerCycle", "StatusTest")
    assert (arc.get("sched.scale.factor"), arc.get("sched.statustest.pilots")) == (0.5, 3)
    assert arc.get("environ") == "RUCIO_ACCOUNT=pilot"

    cream = queues["EXAMPLE_CREAM"]
    assert cream.get("enabled") is False
    assert cream.get("ceEndpoint") == "cream01.example.org:8443"
    local = queues["EXAMPLE_LOCAL"]
    assert (local.get("ceFlavour"), local.get("environ")) == ("LOCAL", "APF_TEST=1 X=2")
    assert local.get("schedplugin") == ("Ready", "MaxToRun", "Fixed")
    assert local.get("sched.fixed.pilots") == 4
    assert queues["EXAMPLE_CLOUD"].get("enabled") is False


def test_what_has_no_equivalent_is_listed_in_the_file_and_on_stderr(tmp_path):
    result = migrate()
    assert result.returncode == 0, result.stderr
    for expected in (
        "[EXAMPLE_CLOUD] batchsubmitplugin = CondorEC2: no equivalent: queue disabled",
        "[EXAMPLE_LOCAL] schedplugin = Ready, KeepNRunning, MaxToRun, Fixed: plugin KeepNRunning",
        "[EXAMPLE_LOCAL] sched.keepnrunning.keep_running = 10: no equivalent",
        '[EXAMPLE_CREAM] batchsubmit.condorcream.condor_attributes = +Experiment = "ATLAS": no equivalent',
        "[Factory] proxyConf = /etc/autopyfactory/proxy.conf: no proxy manager",
        "[Factory] logserver.enabled = True: serve baseLogDir with httpd: etc/httpd/",
        "[DEFAULT] monitorsection = apfmon-lancaster: monitorURL in [Factory]",
    ):
        assert f"#   {expected}" in result.stdout
        assert f"no equivalent: {expected}" in result.stderr


def test_an_existing_output_is_kept_and_bad_input_is_an_error(tmp_path):
    out = tmp_path / "factory.conf"
    out.write_text("mine\n")
    kept = migrate("-o", str(out))
    assert kept.returncode == 1
    assert "exists (--force to overwrite)" in kept.stderr
    assert out.read_text() == "mine\n"
    assert migrate("-o", str(out), "--force").returncode == 0
    broken = tmp_path / "broken.conf"
    broken.write_text("no section header\n")
    result = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "migrate-apf2", str(broken), str(APF2 / "queues.conf")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "broken.conf" in result.stderr
