"""`autopyfactory check` and `config-reference`, run as a user runs them (python -m autopyfactory)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from autopyfactory import __version__
from autopyfactory.config import schema as config_schema
from tests.support.check import DUMP, EXAMPLE, example_with, run
from tests.support.paths import REPO

CERN_HOSTS = [f"ce{n}.cern.ch" for n in range(503, 515)] + ["condorce01.cern.ch"]


def setting(output: str, key: str) -> list[str]:
    """Every printed line for a setting: [source, value (origin)] per label."""
    return [m.group(1) for m in re.finditer(rf"^  {re.escape(key)} +(.*)$", output, re.MULTILINE)]


def test_check_shows_one_line_per_label_by_default(tmp_path: Path) -> None:
    path, _ = example_with(tmp_path, "[CERN]", "")
    result = run("check", "-c", path, "--schedconfig", DUMP)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == f"schedconfig: 6 queues from {DUMP}"
    assert lines[1:-1] == [
        f"CERN-{host}-share  PQ=CERN HTCONDOR-CE {host}:9619 queue=share status=online batch=condor"
        " cores=8 rss=32000MB time=288000s schedplugin=Classic nqueue=20 jobs=managed"
        for host in CERN_HOSTS
    ]
    assert lines[-1] == "13 labels, 0 errors, 0 warnings"


def test_check_verbose_shows_every_setting_with_its_provenance(tmp_path: Path) -> None:
    path, _ = example_with(tmp_path, "[CERN]", "")
    result = run("check", "-c", path, "--schedconfig", DUMP, "--verbose")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.startswith(f"schedconfig: 6 queues from {DUMP}\n")
    headers = re.findall(r"^\[(\S+)\]  (.*)$", out, re.MULTILINE)
    assert headers == [
        (
            f"CERN-{host}-share",
            f"PQ=CERN CE=HTCONDOR-CE {host}:9619 queue=share status=online batch=condor",
        )
        for host in CERN_HOSTS
    ]
    assert out.endswith("\n13 labels, 0 errors, 0 warnings\n")
    assert set(setting(out, "corecount")) == {"schedconfig    8  (schedconfig CERN.corecount)"}
    assert set(setting(out, "maxrss")) == {"schedconfig    32000  (schedconfig CERN.maxrss)"}
    assert set(setting(out, "status")) == {"schedconfig    online  (schedconfig CERN.status)"}
    nqueue_line = EXAMPLE.read_text().splitlines().index("nqueue = 20") + 1
    assert set(setting(out, "nqueue")) == {f"QueueDefaults  20  ({path}:{nqueue_line})"}
    assert set(setting(out, "testpilots")) == {"default        1"}
    assert set(setting(out, "schedplugin")) == {f"QueueDefaults  Classic  ({path}:{nqueue_line - 1})"}
    # values as an operator writes them, never Python reprs
    assert "frozenset(" not in out
    assert "None" not in out
    assert "True" not in out
    assert set(setting(out, "holdRecoverableCodes")) == {"default        -"}
    assert set(setting(out, "pilotlimit")) == {"default        -"}
    hold_rerun_line = EXAMPLE.read_text().splitlines().index("holdRerun = true") + 1
    assert set(setting(out, "holdRerun")) == {f"QueueDefaults  true  ({path}:{hold_rerun_line})"}


def test_check_shows_all_four_sources(tmp_path: Path) -> None:
    path, line = example_with(tmp_path, "[CERN]", "maxtime = 1000\n")
    defaults_line = path.read_text().splitlines().index("holdIdleAfter = 3600") + 1
    result = run("check", "-c", path, "--schedconfig", f"file://{DUMP}", "-v")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert set(setting(out, "maxtime")) == {f"local          1000  ({path}:{line})"}
    assert set(setting(out, "maxrss")) == {"schedconfig    32000  (schedconfig CERN.maxrss)"}
    assert set(setting(out, "holdIdleAfter")) == {f"QueueDefaults  3600  ({path}:{defaults_line})"}
    assert set(setting(out, "maxwdir")) == {"schedconfig    160000  (schedconfig CERN.maxwdir)"}
    assert set(setting(out, "ceFlavour")) == {"default        -"}


def test_check_misspelt_key_in_a_queue(tmp_path: Path) -> None:
    path, line = example_with(tmp_path, "[CERN]", "nqeue = 5\n")
    result = run("check", "-c", path, "--schedconfig", DUMP)
    assert result.returncode == 1
    assert f"error: {path}:{line}: [CERN] nqeue: unknown key (did you mean 'nqueue'?)\n" in result.stdout
    assert result.stdout.endswith("\n0 labels, 1 error, 0 warnings\n")


def test_check_misspelt_key_in_queue_defaults_stops(tmp_path: Path) -> None:
    path, line = example_with(tmp_path, "[QueueDefaults]", "depthbost = 3\n")
    result = run("check", "-c", path, "--schedconfig", DUMP)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"configuration error:\n{path}:{line}: [QueueDefaults] depthbost: unknown key"
        " (did you mean 'depthboost'?)\n"
    )


def test_check_misspelt_key_in_factory_stops(tmp_path: Path) -> None:
    path, line = example_with(tmp_path, "[Factory]", "pandaserverr = https://x\n")
    result = run("check", "-c", path, "--schedconfig", DUMP)
    assert result.returncode == 1
    assert result.stderr == (
        f"configuration error:\n{path}:{line}: [Factory] pandaserverr: unknown key"
        " (did you mean 'pandaserver'?)\n"
    )


def test_check_reports_skipped_queues(tmp_path: Path) -> None:
    path, _ = example_with(tmp_path, "[CERN]", "[NOCE-SITE]\n[NO-SUCH-PQ]\n[TEST-SITE]\n")
    result = run("check", "-c", path, "--schedconfig", DUMP)
    assert result.returncode == 1
    out = result.stdout
    assert "error: [NOCE-SITE] skipped: PanDA queue 'NOCE-SITE' has no usable CE (3 skipped)\n" in out
    assert "error: [NO-SUCH-PQ] skipped: PanDA queue 'NO-SUCH-PQ' is not in schedconfig\n" in out
    assert "warning: [NOCE-SITE] CE skipped: ce01.noce.example:9619: ce_state='INACTIVE'\n" in out
    assert "\nTEST-SITE-ce01.test.example-default  PQ=TEST-SITE HTCONDOR-CE ce01.test.example:9619 " in out
    assert out.endswith("\n14 labels, 2 errors, 3 warnings\n")


def test_check_without_schedconfig_fails(tmp_path: Path) -> None:
    path, _ = example_with(
        tmp_path, "stateDir = /var/lib/autopyfactory", f"schedconfigCache = {tmp_path}/sc.json\n"
    )
    missing = tmp_path / "missing.json"
    result = run("check", "-c", path, "--schedconfig", missing)
    assert result.returncode == 1
    assert result.stdout.startswith(
        f"schedconfig: {missing}: No such file or directory; no last-good copy either"
        f" ({tmp_path}/sc.json: No such file or directory)\n"
    )
    assert "error: [CERN] skipped: schedconfig is not available\n" in result.stdout


def test_check_writes_no_last_good_copy(tmp_path: Path) -> None:
    cache = tmp_path / "state" / "sc.json"
    path, _ = example_with(tmp_path, "stateDir = /var/lib/autopyfactory", f"schedconfigCache = {cache}\n")
    result = run("check", "-c", path, "--schedconfig", DUMP)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not cache.parent.exists()


def test_check_missing_config_file(tmp_path: Path) -> None:
    result = run("check", "-c", tmp_path / "none.conf")
    assert result.returncode == 1
    assert (
        result.stderr
        == f"configuration error:\n{tmp_path}/none.conf: cannot read: No such file or directory\n"
    )


def test_check_config_defaults_to_the_environment_then_etc(tmp_path: Path) -> None:
    """-c defaults to $AUTOPYFACTORY_CONFIG, else /etc/autopyfactory/factory.conf."""
    path, _ = example_with(tmp_path, "[CERN]", "")
    env = {**os.environ, "PYTHONPATH": str(REPO), "AUTOPYFACTORY_CONFIG": str(path)}
    command = [sys.executable, "-m", "autopyfactory", "check", "--config-only"]
    found = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert (found.returncode, found.stdout) == (0, f"{path}: configuration ok, 1 queue section\n")
    del env["AUTOPYFACTORY_CONFIG"]
    if Path("/etc/autopyfactory/factory.conf").exists():
        pytest.skip("this host has an /etc/autopyfactory/factory.conf")
    missing = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 1
    assert missing.stderr == (
        "configuration error:\n/etc/autopyfactory/factory.conf: cannot read: No such file or directory\n"
    )


def test_config_reference_is_the_schema_table() -> None:
    result = run("config-reference")
    assert result.returncode == 0
    assert result.stdout == config_schema.reference_markdown()
    for option in config_schema.OPTIONS:
        assert f"| `{option.key}` | {option.kind.name} |" in result.stdout


def test_version() -> None:
    result = run("--version")
    assert (result.returncode, result.stdout) == (0, f"autopyfactory {__version__}\n")


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_lists_check(flag: str) -> None:
    result = run(flag)
    assert result.returncode == 0
    assert "check" in result.stdout
    assert "config-reference" in result.stdout


def test_check_with_a_malformed_cric_record_skips_that_queue_without_a_traceback(tmp_path: Path) -> None:
    """A malformed CRIC record (``"queues": 5``) skips that queue only, with a clear message."""
    import json

    dump = json.loads(DUMP.read_text())
    dump["NDGF-T1"]["queues"] = 5
    bad = tmp_path / "cric.json"
    bad.write_text(json.dumps(dump))
    path, _ = example_with(tmp_path, "[CERN]", "[NDGF-T1]\n")
    result = run("check", "-c", path, "--schedconfig", bad)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 1
    assert "error: [NDGF-T1] skipped: schedconfig NDGF-T1.queues is int '5', not a list of CE queues\n" in (
        result.stdout
    )
    assert "CERN-ce503.cern.ch-share" in result.stdout
    assert "13 labels, 1 error" in result.stdout


def test_check_rejects_a_pandaserver_with_a_path(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace(
        "pandaserver = https://pandaserver.cern.ch:25443\n",
        "pandaserver = https://pandaserver.cern.ch:25443/server/panda\n",
    )
    path = tmp_path / "factory.conf"
    path.write_text(text)
    result = run("check", "-c", path, "--schedconfig", DUMP)
    assert result.returncode == 1
    assert "pandaserver: bad value: the base URL of the PanDA server takes no path" in result.stderr
    assert "write 'https://pandaserver.cern.ch:25443'" in result.stderr


def test_check_shows_the_resource_type_labels_with_their_sizes_and_caps(tmp_path: Path) -> None:
    path, _ = example_with(tmp_path, "[CERN]", "resourceTypes = auto\n")
    result = run("check", "-c", path, "--schedconfig", DUMP)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "\n52 labels, 0 errors" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("CERN-")}
    assert "cores=8 rss=32000MB" in lines["CERN-ce503.cern.ch-share-MCORE_HIMEM"]
    assert lines["CERN-ce503.cern.ch-share-MCORE_HIMEM"].endswith(" rt=MCORE_HIMEM jobs=managed")
    assert "cores=1 rss=2000MB" in lines["CERN-ce503.cern.ch-share-SCORE"]
    verbose = run("check", "-v", "-c", path, "--schedconfig", DUMP).stdout
    block = verbose.split("[CERN-ce503.cern.ch-share-MCORE_HIMEM]", 1)[1].split("\n[", 1)[0]
    assert "demand: resource type MCORE_HIMEM (sized for it), job labels managed" in block
    assert (
        "CRIC caps of the PQ: resource_type_limits.MCORE_HIMEM=100 resource_type_limits.SCORE=5000"
        " resource_type_limits.SCORE_HIMEM=2000 maxNewWorkersPerCycle=400" in block
    )
    as_json = json.loads(run("check", "--json", "-c", path, "--schedconfig", DUMP).stdout)
    label = next(lb for lb in as_json["labels"] if lb["name"] == "CERN-ce503.cern.ch-share-SCORE")
    assert label["resource_type"] == "SCORE"
    assert label["cric_limits"]["resource_type_limits"]["SCORE"] == 5000


def test_check_config_only_is_what_a_reload_accepts(tmp_path: Path) -> None:
    """The unit's ExecReload runs this before the SIGHUP, so `systemctl reload` reports errors."""
    good = run("check", "--config-only", "-c", EXAMPLE)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout == f"{EXAMPLE}: configuration ok, 1 queue section\n"
    path, line = example_with(tmp_path, "[CERN]", "nqeue = 5\n")
    bad = run("check", "--config-only", "-c", path)
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert bad.stderr == (
        f"configuration error:\n{path}:{line}: [CERN] nqeue: unknown key (did you mean 'nqueue'?)\n"
    )


def test_check_reports_label_names_that_collide(tmp_path: Path) -> None:
    """Label names are made valid for the monitor; two CE queues that end up with the same
    name are an error that `check` shows, not two labels silently sharing one name."""
    import json

    dump = json.loads(DUMP.read_text())
    entry = dump["TEST-SITE"]["queues"][0]
    dump["TEST-SITE"]["queues"] = [entry | {"ce_queue_name": "a:b"}, entry | {"ce_queue_name": "a b"}]
    path = tmp_path / "cric.json"
    path.write_text(json.dumps(dump))
    config_path, _ = example_with(tmp_path, "[CERN]", "\n[TEST-SITE]\n")
    result = run("check", "-c", config_path, "--schedconfig", path)
    kept = "\nTEST-SITE-ce01.test.example-a_b  PQ=TEST-SITE HTCONDOR-CE ce01.test.example:9619 queue=a:b "
    assert kept in result.stdout  # the one label that kept the name
    assert (
        "error: [TEST-SITE] label 'TEST-SITE-ce01.test.example-a_b' (CE ce01.test.example:9619 queue a b)"
        " skipped: the name is already used by [TEST-SITE]" in result.stdout
    )
    assert result.returncode != 0
