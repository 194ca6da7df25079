"""``status`` while factory.conf has errors (what a rejected reload leaves on disk, the daemon
running on with the configuration read before): the state file is still found and shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.e2e import run, write_config


def status(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autopyfactory", "status", "-c", str(conf), *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_config_with_errors_still_shows_the_state_its_stateDir_names(tmp_path, stand, condor):
    stand.stats = {"NDGF-T1": {"activated": 2}}
    conf = write_config(tmp_path, stand, "[NDGF-T1]")
    run(conf, condor, "--once")
    conf.write_text(conf.read_text().replace("[Factory]", "[Factory]\nfactoryOwnr = typo\nsleep = soon"))
    shown = status(conf)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("factory e2e-factory (autopyfactory ")
    assert "NDGF-T1-arc01.ndgf.org-atlas" in shown.stdout
    assert status(conf, "--check").stdout.startswith("OK: ")  # sleep: its default, 120 s


def test_a_config_that_cannot_be_read_is_a_configuration_error(tmp_path):
    shown = status(tmp_path / "missing.conf")
    assert shown.returncode == 1
    assert "missing.conf: cannot read: No such file or directory" in shown.stderr
