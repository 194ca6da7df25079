"""Putting the factory together from its configuration, and running it until told to stop.

This is the composition root: the only place that knows which concrete edge (HTTP session,
schedconfig source, PanDA client, batch backends, monitor client, state file, metrics) goes with
which setting. :class:`Service` runs the cycles:

* SIGTERM/SIGINT: the submission in progress finishes, no further label is submitted, the state
  is written, the monitor queue is flushed (bounded), and the process exits 0.
* SIGHUP: factory.conf and queuesDir are read again before the next cycle. A good new config
  replaces the old one whole, and every edge is built anew from it (:class:`Edges`: the PanDA and
  CRIC session, the schedconfig source, the PanDA client, the batch backends, the monitor client,
  the metrics endpoint when its port or address changed); the old ones are closed, the old
  monitor client handing its unsent outbox to the new one, the old schedconfig source its dump
  (when the location is the same: downloaded again when its refresh is due, not at each reload,
  as parsing a dump of many MB each time left the process larger). The state file, the metrics'
  series and the cycle count carry on. A broken config, also one with an error in a single queue
  section (which at start-up would only disable that queue), or one whose edges cannot be built
  (a metrics port already taken), is rejected with its errors and the old config and edges stay
  in force; the rejection shows in the state file (``status``, ``status --check``) and the
  metrics until the next accepted reload. Never a half-applied config. ``check --config-only``
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
from autopyfactory.batch.local.backend import LocalBackend
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
from autopyfactory.observers.metrics import FactoryMetrics, MetricsEndpoint
from autopyfactory.observers.monitor import MonitorObserver, MonitorSettings
from autopyfactory.observers.state import ConfigRecord, RuntimeNotes, StateWriter
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


def schedconfig_source(
    cfg: FactoryConfig, options: RunOptions, session: requests.Session
) -> SchedconfigSource:
    f = cfg.factory
    return SchedconfigSource(
        options.schedconfig or f.schedconfig.location,
        f.schedconfig_cache_path,
        f.schedconfig.refresh,
        session,
        f.http.timeout,
        time.time,
        keep_copy=not options.dry_run,
    )


def build_factory(
    cfg: FactoryConfig,
    options: RunOptions,
    session: requests.Session,
    schedconfig: SchedconfigSource,
    observers: Sequence[CycleObserver] = (),
    stop_requested: Callable[[], bool] = lambda: False,
    observer_failed: Callable[[str], None] = lambda _name: None,
) -> Factory:
    """The factory of ``cfg``: its PanDA client (asking through ``session``, which the caller
    closes when the factory is replaced) and batch backends, with ``schedconfig``."""
    cfg = for_dry_run(cfg, options)
    f = cfg.factory
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
            pilot_keys=f.monitor.pilot_keys,
        )
    )


@dataclass
class Edges:
    """What one configuration builds to talk to the world; a reload replaces it whole."""

    factory: Factory  # with its PanDA client and batch backends
    session: requests.Session  # PanDA's and CRIC's
    schedconfig: SchedconfigSource
    monitor: MonitorObserver | None
    metrics: MetricsEndpoint | None = None  # opened by Service.run, or by a reload

    def close(self, keep: Edges | None = None) -> None:
        """Free what ``keep`` (the edges replacing these) does not use; a monitor is handed over
        or flushed by the service, not here."""
        self.session.close()
        if self.metrics is not None and (keep is None or keep.metrics is not self.metrics):
            self.metrics.close()


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
        self._metrics = FactoryMetrics()
        self._config_record = ConfigRecord(str(config_path), time.time(), "start-up")
        state_dir = options.dry_run_dir if options.dry_run else cfg.factory.identity.state_dir
        self._state = StateWriter(Path(state_dir), cfg.factory.identity.factory_id, self._notes)
        self._extra_observers = tuple(observers)
        self._edges = self._build_edges(cfg)
        self.last_report: CycleReport | None = None

    @property
    def config(self) -> FactoryConfig:
        return self._config

    @property
    def metrics(self) -> FactoryMetrics:
        return self._metrics

    @property
    def factory(self) -> Factory:
        return self._edges.factory

    @property
    def monitor(self) -> MonitorObserver | None:
        return self._edges.monitor

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def run(self) -> int:
        """Run cycles; returns the number run."""
        if self._edges.monitor:
            self._edges.monitor.start()
        if not self._options.dry_run:
            self._edges.metrics = self._metrics_endpoint(self.config, None)
        done = 0
        try:
            done = self._loop()
        finally:
            self._notifier.stopping()
            if self._edges.monitor:
                self._edges.monitor.close(timeout=MONITOR_FLUSH_SECONDS)
            self._edges.close()
        log.info("stopped after %s", plural(done, "cycle"))
        return done

    def _loop(self) -> int:
        done = 0
        while not self._stop.is_set():
            if self._reload.is_set():
                self.reload()
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
        monitor = self._edges.monitor
        self._metrics.monitor_refused(bool(monitor and monitor.refused))

    def _notes(self) -> RuntimeNotes:
        """For the state file: the configuration in force, the last rejected reload, the monitor."""
        monitor = self._edges.monitor
        return RuntimeNotes(self._config_record, monitor.refused if monitor else "")

    # --- the edges, and reloading them -----------------------------------------------------

    def _build_edges(self, cfg: FactoryConfig) -> Edges:
        """Every edge of ``cfg`` but the metrics endpoint (bound by :meth:`_metrics_endpoint`)."""
        session = http_session(cfg.factory.http, self._stop.is_set)
        monitor = None if self._options.dry_run else build_monitor(cfg)
        observers: list[CycleObserver] = [self._state, self._metrics]
        observers += [monitor] if monitor else []
        observers += self._extra_observers
        schedconfig = schedconfig_source(cfg, self._options, session)
        try:
            factory = build_factory(
                cfg,
                self._options,
                session,
                schedconfig,
                observers,
                self._stop.is_set,
                self._metrics.observer_failed,
            )
        except BaseException:
            session.close()
            raise
        return Edges(factory, session, schedconfig, monitor)

    def _metrics_endpoint(
        self, cfg: FactoryConfig, current: MetricsEndpoint | None
    ) -> MetricsEndpoint | None:
        """The endpoint ``cfg`` asks for: ``current`` if it is the same, else a new one (OSError
        when it cannot be bound); None when metricsPort is 0."""
        wanted = cfg.factory.metrics
        if not wanted.port:
            return None
        if current is not None and current.where == (wanted.port, wanted.address):
            return current
        return self._metrics.serve(wanted.port, wanted.address)

    def reload(self) -> bool:
        """Read the configuration again and rebuild every edge from it; all or nothing: any error
        in the new config (a queue section's too) or in building its edges (a metrics port that
        cannot be bound) keeps the old config and edges. True when the new one is in force."""
        self._reload.clear()
        self._notifier.reloading()
        try:
            new = config.load(self._config_path)
            if new.errors:
                raise config.ConfigError("\n".join(str(error) for error in new.errors))
            edges = self._build_edges(new)
        except (config.ConfigError, ValueError, OSError) as exc:
            self._rejected(str(exc))
            return False
        try:
            if not self._options.dry_run:
                edges.metrics = self._metrics_endpoint(new, self._edges.metrics)
        except OSError as exc:
            edges.close(keep=self._edges)
            self._rejected(f"metricsPort {new.factory.metrics.port}: {exc}")
            return False
        self._replace_edges(edges)
        self._accepted(new)
        return True

    def _replace_edges(self, new: Edges) -> None:
        """Put ``new`` in force: the old monitor's outbox goes to the new one, the old edges close."""
        old, self._edges = self._edges, new
        new.schedconfig.carry_over(old.schedconfig)  # no new download before the refresh is due
        old_local = old.factory.backends.get(LocalBackend.name)
        new_local = new.factory.backends.get(LocalBackend.name)
        if isinstance(old_local, LocalBackend) and isinstance(new_local, LocalBackend):
            new_local.take_over(old_local)  # its waiting pilots' keys, its unreaped supervisors
        if old.monitor is not None and new.monitor is not None:
            old.monitor.hand_over(new.monitor, timeout=MONITOR_FLUSH_SECONDS)
        elif old.monitor is not None:
            old.monitor.close(timeout=MONITOR_FLUSH_SECONDS)  # monitorURL removed: flush, then stop
        if new.monitor is not None:
            new.monitor.start()
        old.close(keep=new)

    def _rejected(self, why: str) -> None:
        log.error("reload rejected, the previous configuration stays in force:\n%s", why)
        self._config_record = replace(self._config_record, rejected_at=time.time(), rejected_because=why)
        self._metrics.reload_done(accepted=False)
        self._notifier.ready("reload rejected: configuration error, see the log")

    def _accepted(self, new: FactoryConfig) -> None:
        before = {q.name for q in self.config.queues}
        after = {q.name for q in new.queues}
        self._config = new
        self._config_record = ConfigRecord(str(self._config_path), time.time(), "reload")
        self._metrics.reload_done(accepted=True)
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
