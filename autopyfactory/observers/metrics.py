"""Prometheus metrics of the factory, updated at the end of every cycle.

One registry per factory (no global default registry), served by prometheus-client's own HTTP
server on ``metricsAddress:metricsPort`` when ``metricsPort`` is set (:class:`MetricsEndpoint`;
a reload that changes the port or address closes the old one and opens the new one). The
registry and its series live as long as the process: a reload changes none of them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from autopyfactory.cycle.report import CycleReport, LabelResult
from autopyfactory.domain.label import Label
from autopyfactory.domain.model import EdgeKind


class FactoryMetrics:
    """A cycle observer that turns each CycleReport into metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.pilots = Gauge(
            "apf_pilots", "Pilots in the batch system per label and state", ["label", "state"], registry=r
        )
        self.submitted = Counter("apf_pilots_submitted", "Pilots submitted per label", ["label"], registry=r)
        self.decided = Gauge(
            "apf_decision", "Pilots the policy asked for in the last cycle", ["label"], registry=r
        )
        self.activated = Gauge(
            "apf_activated_jobs", "Activated PanDA jobs per PanDA queue", ["pq"], registry=r
        )
        self.cycle_seconds = Gauge("apf_cycle_duration_seconds", "Duration of the last cycle", registry=r)
        self.cycles = Counter("apf_cycles", "Cycles run", registry=r)
        self.errors = Counter(
            "apf_errors",
            "Errors by kind (schedconfig, panda, batch, control, state, submit)",
            ["kind"],
            registry=r,
        )
        self.last_success = Gauge(
            "apf_last_success_timestamp_seconds",
            "Time of the last good answer per source",
            ["source"],
            registry=r,
        )
        self.observer_errors = Counter(
            "apf_observer_errors",
            "Cycle observers that failed (StateWriter: the state file could not be written)",
            ["observer"],
            registry=r,
        )
        self.panda_ok = Gauge(
            "apf_panda_data_ok",
            "1 when the last cycle had good PanDA statistics, 0 when it had none",
            registry=r,
        )
        self.proxy_lifetime = Gauge(
            "apf_credential_lifetime_seconds", "Lifetime left of a credential", ["path"], registry=r
        )
        self.reloads = Counter(
            "apf_config_reloads", "Reloads (SIGHUP) by result (accepted, rejected)", ["result"], registry=r
        )
        self.reload_rejected = Gauge(
            "apf_config_reload_rejected",
            "1 while the last reload was rejected (the configuration read before stays in force)",
            registry=r,
        )
        self.config_error = Gauge(
            "apf_config_error",
            "1 while an edge refuses the configured credentials (monitor: HTTP 401/403, monitorToken)",
            ["edge"],
            registry=r,
        )
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Gauge | Counter, *values: str) -> Any:
        """``metric.labels(*values)``, looked up once: the cycle updates thousands of label
        children and prometheus-client validates and locks on every ``labels()`` call."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def cycle_done(self, report: CycleReport, labels: Sequence[Label]) -> None:
        self.cycles.inc()
        self.cycle_seconds.set(report.duration)
        for problem in report.problems:
            self.errors.labels(problem.kind.value).inc()
        if report.ok(EdgeKind.BATCH):
            self.last_success.labels("condor").set(report.started)
        if report.panda is not None:
            self.panda_ok.set(1 if report.panda.ok else 0)
            if report.panda.last_good is not None:
                self.last_success.labels("panda").set(report.panda.last_good)
        for result in report.results:
            self._label(result.plan.label.name, result)
        for check in report.credentials:
            self.credential(check.path, check.lifetime_seconds)

    def _label(self, name: str, result: LabelResult) -> None:
        p = result.plan
        self.child(self.decided, name).set(p.decision.n)
        if result.submitted:
            self.child(self.submitted, name).inc(result.submitted)
        if result.outcome.error:
            self.child(self.errors, "submit").inc()
        if p.supply is not None:
            self.child(self.pilots, name, "idle").set(p.supply.idle)
            self.child(self.pilots, name, "running").set(p.supply.running)
            self.child(self.pilots, name, "held").set(p.supply.held)
        # no PanDA data: NaN rather than the last number, which PanDA no longer confirms
        self.child(self.activated, p.label.pq).set(math.nan if p.pq_activated is None else p.pq_activated)

    def observer_failed(self, name: str) -> None:
        self.observer_errors.labels(name).inc()

    def credential(self, path: str, lifetime: float | None) -> None:
        if lifetime is not None:
            self.proxy_lifetime.labels(path).set(lifetime)

    def reload_done(self, accepted: bool) -> None:
        self.reloads.labels("accepted" if accepted else "rejected").inc()
        self.reload_rejected.set(0 if accepted else 1)

    def monitor_refused(self, refused: bool) -> None:
        self.config_error.labels("monitor").set(1 if refused else 0)

    def serve(self, port: int, address: str) -> MetricsEndpoint:
        return MetricsEndpoint(self.registry, port, address)


class MetricsEndpoint:
    """The registry served on ``address:port`` until :meth:`close` (an OSError if it cannot bind)."""

    def __init__(self, registry: CollectorRegistry, port: int, address: str) -> None:
        self.where = (port, address)
        self._server: WSGIServer
        self._thread: threading.Thread
        self._server, self._thread = start_http_server(port, addr=address, registry=registry)

    def close(self) -> None:
        """Stop serving and free the port (the serving thread ends)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)
