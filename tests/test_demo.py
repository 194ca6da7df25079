"""``autopyfactory demo``: the README's first command, run as a user would."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_demo_runs_pilots_through_to_done_and_cleans_up():
    result = subprocess.run(
        [sys.executable, "-m", "autopyfactory", "demo", "--cycles", "3", "--sleep", "2",
         "--job-seconds", "1"],
        capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"monitoring webservice: http://127\.0\.0\.1:\d+/", out)
    cycles = re.findall(r"^cycle (\d): 3 labels, decided \d+, submitted (\d+)", out, re.MULTILINE)
    assert [c for c, _ in cycles] == ["0", "1", "2"]
    submitted = sum(int(n) for _, n in cycles)
    assert submitted > 0
    final = re.search(r"^final: monitor: (.*)$", out, re.MULTILINE)
    assert final, out
    counts = dict(item.split("=") for item in final.group(1).split())
    assert counts == {"CREATED": "0", "RUNNING": "0", "EXITING": "0", "DONE": str(submitted), "FAULT": "0"}
    work = Path(re.search(r"^demo directory: +(\S+)", out, re.MULTILINE).group(1))
    assert not work.exists()
