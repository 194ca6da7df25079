"""A tiny test ``pilot.py`` and the tarballs the wrapper tests serve.

The test pilot is steered by environment variables (the wrapper passes its environment on):

- ``TEST_PILOT_MARKER``: path of a JSON file the pilot writes at start: argv, cwd, its interpreter,
  its virtual memory limit and the variables named in ``TEST_PILOT_SHOW_ENV`` (comma separated).
- ``TEST_PILOT_RC``: exit code (default 0).
- ``TEST_PILOT_STATUSCODE`` / ``TEST_PILOT_PANDAIDS`` / ``TEST_PILOT_LOG``: text written to
  ``STATUSCODE`` / ``pandaIDs.out`` / ``pilotlog.txt`` (pilot 3's log) in the pilot's working
  directory.
- ``TEST_PILOT_SLEEP``: seconds to sleep before exiting (a pilot that runs a while).
- ``TEST_PILOT_WAIT_SIGNAL``: ``handlers`` (exit 200+N on signal N for TERM, INT, USR1, QUIT),
  ``default`` (keep the default dispositions) or ``ignore`` (ignore TERM, INT, USR1, QUIT, like a
  pilot busy telling PanDA about its job); the pilot then writes ``<marker>.ready`` and sleeps
  for at most 30 s before exiting 99.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

PILOT_SOURCE = """\
import json
import os
import resource
import signal
import sys
import time

env = os.environ
marker = env["TEST_PILOT_MARKER"]
shown = [name for name in env.get("TEST_PILOT_SHOW_ENV", "").split(",") if name]
record = {
    "argv": sys.argv[1:],
    "cwd": os.getcwd(),
    "executable": sys.executable,
    "rlimit_as": resource.getrlimit(resource.RLIMIT_AS)[0],
    "env": {name: env.get(name) for name in shown},
}
with open(marker, "w") as out:
    json.dump(record, out)
print("TEST PILOT running with", sys.argv[1:])
sys.stdout.flush()
if "TEST_PILOT_STATUSCODE" in env:
    with open("STATUSCODE", "w") as out:
        out.write(env["TEST_PILOT_STATUSCODE"])
if "TEST_PILOT_PANDAIDS" in env:
    with open("pandaIDs.out", "w") as out:
        out.write(env["TEST_PILOT_PANDAIDS"])
if "TEST_PILOT_LOG" in env:
    with open("pilotlog.txt", "w") as out:
        out.write(env["TEST_PILOT_LOG"])
time.sleep(float(env.get("TEST_PILOT_SLEEP", "0")))

mode = env.get("TEST_PILOT_WAIT_SIGNAL")
if mode:
    def on_signal(signum, frame):
        with open(marker + ".signals", "a") as out:
            out.write("%d\\n" % signum)
        sys.exit(200 + signum)

    if mode == "handlers":
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGQUIT):
            signal.signal(sig, on_signal)
    elif mode == "ignore":
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_IGN)
    open(marker + ".ready", "w").close()
    deadline = time.time() + 30
    while time.time() < deadline:
        time.sleep(0.05)
    sys.exit(99)
sys.exit(int(env.get("TEST_PILOT_RC", "0")))
"""


def make_tarball(layout: str = "pilot3") -> bytes:
    """A gzip tarball of the test pilot.

    ``pilot3``: ``pilot3/pilot.py`` plus ``pilot3/PILOTVERSION`` (the layout of pilot3.tar.gz);
    ``flat``: ``pilot.py`` at the top (the old pilotcode.tar.gz layout);
    ``nopilot``: a valid tarball without any ``pilot.py``.
    """
    members = {
        "pilot3": {"pilot3/pilot.py": PILOT_SOURCE, "pilot3/PILOTVERSION": "3.99.0.test\n"},
        "flat": {"pilot.py": PILOT_SOURCE},
        "nopilot": {"README": "no pilot here\n", "pilot3/runner.py": "print('no')\n"},
    }[layout]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_tarball(path: Path, layout: str = "pilot3") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(make_tarball(layout))
    return path
