"""Prometheus metrics of the factory, updated at the end of every cycle.

One registry per factory (no global default registry), served by prometheus-client's own HTTP
server on ``metricsAddress:metricsPort`` when ``metricsPort`` is set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from autopyfactory.factory import CycleReport, LabelResult
from autopyfactory.labels import Label


class FactoryMetrics:
    """A cycle observer that turns each CycleReport into metrics."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        last_update: Callable[[str], float | None] | None = None,
    ) -> None:
        """``last_update(kind)`` gives the time of the last good schedconfig/panda answer, if known."""
        self.registry = registry or CollectorRegistry()
        self._last_update = last_update or (lambda _kind: None)
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
            "apf_errors", "Errors by kind (schedconfig, panda, batch, submit)", ["kind"], registry=r
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
        self.proxy_lifetime = Gauge(
            "apf_credential_lifetime_seconds", "Lifetime left of a credential", ["path"], registry=r
        )

    def cycle_done(self, report: CycleReport, labels: Sequence[Label]) -> None:
        self.cycles.inc()
        self.cycle_seconds.set(report.duration)
        for problem in report.problems:
            self.errors.labels(problem.kind).inc()
        if report.ok("batch"):
            self.last_success.labels("condor").set(report.started)
        for kind in ("schedconfig", "panda"):
            when = self._last_update(kind)
            if when is not None:
                self.last_success.labels(kind).set(when)
        for result in report.results:
            self._label(result.plan.label.name, result)
        for check in report.credentials:
            self.credential(check.path, check.lifetime_seconds)

    def _label(self, name: str, result: LabelResult) -> None:
        p = result.plan
        self.decided.labels(name).set(p.decision.n)
        if result.submitted:
            self.submitted.labels(name).inc(result.submitted)
        if result.outcome.error:
            self.errors.labels("submit").inc()
        if p.supply is not None:
            for state, value in (
                ("idle", p.supply.idle),
                ("running", p.supply.running),
                ("held", p.supply.held),
            ):
                self.pilots.labels(name, state).set(value)
        if p.pq_activated is not None:
            self.activated.labels(p.label.pq).set(p.pq_activated)

    def observer_failed(self, name: str) -> None:
        self.observer_errors.labels(name).inc()

    def credential(self, path: str, lifetime: float | None) -> None:
        if lifetime is not None:
            self.proxy_lifetime.labels(path).set(lifetime)

    def serve(self, port: int, address: str) -> None:
        start_http_server(port, addr=address, registry=self.registry)
