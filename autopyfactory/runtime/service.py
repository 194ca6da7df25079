"""Putting the factory together from its configuration, and running it until told to stop.

This is the composition root: the only place that knows which concrete edge (HTTP session,
schedconfig source, PanDA client, batch backends, monitor client, state file, metrics) goes with
which setting. :class:`Service` runs the cycles:

* SIGTERM/SIGINT: the submission in progress finishes, no further label is submitted, the state
  is written, the monitor queue is flushed (bounded), and the process exits 0.
* SIGHUP: factory.conf and queuesDir are read again before the next cycle. A good new config
  replaces the old one whole (queues added, removed or changed take effect; the state file, the
  metrics, the monitor client and the cycle count carry on); a broken one, also one with an error
  in a single queue section (which at start-up would only disable that queue), is rejected with
  its errors and the old one stays in force. Never a half-applied config. ``check --config-only``
  answers the same question beforehand (the unit's ExecReload runs it).
* ``--dry-run`` (``RunOptions.dry_run_dir``): everything is read as in a real run (schedconfig,
  PanDA, the batch census, the last-good schedconfig copy), but nothing is submitted and the only
  writes go to the dry run's own directory: submit files under ``<dir>/logs``, the state file
  ``<dir>/status.json``. No monitor client, no metrics port, no schedconfig copy, no log cleanup
  or housekeeping: the live daemon's state dir, pilot log tree and monitor entry stay untouched.
* systemd: READY=1 when the first cycle starts, STATUS= with the cycle summary and WATCHDOG=1
  after every cycle, STOPPING=1 at the end.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import requests

from autopyfactory.batch.backends import build_backends
from autopyfactory.config import loader as config
from autopyfactory.config.loader import FactoryConfig
from autopyfactory.config.schedconfig_labels import SchedconfigLabels
from autopyfactory.config.settings import HttpSettings, PandaSettings
from autopyfactory.cycle.factory import Factory
from autopyfactory.cycle.ports import CycleSettings
from autopyfactory.cycle.report import CycleObserver, CycleReport
from autopyfactory.domain.log_retention import GB
from autopyfactory.domain.model import plural
from autopyfactory.edges.control import ControlStore
from autopyfactory.edges.credentials import CredentialChecker
from autopyfactory.edges.http import make_session, total_deadline
from autopyfactory.edges.panda import PandaClient, PandaView
from autopyfactory.edges.pilot_logs import CleanupSchedule, PilotLogCleanup
from autopyfactory.edges.schedconfig import SchedconfigSource
from autopyfactory.edges.unsettled import UnsettledFile
from autopyfactory.observers.metrics import FactoryMetrics
from autopyfactory.observers.monitor import MonitorObserver, MonitorSettings
from autopyfactory.observers.state import StateWriter
from autopyfactory.runtime.systemd import Notifier

log = logging.getLogger(__name__)

#: How long a stopping factory waits for the monitor queue to drain.
MONITOR_FLUSH_SECONDS = 5.0


@dataclass(frozen=True)
class RunOptions:
    cycles: int | None = None  # None = forever
    dry_run: bool = False
    schedconfig: str = ""  # overrides [Factory] schedconfig when set
    dry_run_dir: str = ""  # a dry run writes here only (see the module docstring)


def for_dry_run(cfg: FactoryConfig, options: RunOptions) -> FactoryConfig:
    """``cfg`` with the submit files of a dry run sent to its own directory."""
    if not options.dry_run:
        return cfg
    if not options.dry_run_dir:
        raise ValueError("a dry run needs a directory of its own")
    logs = replace(cfg.factory.logs, base_dir=str(Path(options.dry_run_dir) / "logs"))
    return replace(cfg, factory=replace(cfg.factory, logs=logs))


def build_factory(
    cfg: FactoryConfig,
    options: RunOptions,
    observers: Sequence[CycleObserver] = (),
    stop_requested: Callable[[], bool] = lambda: False,
    observer_failed: Callable[[str], None] = lambda _name: None,
) -> Factory:
    cfg = for_dry_run(cfg, options)
    f = cfg.factory
    session = http_session(f.http, stop_requested)
    schedconfig = SchedconfigSource(
        options.schedconfig or f.schedconfig.location,
        f.schedconfig_cache_path,
        f.schedconfig.refresh,
        session,
        f.http.timeout,
        time.time,
        keep_copy=not options.dry_run,
    )
    return Factory(
        cycle_settings(cfg, options.dry_run),
        SchedconfigLabels(cfg, schedconfig),
        PandaView(panda_client(f.panda, f.http, session), time.time),
        build_backends(cfg.factory, cfg.queues, read_only=options.dry_run, stop_requested=stop_requested),
        time.time,
        observers,
        stop_requested,
        credentials=CredentialChecker(f.credentials.min_lifetime),
        log_cleanup=build_log_cleanup(cfg),
        observer_failed=observer_failed,
        controls=ControlStore(Path(f.identity.state_dir)),
        unsettled=None if options.dry_run else UnsettledFile(Path(f.identity.state_dir)),
    )


def http_session(http: HttpSettings, stop_requested: Callable[[], bool] = lambda: False) -> requests.Session:
    """The session for PanDA and CRIC: retries, client proxy and CAs, a deadline per request."""
    return make_session(
        http.retries,
        http.proxy,
        http.ca_path,
        deadline=total_deadline(http.timeout, http.retries),
        stop_requested=stop_requested,
    )


def panda_client(panda: PandaSettings, http: HttpSettings, session: requests.Session) -> PandaClient:
    return PandaClient(panda.server, session, http.timeout, panda.token_file, panda.vo)


def cycle_settings(cfg: FactoryConfig, dry_run: bool) -> CycleSettings:
    f = cfg.factory
    return CycleSettings(
        f.identity.factory_id,
        f.panda.server,
        f.logs.base_dir,
        f.logs.base_url,
        f.monitor.url,
        f.caps.num_factories,
        f.caps.max_per_cycle,
        f.caps.max_pilots,
        dry_run,
        f.panda.lag,
    )


def build_log_cleanup(cfg: FactoryConfig) -> PilotLogCleanup:
    logs = cfg.factory.logs
    default_keep = cfg.queue_defaults["logKeepDays"].value  # for labels no longer configured
    return PilotLogCleanup(
        Path(logs.base_dir),
        CleanupSchedule(logs.cleanup_interval),
        int(str(default_keep)),
        int(logs.min_free_gb * GB),
        logs.compress_days,
    )


def build_monitor(cfg: FactoryConfig) -> MonitorObserver | None:
    f = cfg.factory
    if not f.monitor.url:
        return None
    return MonitorObserver(
        MonitorSettings(
            f.monitor.url,
            f.monitor.token,
            f.identity.factory_id,
            f.identity.owner,
            f.logs.base_url,
            outbox_dir=str(Path(f.identity.state_dir) / "outbox"),
            outbox_bytes=int(f.monitor.outbox_mb * 2**20),
        )
    )


class Service:
    """Runs cycles until stopped; see the module docstring for signals and systemd."""

    def __init__(
        self,
        config_path: Path,
        cfg: FactoryConfig,
        options: RunOptions,
        notifier: Notifier,
        observers: Sequence[CycleObserver] = (),
    ) -> None:
        self._config_path, self._options, self._notifier = config_path, options, notifier
        self._config = cfg
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._monitor = None if options.dry_run else build_monitor(cfg)
        self._metrics = FactoryMetrics()
        state_dir = options.dry_run_dir if options.dry_run else cfg.factory.identity.state_dir
        self._observers: list[CycleObserver] = [
            StateWriter(Path(state_dir), cfg.factory.identity.factory_id),
            self._metrics,
        ]
        if self._monitor:
            self._observers.append(self._monitor)
        self._observers.extend(observers)
        self.factory = build_factory(
            cfg, options, self._observers, self._stop.is_set, self._metrics.observer_failed
        )
        self.last_report: CycleReport | None = None

    @property
    def config(self) -> FactoryConfig:
        return self._config

    @property
    def metrics(self) -> FactoryMetrics:
        return self._metrics

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def run(self) -> int:
        """Run cycles; returns the number run."""
        if self._monitor:
            self._monitor.start()
        metrics = self.config.factory.metrics
        if metrics.port and not self._options.dry_run:
            self._metrics.serve(metrics.port, metrics.address)
        done = 0
        try:
            done = self._loop()
        finally:
            self._notifier.stopping()
            if self._monitor:
                self._monitor.close(timeout=MONITOR_FLUSH_SECONDS)
        log.info("stopped after %s", plural(done, "cycle"))
        return done

    def _loop(self) -> int:
        done = 0
        while not self._stop.is_set():
            if self._reload.is_set():
                self._apply_reload()
            started = time.monotonic()
            if done == 0:
                self._notifier.ready(f"cycle 0 started, {plural(len(self.config.queues), 'queue')}")
            self._cycle(done)
            done += 1
            if self._options.cycles is not None and done >= self._options.cycles:
                break
            self._stop.wait(max(0.0, self.config.factory.identity.sleep - (time.monotonic() - started)))
        return done

    def _cycle(self, number: int) -> None:
        try:
            self.last_report = self.factory.run_cycle(number)
            self._notifier.status(self.last_report.summary())
        except Exception:
            log.exception("cycle %d failed; going on with the next one", number)
            self._notifier.status(f"cycle {number} failed, see the log")

    def _apply_reload(self) -> None:
        """All or nothing: any error in the new config, a queue section's too, keeps the old one."""
        self._reload.clear()
        self._notifier.reloading()
        try:
            new = config.load(self._config_path)
            if new.errors:
                raise config.ConfigError("\n".join(str(error) for error in new.errors))
            factory = build_factory(
                new, self._options, self._observers, self._stop.is_set, self._metrics.observer_failed
            )
        except (config.ConfigError, ValueError, OSError) as exc:
            log.error("reload rejected, the previous configuration stays in force:\n%s", exc)
            self._notifier.ready("reload rejected: configuration error, see the log")
            return
        before = {q.name for q in self.config.queues}
        after = {q.name for q in new.queues}
        self.factory, self._config = factory, new
        log.info(
            "configuration reloaded: %s (%d added, %d removed)",
            plural(len(after), "queue"),
            len(after - before),
            len(before - after),
        )
        self._notifier.ready(f"configuration reloaded: {plural(len(after), 'queue')}")


def install_signal_handlers(service: Service) -> None:
    def stop(signum: int, _frame: object) -> None:
        log.info("%s: stopping after the submission in progress", signal.Signals(signum).name)
        service.request_stop()

    def reload(_signum: int, _frame: object) -> None:
        log.info("SIGHUP: reloading the configuration before the next cycle")
        service.request_reload()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
