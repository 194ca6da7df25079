"""Prometheus metrics per cycle: right values, and label children looked up once (cheap at scale)."""

from __future__ import annotations

from prometheus_client import Gauge, generate_latest

from autopyfactory.observers.metrics import FactoryMetrics
from tests.support.cycle_data import observed_labels, observed_report


def test_metrics_reuse_label_children(tmp_path, monkeypatch):
    labels = observed_labels(tmp_path)
    metrics = FactoryMetrics()
    metrics.cycle_done(observed_report(labels), labels)
    calls = []
    original = Gauge.labels

    def counting(self, *values, **kw):
        calls.append(values)
        return original(self, *values, **kw)

    monkeypatch.setattr(Gauge, "labels", counting)
    metrics.cycle_done(observed_report(labels), labels)
    assert [c for c in calls if c and c[0].startswith("NDGF")] == []
    text = generate_latest(metrics.registry).decode()
    assert 'apf_pilots_submitted_total{label="NDGF-T1-arc01.ndgf.org-atlas"} 4.0' in text
    assert 'apf_pilots{label="NDGF-T1-arc02.ndgf.org-atlas",state="idle"} 0.0' in text
