"""Putting the factory together from its configuration, and running it until told to stop.

This is the composition root: the only place that knows which concrete edge (HTTP session,
schedconfig source, PanDA client, batch backends, monitor client) goes with which setting.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from autopyfactory.batch import Backend
from autopyfactory.condor.backend import CondorBackend
from autopyfactory.condor.command import Schedd
from autopyfactory.config import FactoryConfig
from autopyfactory.factory import CycleObserver, Factory, run_cycles
from autopyfactory.http import make_session
from autopyfactory.monitor_client import MonitorClient, MonitorSettings
from autopyfactory.panda import PandaClient, PandaView
from autopyfactory.schedconfig import SchedconfigSource

log = logging.getLogger(__name__)

#: How long a stopping factory waits for the monitor queue to drain.
MONITOR_FLUSH_SECONDS = 5.0


@dataclass(frozen=True)
class RunOptions:
    cycles: int | None = None  # None = forever
    dry_run: bool = False
    schedconfig: str = ""  # overrides [Factory] schedconfig when set


def build_backends(config: FactoryConfig) -> dict[str, Backend]:
    f = config.factory
    return {"condor": CondorBackend(f.factory_id, Schedd(f.condor_schedd, f.condor_pool), f.condor_timeout)}


def build_factory(
    config: FactoryConfig, options: RunOptions, observers: Sequence[CycleObserver] = ()
) -> Factory:
    f = config.factory
    session = make_session(f.http_retries, f.proxy, f.ca_path)
    schedconfig = SchedconfigSource(
        options.schedconfig or f.schedconfig,
        f.schedconfig_cache_path,
        f.schedconfig_refresh,
        session,
        f.http_timeout,
        time.time,
    )
    panda = PandaView(
        PandaClient(f.pandaserver, session, f.http_timeout, f.panda_token_file, f.panda_vo),
        f.panda_max_age,
        time.time,
    )
    return Factory(config, schedconfig, panda, build_backends(config), time.time, options.dry_run, observers)


def build_monitor(config: FactoryConfig) -> MonitorClient | None:
    f = config.factory
    if not f.monitor_url:
        return None
    return MonitorClient(
        MonitorSettings(f.monitor_url, f.monitor_token, f.factory_id, f.factory_owner, f.base_log_dir_url)
    )


def run(config: FactoryConfig, options: RunOptions) -> int:
    """Run cycles in the foreground; SIGTERM/SIGINT end the sleep and stop after the current cycle."""
    monitor = build_monitor(config)
    if monitor:
        monitor.start()
    factory = build_factory(config, options, [monitor] if monitor else [])
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping after the current cycle", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        done = run_cycles(factory, config.factory.sleep, options.cycles, stop.wait)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if monitor:
            monitor.close(timeout=MONITOR_FLUSH_SECONDS)
    log.info("stopped after %d cycles", done)
    return 0
