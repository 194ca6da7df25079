"""``autopyfactory mon-exiting|mon-stale -c FILE``: one run of a cron helper.

Each run reads factory.conf without schedconfig and asks the factory's batch backends and the
monitor; every call has a timeout. The exit code is 0 when everything was read and reported.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import requests

from autopyfactory.config import loader as config
from autopyfactory.cron.common import ReportError, backends_of
from autopyfactory.cron.exiting import checkpointed_sources, mon_exiting
from autopyfactory.cron.stale import mon_stale
from autopyfactory.edges.monitor import MonitorClient, MonitorError


def run_command(args: argparse.Namespace) -> int:
    """Run ``args.command``; 1 when something could not be read, removed or reported.

    Without a monitor (``monitorURL`` unset, as shipped) there is nothing to report to: one
    informational line and exit 0, so the cron entries installed by the RPM stay harmless.
    """
    loaded = config.load(args.config)
    f = loaded.factory
    if not f.monitor.url:
        print(f"autopyfactory {args.command}: no monitorURL in [Factory], nothing to report")
        return 0
    backends = backends_of(loaded, checkpointed_sources(Path(f.identity.state_dir)))
    with requests.Session() as session:
        client = MonitorClient(f.monitor.url, f.monitor.token, f.identity.factory_id, session, f.http.timeout)
        try:
            if args.command == "mon-exiting":
                problems = mon_exiting(loaded, client, backends, time.time()).problems
            else:
                problems = mon_stale(loaded, client, backends, time.time())
        except (ReportError, MonitorError) as exc:
            print(
                f"autopyfactory {args.command}: {exc}; nothing was advanced, run again later", file=sys.stderr
            )
            return 1
    for problem in problems:
        print(f"autopyfactory {args.command}: {problem}", file=sys.stderr)
    return 1 if problems else 0
