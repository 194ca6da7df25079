"""`autopyfactory check`: an ARC-CE label without a proxy or a token is an error.

On a real pool HTCondor's gridmanager holds every such pilot ("ARC job has no credentials")."""

from __future__ import annotations

from pathlib import Path

from tests.support.check import DUMP, example_with, findings, run
from tests.support.proxies import proxy


def test_arc_ce_without_proxy_or_token_is_an_error(tmp_path: Path) -> None:
    path, _ = example_with(tmp_path, "[CERN]", "\n[NDGF-T1]\n")
    result = run("check", "-c", path, "--schedconfig", DUMP)
    assert result.returncode == 1
    assert findings(result.stdout, "error") == [
        'ARC-CE without x509userproxy or scitokensFile: HTCondor would hold every pilot ("ARC job has no'
        ' credentials") (2 labels, e.g. NDGF-T1-arc01.ndgf.org-atlas)'
    ]


def test_arc_ce_with_a_token_or_a_proxy_passes(tmp_path: Path) -> None:
    token = tmp_path / "pilot.token"
    token.write_text("eyJhbGciOiJFUzI1NiJ9.e30.c2ln\n")
    path, _ = example_with(tmp_path, "[CERN]", f"\n[NDGF-T1]\nscitokensFile = {token}\n")
    result = run("check", "-c", path, "--schedconfig", DUMP)
    assert not [f for f in findings(result.stdout, "error") if "ARC-CE" in f], result.stdout
    pem = proxy(tmp_path / "x509.pem", 100)
    path, _ = example_with(tmp_path, "[CERN]", f"\n[NDGF-T1]\nx509userproxy = {pem}\n")
    result = run("check", "-c", path, "--schedconfig", DUMP)
    assert not [f for f in findings(result.stdout, "error") if "ARC-CE" in f], result.stdout
