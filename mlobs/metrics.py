"""Metric families of DESIGN.md and their exposition, for one served model.

Every label value is bounded: model and version are fixed per process, status has three values,
prediction labels come from the model's declared label set (anything else becomes `other`), and
drift bins come from the baseline. Children are resolved once so the request path only increments.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from mlobs.drift import Baseline, DriftExport, DriftMonitor

# `*_created` series double the number of series and no dashboard or rule of ours reads them.
disable_created_metrics()

# 0.5 must be a boundary: "p99 > 500 ms" is then decided exactly by the le="0.5" bucket.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
# 0.5 is the chatbot's fallback threshold, so the low-confidence share is exact too.
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
STATUSES = ("success", "client_error", "server_error")
BIN_COUNTER = "model_feature_bin_total"
BIN_HELP = "Input values counted per drift bin of the baseline."
OUT_OF_RANGE_COUNTER = "model_feature_out_of_range_total"
OUT_OF_RANGE_HELP = "Input values outside the training range (numeric) or vocabulary (categorical)."
OTHER_LABEL = "other"


def status_of(http_status: int) -> str:
    """Map an HTTP status code to the `status` label of model_requests_total."""
    if http_status >= 500:
        return "server_error"
    if http_status >= 400:
        return "client_error"
    return "success"


def multiprocess_dir() -> str | None:
    """The prometheus_client multiprocess directory, when several workers share one port."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class DriftCollector(Collector):
    """Reads a DriftMonitor's cumulative counts at scrape time (single-process servers)."""

    def __init__(self, model: str, monitor: DriftMonitor) -> None:
        self.model = model
        self.monitor = monitor

    def collect(self) -> Iterator[CounterMetricFamily]:
        totals, outside = self.monitor.totals()
        # CounterMetricFamily adds the _total suffix itself.
        bins = CounterMetricFamily(
            BIN_COUNTER.removesuffix("_total"), BIN_HELP, labels=["model", "feature", "bin"]
        )
        out_of_range = CounterMetricFamily(
            OUT_OF_RANGE_COUNTER.removesuffix("_total"),
            OUT_OF_RANGE_HELP,
            labels=["model", "feature"],
        )
        for name, feature in self.monitor.baseline.features.items():
            for label, count in zip(feature.bins.labels, totals[name], strict=True):
                bins.add_metric([self.model, name, label], count)
            out_of_range.add_metric([self.model, name], outside[name])
        yield bins
        yield out_of_range


class ModelMetrics:
    """The metric families for one model version, registered in `registry`."""

    def __init__(
        self, registry: CollectorRegistry, model: str, version: str, labels: Iterable[str]
    ) -> None:
        self.registry = registry
        self.model = model
        self.version = version
        mv = ("model", "model_version")
        requests = Counter(
            "model_requests_total",
            "Prediction requests by outcome.",
            [*mv, "status"],
            registry=registry,
        )
        latency = Histogram(
            "model_latency_seconds",
            "Time to answer a prediction request.",
            mv,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        predictions = Counter(
            "model_predictions_total",
            "Predictions by predicted label.",
            [*mv, "label"],
            registry=registry,
        )
        confidence = Histogram(
            "model_confidence",
            "Confidence of each prediction.",
            mv,
            buckets=CONFIDENCE_BUCKETS,
            registry=registry,
        )
        in_flight = Gauge(
            "model_requests_in_flight",
            "Prediction requests being answered.",
            ["model"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        info = Gauge(
            "model_info",
            "Always 1; carries the served model version.",
            mv,
            multiprocess_mode="max",
            registry=registry,
        )
        self.baseline_ratio = Gauge(
            "model_feature_baseline_ratio",
            "Share of the training baseline in each drift bin.",
            ["model", "feature", "bin"],
            multiprocess_mode="max",
            registry=registry,
        )

        self._requests = {s: requests.labels(model, version, s) for s in STATUSES}
        self._latency = latency.labels(model, version)
        self._predictions = {
            label: predictions.labels(model, version, label) for label in (*labels, OTHER_LABEL)
        }
        self._confidence = confidence.labels(model, version)
        self.in_flight = in_flight.labels(model)
        info.labels(model, version).set(1)
        if not multiprocess_dir():  # process metrics are per process; not aggregated across workers
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            registry.register(GC_COLLECTOR)

    def attach_drift(self, monitor: DriftMonitor) -> None:
        """Export the monitor's counts as model_feature_bin_total and
        model_feature_out_of_range_total, and the baseline as model_feature_baseline_ratio.

        In one process the counters are read from the monitor at scrape time, which costs the
        request path nothing. With several workers a scrape reaches one worker only, so each
        update is mirrored into prometheus_client's shared multiprocess counters instead.
        """
        for name, feature in monitor.baseline.features.items():
            for label, ratio in zip(feature.bins.labels, feature.proportions, strict=True):
                self.baseline_ratio.labels(self.model, name, label).set(ratio)
        if multiprocess_dir():
            monitor.export = self.live_drift_counters(monitor.baseline)
        else:
            self.registry.register(DriftCollector(self.model, monitor))

    def live_drift_counters(self, baseline: Baseline) -> DriftExport:
        """prometheus_client counters for every drift bin, for a monitor to update directly."""
        bins = Counter(BIN_COUNTER, BIN_HELP, ["model", "feature", "bin"], registry=self.registry)
        outside = Counter(
            OUT_OF_RANGE_COUNTER, OUT_OF_RANGE_HELP, ["model", "feature"], registry=self.registry
        )
        # Every child exists from the start: increase() of a series that appears later misses
        # its first count.
        return DriftExport(
            bins={
                name: [bins.labels(self.model, name, b) for b in feature.bins.labels]
                for name, feature in baseline.features.items()
            },
            out_of_range={name: outside.labels(self.model, name) for name in baseline.features},
        )

    def observe_request(self, status: str, latency_seconds: float) -> None:
        """Count one finished prediction request and its latency."""
        self._requests[status].inc()
        self._latency.observe(latency_seconds)

    def observe_prediction(self, label: str, confidence: float) -> None:
        """Count one answer; a label outside the declared set is counted as `other`."""
        counter = self._predictions.get(label) or self._predictions[OTHER_LABEL]
        counter.inc()
        self._confidence.observe(confidence)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition: this process's registry, or every worker's in multiprocess mode."""
        if multiprocess_dir():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
