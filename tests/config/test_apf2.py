"""``autopyfactory migrate-apf2`` through the real CLI, on APF 2 configurations in the shapes APF 2
wrote them (tests/data/apf2/: a hand-written queues.conf as APF 2's etc/queues.conf has it, and a
queues.conf as its AGIS queues plugin wrote it): pilot 3 arguments, every submit attribute mapped
or carried, label names kept, never a ``None``, what is left listed and warned about by ``check``,
and a dry-run cycle of the result."""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autopyfactory.batch.interface import SubmitContext
from autopyfactory.batch.pilot import pilot_arguments
from autopyfactory.config import loader as config
from autopyfactory.config.apf2_translate import translate_arguments, translate_attributes, translate_rsl
from autopyfactory.config.autoconfigure import build_labels
from tests.support.check import findings
from tests.support.e2e import Stand
from tests.support.paths import DATA, REPO
from tests.support.pilot_tarballs import write_tarball
from tests.support.proxies import proxy

APF2 = DATA / "apf2"
HAND_WRITTEN = (APF2 / "autopyfactory.conf", APF2 / "queues.conf")
AGIS = (APF2 / "autopyfactory-agis.conf", APF2 / "queues-agis.conf")
WRAPPER = REPO / "wrappers" / "runpilot3-wrapper.sh"


def migrate(files: tuple[Path, Path], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autopyfactory", "migrate-apf2", *map(str, (*files, *args))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def sections(text: str) -> configparser.ConfigParser:
    """The written factory.conf as configparser reads it (every value as written)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def unmigrated(parser: configparser.ConfigParser) -> list[str]:
    return parser.get("Factory", "unmigrated").strip().splitlines()


# --- the translations ---------------------------------------------------------------------------------


def test_pilot_1_arguments_become_pilot_3_keys() -> None:
    """What APF 1/2 passed to runpilot3.sh: the wrapper refuses -h QUEUE, -w URL and -u LABEL
    (exit 118), so they become the queue, pandaserver and jobLabel of the default arguments."""
    apf = translate_arguments(
        "-s %(siteid)s -h %(pq)s -p 25443 -w https://pandaserver.cern.ch -j false -k 0 -u managed"
    )
    assert (apf.keys, apf.server, apf.unmapped) == (
        {"jobLabel": "managed"},
        "https://pandaserver.cern.ch:25443",
        [],
    )
    assert apf.notes == [
        "-j false: pilot 1's job recovery switch, no pilot 3 option (left out)",
        "-k 0: no memory limit, the default (left out)",
    ]
    odd = translate_arguments("-s BNL -h ANALY_BNL -w http://pandaserver.cern.ch -u user -k 4000 -d -y 3")
    assert odd.keys == {"siteid": "BNL", "jobLabel": "user", "pilotExtraArgs": "-k 4000 -d"}
    assert odd.server == "http://pandaserver.cern.ch:25080"
    assert [entry.split(":")[0] for entry in odd.unmapped] == ["-h/-q ANALY_BNL", "-y", "3"]
    pilot3 = translate_arguments(
        "-q %(pq)s -r %(pq)s -j ptest -i RC --pilot-user generic -w production --url=https://p.example:443 -z"
    )
    assert pilot3.keys == {
        "jobLabel": "ptest",
        "pilotType": "RC",
        "pilotUser": "generic",
        "pilotExtraArgs": "-w production -z",
    }
    assert (pilot3.server, pilot3.unmapped) == ("https://p.example:443", [])
    wrapper_sh = translate_arguments("--wrappergrid=OSG --wrapperwmsqueue=%(siteid)s --user user")
    assert wrapper_sh.keys == {"jobLabel": "user"}
    assert wrapper_sh.notes[0].startswith(
        "--wrappergrid=OSG --wrapperwmsqueue=%(siteid)s: APF 2's wrapper.sh"
    )


def test_submit_attributes_size_the_pilot_or_are_carried() -> None:
    attributes = translate_attributes(
        [("+xcount", "8"), ("+maxMemory", "32000"), ("+maxWallTime", "4800"), ("+remote_queue", '"share"'),
         ("+voactivity", '"unified"'), ("accounting_group", "group_atlas.prod"), ("periodic_remove", "x"),
         ("+MATCH_APF_QUEUE", '"A"'), ("environment", '"A=1"'), ("cream_attributes", "CpuNumber=8;")]
    )  # fmt: skip
    assert attributes.keys == {"corecount": "8", "maxrss": "32000", "maxtime": "288000", "ceQueue": "share"}
    assert attributes.attributes == [("+voactivity", '"unified"'), ("accounting_group", "group_atlas.prod")]
    assert [entry.split(":")[0] for entry in attributes.unmapped] == [
        "periodic_remove = x",
        '+MATCH_APF_QUEUE = "A"',
        'environment = "A=1"',
        "cream_attributes = CpuNumber=8;",
    ]
    rsl = translate_rsl([("count", "8"), ("countpernode", "8"), ("memory", "2000"), ("walltime", "2880"),
                         ("queue", "atlas"), ("runtimeenvironment", "APPS/HEP/ATLAS-SITE-LCG")])  # fmt: skip
    assert rsl.keys == {"corecount": "8", "maxrss": "16000", "maxtime": "172800", "ceQueue": "atlas"}
    assert rsl.unmapped == [
        "(runtimeenvironment = APPS/HEP/ATLAS-SITE-LCG): no equivalent in this factory's ARC request"
        " (left out)"
    ]
    agis = translate_rsl([("count", "8"), ("walltime", "172800")])  # CRIC's seconds, as AGIS wrote them
    assert agis.keys["maxtime"] == "172800"


# --- whole configurations -------------------------------------------------------------------------------


def test_the_agis_plugins_queues_conf(tmp_path: Path) -> None:
    """Sections named <PQ>-<CE host> keep their names at the monitor (labelName, not
    CERN-ce503.cern.ch-ce503.cern.ch-share), are sized from +xcount/+maxMemory/+maxWallTime, the
    RSL, and get the proxy file of their auth.conf profile."""
    production = proxy(tmp_path / "prodProxy", 48)
    auth = tmp_path / "auth.conf"
    auth.write_text(f"[DEFAULT]\nplugin = X509\n\n[atlas-production]\nx509.proxyfile = {production}\n")
    result = migrate(AGIS, "--auth-conf", auth)
    assert result.returncode == 0, result.stderr
    out = sections(result.stdout)
    assert "None" not in result.stdout
    assert out.get("Factory", "pandaserver") == "https://pandaserver.cern.ch:25443"
    assert (out.get("Factory", "numFactories"), out.get("Factory", "sleep")) == ("1", "120")
    cern = out["CERN-ce503.cern.ch"]
    assert dict(cern) | {} == {
        **dict(cern),
        "labelName": "CERN-ce503.cern.ch",
        "wmsqueue": "CERN",
        "autoconfigure": "false",
        "ceFlavour": "HTCONDOR-CE",
        "ceEndpoint": "ce503.cern.ch:9619",
        "ceQueue": "share",
        "corecount": "8",
        "maxrss": "32000",
        "maxtime": "288000",
        "jobLabel": "managed",
        "x509userproxy": str(production),
        "sched.scale.factor": "1",  # 0.5 for 2 CEs: this factory shares the jobs between them itself
        "submitAttributes": '\n+voactivity = "unified"',
    }
    assert "siteid" not in cern
    assert "arguments" not in cern
    arc = out["NDGF-T1-arc01.ndgf.org"]
    assert (arc["ceFlavour"], arc["ceEndpoint"], arc["ceQueue"]) == ("ARC-CE", "arc01.ndgf.org", "atlas")
    assert (arc["corecount"], arc["maxrss"], arc["maxtime"]) == ("8", "16000", "172800")
    assert arc["environ"] == "RUCIO_ACCOUNT=pilot"
    assert arc["submitAttributes"].splitlines() == [
        "",
        "requirements = JobRunCount == 0",
        "notification = Never",
    ]
    assert out["TEST-SITE-ce01.test.example"]["jobLabel"] == "ptest"
    left = unmigrated(out)
    assert left == [line for line in left if "proxy = atlas-production" not in line]  # mapped by auth.conf
    assert any(line.startswith("[CERN-ce503.cern.ch, CERN-ce504.cern.ch, TEST-SITE-ce01.test.example]"
                               " condor_attributes = periodic_remove") for line in left)  # fmt: skip
    assert any(
        "write `queues = cric: pilot_manager=apf vo=atlas cloud=CERN,ND type=unified`" in line
        for line in left
    )
    assert "#   [CERN-ce503.cern.ch, CERN-ce504.cern.ch, NDGF-T1-arc01.ndgf.org, NDGF-T1-arc02.ndgf.org]" \
           " sched.scale.factor = 0.5 -> 1: " in result.stdout  # fmt: skip
    for line in left:
        assert f"not migrated: {line}" in result.stderr


def test_a_hand_written_queues_conf(tmp_path: Path) -> None:
    result = migrate(HAND_WRITTEN)
    assert result.returncode == 0, result.stderr
    out = sections(result.stdout)
    assert "None" not in result.stdout  # wmsqueue = None is APF 2's "unset", not a site called None
    assert "numFactories" not in out["Factory"]  # the AGIS settings were not in use (File plugin)
    assert dict(out["QueueDefaults"]) == {
        "logKeepDays": "7",
        "sched.maxpercycle.maximum": "50",
        "sched.maxpending.maximum": "100",
        "enabled": "true",
        "schedplugin": "Ready, MaxPerCycle, MaxPending",
        "jobLabel": "managed",
    }
    ce = out["TEST-SITE-ce01"]
    assert (ce["labelName"], ce["ceEndpoint"], ce["ceQueue"], ce["pilotExtraArgs"]) == (
        "TEST-SITE-ce01", "ce01.test.example:9619", "default", "-d"
    )  # fmt: skip
    assert (ce["corecount"], ce["maxrss"], ce["maxtime"]) == ("1", "2000", "172800")
    assert ce["submitAttributes"].splitlines()[1:] == [
        '+AccountingGroup = "group_u_ATLAS.prod"',
        "accounting_group = group_u_ATLAS.prod",
    ]
    local = out["ANALY_TEST-SITE-local"]
    assert "siteid" not in local
    assert (local["ceFlavour"], local["maxrss"], local["jobLabel"]) == ("LOCAL", "1699", "user")
    assert local["submitAttributes"].splitlines()[1:] == [
        'Requirements = ( Arch == "X86_64" && OpSysAndVer == "SL7" )',
        '+AccountingGroup = "group_analy.apf"',
    ]
    arc = out["NDGF-T1"]
    assert (arc["corecount"], arc["maxrss"], arc["maxtime"], arc["ceQueue"]) == (
        "8",
        "16000",
        "172800",
        "atlas",
    )
    for disabled in ("LEGACY-SITE-gk01", "LEGACY-SITE-cream01", "CLOUD"):
        assert out[disabled]["enabled"] == "false"
    left = unmigrated(out)
    assert "[LEGACY-SITE-cream01] batchsubmitplugin = CondorCREAM: CREAM-CE is not supported: HTCondor" \
           " (24 and later) has no 'cream' grid type: queue disabled" in left  # fmt: skip
    assert "[ANALY_TEST-SITE-local] schedplugin = Ready, KeepNRunning, MaxToRun, Fixed: plugin KeepNRunning" \
           " has no equivalent (left out)" in left  # fmt: skip
    assert "[NDGF-T1] nordugridrsl = (runtimeenvironment = APPS/HEP/ATLAS-SITE-LCG): no equivalent in this" \
           " factory's ARC request (left out)" in left  # fmt: skip
    assert f"{len(left)} APF 2 settings not migrated" in result.stderr


def test_the_wrapper_runs_pilot_3_with_the_migrated_arguments(tmp_path: Path) -> None:
    """The words the factory gives runpilot3-wrapper.sh for a migrated queue: accepted (APF 2's own
    arguments end in exit 118), and pilot.py gets pilot 3's grammar."""
    if shutil.which("bash") is None or shutil.which("curl") is None:
        pytest.skip("needs bash and curl (the wrapper's tools)")
    path = tmp_path / "factory.conf"
    path.write_text(migrate(HAND_WRITTEN).stdout)
    loaded = config.load(path)
    [label] = [lb for lb in build_labels(loaded, None).labels if lb.queue == "NDGF-T1"]
    context = SubmitContext(
        "CERN-apf01-ops", loaded.factory.panda.server, str(tmp_path), "", "", "2026-01-01"
    )
    words = pilot_arguments(label, context)
    tarball = write_tarball(tmp_path / "pilot3.tar.gz")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
           "PILOT_HTTP_SOURCES": f"file://{tarball}", "TEST_PILOT_MARKER": str(tmp_path / "marker.json"),
           "TEST_PILOT_PANDAIDS": "4001\n", "APF_PYTHON": sys.executable}  # fmt: skip

    def wrapper(args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(WRAPPER), *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)  # fmt: skip

    old = ["-s", "NDGF-T1", "-h", "NDGF-T1", "-p", "25443", "-w", "https://pandaserver.cern.ch",
           "-j", "false", "-k", "0", "-u", "managed"]  # fmt: skip
    assert wrapper(old).returncode == 118
    ran = wrapper(words)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    argv = json.loads((tmp_path / "marker.json").read_text())["argv"]
    assert argv == ["-q", "NDGF-T1", "-j", "managed", "-i", "PR", "--pilot-user", "ATLAS", "--url",
                    "https://pandaserver.cern.ch", "-p", "25443", "-w", "generic"]  # fmt: skip


# --- check and a dry run of the result --------------------------------------------------------------------


def live(text: str, tmp_path: Path, stand: Stand) -> Path:
    """The migrated file as an operator finishes it on the new host: this test's CRIC and
    directories, and the wrapper where this checkout has it."""
    out = sections(text)
    replaced = {"schedconfig": stand.cric_url, "baseLogDir": str(tmp_path / "logs")}
    lines = []
    for line in text.splitlines():
        key = line.split(" = ", 1)[0]
        lines.append(f"{key} = {replaced.pop(key)}" if key in replaced and " = " in line else line)
        if line == "[QueueDefaults]":
            lines.append(f"executable = {WRAPPER}")
    path = tmp_path / "factory.conf"
    path.write_text(
        "\n".join(lines).replace("\n[Factory]\n", f"\n[Factory]\nstateDir = {tmp_path}/state\n", 1)
    )
    path.chmod(0o640)
    assert "unmigrated" in out["Factory"]
    return path


def test_the_migrated_configuration_passes_check_and_a_dry_run(tmp_path: Path, stand: Stand, condor) -> None:
    production = proxy(tmp_path / "prodProxy", 48)
    production.chmod(0o600)
    auth = tmp_path / "auth.conf"
    auth.write_text(f"[atlas-production]\nx509.proxyfile = {production}\n")
    migrated = migrate(AGIS, "--auth-conf", auth)
    assert migrated.returncode == 0, migrated.stderr
    path = live(migrated.stdout, tmp_path, stand)

    checked = subprocess.run([sys.executable, "-m", "autopyfactory", "check", "-c", str(path)],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    labels = [line.split()[0] for line in checked.stdout.splitlines()[1:] if "  PQ=" in line]
    assert labels == ["CERN-ce503.cern.ch", "CERN-ce504.cern.ch", "NDGF-T1-arc01.ndgf.org",
                      "NDGF-T1-arc02.ndgf.org", "TEST-SITE-ce01.test.example"]  # fmt: skip
    warned = [w for w in findings(checked.stdout, "warning") if w.startswith("not migrated from APF 2: ")]
    assert len(warned) == len(unmigrated(sections(migrated.stdout)))
    assert findings(checked.stdout, "error") == []

    # the dry run asks this test's PanDA (check would call a loopback pandaserver an error, rightly)
    server = "pandaserver = https://pandaserver.cern.ch:25443"
    path.write_text(path.read_text().replace(server, f"pandaserver = {stand.panda_url}"))
    stand.stats = {"CERN": {"activated": 20}, "NDGF-T1": {"activated": 10}, "TEST-SITE": {"activated": 2}}
    own = tmp_path / "dry-run"
    command = ["run", "-c", str(path), "--once", "--dry-run", "--dry-run-dir", str(own)]
    ran = subprocess.run(
        [sys.executable, "-m", "autopyfactory", *command], env=condor.env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert condor.calls("condor_submit") == []
    requests = [json.loads(path.read_text()) for path in sorted(own.glob("logs/*/_submit/*.json"))]
    described = {entry["label"]: entry["description"] for request in requests for entry in request["labels"]}
    block = described["CERN-ce503.cern.ch"]
    for line in ("+xcount = 8", "+maxMemory = 32000", "+maxWallTime = 4800", '+remote_queue = "share"',
                 '+MATCH_APF_QUEUE = "CERN-ce503.cern.ch"'):  # fmt: skip
        assert line in block, block
    assert "-q CERN -r CERN -s CERN -j managed -i PR --pilot-user ATLAS" in block
    assert "+voactivity" in block
    assert '"unified"' in block
    assert "NDGF-T1-arc01.ndgf.org" in described
