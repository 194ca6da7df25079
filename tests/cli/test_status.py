"""``autopyfactory status`` filters, the activated columns and ``--check`` exit codes, through the
real CLI after real cycles against the HTCondor emulator and a PanDA stand-in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.e2e import Stand, run, write_config
from tests.support.proxies import proxy

ARC1 = "NDGF-T1-arc01.ndgf.org-atlas"


def config(tmp_path: Path, stand: Stand, queues: str) -> Path:
    """A config whose sleep is long enough that a test never sees its own cycle as stale."""
    conf = write_config(tmp_path, stand, queues)
    conf.write_text(conf.read_text().replace("sleep = 1\n", "sleep = 600\n"))
    return conf


def status(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autopyfactory", "status", "-c", str(conf), *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_good_cycle_is_ok_and_a_stale_one_critical(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 7}}
    conf = config(tmp_path, stand, "[NDGF-T1]")
    run(conf, condor, "--once")
    ok = status(conf, "--check")
    assert (ok.returncode, ok.stdout.splitlines()[0]) == (0, "OK: 2 labels, last cycle recent, no problems")

    path = tmp_path / "state" / "status.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "time": record["time"] - 1801}))
    stale = status(conf, "--check")
    assert stale.returncode == 2
    assert stale.stdout.startswith("CRITICAL: last cycle 18")
    assert "s ago, more than 3 x sleep (1800 s)" in stale.stdout


def test_no_state_file_is_critical(tmp_path, stand):
    result = status(config(tmp_path, stand, "[NDGF-T1]"), "--check")
    assert result.returncode == 2
    assert result.stdout.startswith("CRITICAL: ")
    assert "has the factory run a cycle yet?" in result.stdout


def test_panda_answering_badly_is_a_warning(tmp_path, stand, condor):
    stand.panda_status = 500
    conf = config(tmp_path, stand, "[NDGF-T1]")
    run(conf, condor, "--once")
    result = status(conf, "--check")
    assert result.returncode == 1, result.stdout
    assert result.stdout.startswith("WARNING: PanDA answered badly in the last cycle: PanDA: ")
    record = json.loads((tmp_path / "state" / "status.json").read_text())
    assert [p["kind"] for p in record["problems"]] == ["panda"]  # stored, not guessed from its words


def test_condor_answering_badly_is_a_warning(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 7}}
    condor.fail_next("condor_q", "exit")
    conf = config(tmp_path, stand, "[NDGF-T1]")
    run(conf, condor, "--once")
    result = status(conf, "--check", "--label", ARC1)
    assert result.returncode == 1, result.stdout
    assert result.stdout.startswith("WARNING: condor answered badly in the last cycle")


def test_credentials_expiring_soon_warn_and_too_short_are_critical_for_their_labels(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 7}, "TEST-SITE": {"activated": 1}}
    soon, short = proxy(tmp_path / "soon.pem", 8), proxy(tmp_path / "short.pem", 1)
    queues = f"[NDGF-T1]\nx509userproxy = {short}\n[TEST-SITE]\nx509userproxy = {soon}\n"
    conf = config(tmp_path, stand, queues)
    run(conf, condor, "--once")
    everything = status(conf, "--check")
    assert everything.returncode == 2
    assert everything.stdout.startswith(f"CRITICAL: proxy {short}")
    assert "(+1 more)" in everything.stdout
    assert f"warning: proxy {soon}" in everything.stdout
    assert "renew it soon" in everything.stdout
    test_site = status(conf, "--check", "--pq", "TEST-SITE")
    assert test_site.returncode == 1
    assert test_site.stdout.startswith(f"WARNING: proxy {soon}")
    assert str(short) not in test_site.stdout


def test_filters_and_the_two_activated_columns(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 7}, "TEST-SITE": {"activated": 1}}
    conf = config(tmp_path, stand, "[NDGF-T1]\n[TEST-SITE]")
    run(conf, condor, "--once")
    table = status(conf, "--pq", "NDGF-T1")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[1].startswith("PanDA: activated counts from an answer ")  # the age of the numbers
    header = lines[2].split()
    assert header[:10] == ["label", "PQ", "CE", "status", "PQ-activated", "activated", "idle", "running",
                           "held", "decision"]  # fmt: skip
    rows = [line.split() for line in lines[3:] if line.startswith("NDGF-T1-")]
    assert len(rows) == 2
    assert not any(line.startswith("TEST-SITE") for line in lines)
    assert sorted(row[4:6] for row in rows) == [["7", "3"], ["7", "4"]]
    for row, line in zip(rows, (x for x in lines[3:] if x.startswith("NDGF-T1-")), strict=True):
        assert f"activated={row[5]} " in line  # the reason counts the label's share, as the column
    assert lines[-1].startswith("PQ-activated: the PQ's activated jobs")

    one = json.loads(status(conf, "--json", "--label", ARC1).stdout)
    assert list(one["labels"]) == [ARC1]
    none = status(conf, "--pq", "NOPE")
    assert none.returncode == 1
    assert "no label matches --pq NOPE" in none.stderr
