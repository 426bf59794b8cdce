"""Metric families of DESIGN.md and their exposition, for one served model.

Every label value is bounded: model and version are fixed per process, status has three values,
prediction labels come from the model's declared label set (anything else becomes `other`), and
drift bins come from the baseline. The request path only appends to lists (one process) or
increments children resolved once (several workers).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial, reduce
from operator import add
from pathlib import Path

import numpy as np
from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    multiprocess,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from mlobs.drift import Baseline, DriftExport, DriftMonitor
from mlobs.logs import InferenceRecord
from mlobs.runner import ConcurrencyLimit

# `*_created` series double the number of series and no dashboard or rule of ours reads them.
disable_created_metrics()

# 0.5 must be a boundary: "p99 > 500 ms" is then decided exactly by the le="0.5" bucket.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
# 0.5 is the chatbot's fallback threshold, so the low-confidence share is exact too.
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
# shed: refused with 503 because the server was overloaded or stopping (it failed the caller).
STATUSES = ("success", "client_error", "server_error", "shed")
BIN_COUNTER = "model_feature_bin_total"
BIN_HELP = "Input values counted per drift bin of the baseline."
OUT_OF_RANGE_COUNTER = "model_feature_out_of_range_total"
OUT_OF_RANGE_HELP = "Input values outside the training range (numeric) or vocabulary (categorical)."
OTHER_LABEL = "other"


def multiprocess_dir() -> str | None:
    """The prometheus_client multiprocess directory, when several workers share one port."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def forget_dead_workers(directory: str) -> None:
    """Remove the live gauges of workers that died without a goodbye (SIGKILL, the OOM killer).

    prometheus_client sums a `live*` gauge over every worker's file until mark_process_dead
    removes a dead worker's; gunicorn calls it when a worker exits, uvicorn has no such hook.
    """
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = int(path.stem.rpartition("_")[2])
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class DriftCollector(Collector):
    """Reads a DriftMonitor's cumulative counts at scrape time (single-process servers)."""

    def __init__(self, model: str, monitor: DriftMonitor) -> None:
        self.model = model
        self.monitor = monitor

    def collect(self) -> Iterator[CounterMetricFamily]:
        totals, outside = self.monitor.totals()
        # CounterMetricFamily strips the _total suffix and adds it back to the samples.
        bins = CounterMetricFamily(BIN_COUNTER, BIN_HELP, labels=["model", "feature", "bin"])
        out_of_range = CounterMetricFamily(
            OUT_OF_RANGE_COUNTER, OUT_OF_RANGE_HELP, labels=["model", "feature"]
        )
        for name, feature in self.monitor.baseline.features.items():
            for label, count in zip(feature.bins.labels, totals[name], strict=True):
                bins.add_metric([self.model, name, label], count)
            out_of_range.add_metric([self.model, name], outside[name])
        yield bins
        yield out_of_range


@dataclass(frozen=True)
class Family:
    """One request-path metric family of DESIGN.md: name, help, label names, buckets."""

    name: str
    documentation: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


MV = ("model", "model_version")
REQUESTS = Family("model_requests_total", "Prediction requests by outcome.", (*MV, "status"))
LATENCY = Family(
    "model_latency_seconds",
    "Time to answer a prediction request.",
    MV,
    LATENCY_BUCKETS,
)
PREDICTIONS = Family("model_predictions_total", "Predictions by predicted label.", (*MV, "label"))
CONFIDENCE = Family("model_confidence", "Confidence of each prediction.", MV, CONFIDENCE_BUCKETS)
IN_FLIGHT = Family("model_requests_in_flight", "Prediction requests being answered.", ("model",))
RUNNING = Family(
    "model_predictions_running", "Predictions running, each holding a concurrency slot.", ("model",)
)
QUEUED = Family(
    "model_predictions_queued", "Predictions waiting for a concurrency slot.", ("model",)
)


class LimitCollector(Collector):
    """Reads the predictions running and waiting from the concurrency limit at scrape time."""

    def __init__(self, model: str, limit: ConcurrencyLimit) -> None:
        self.model = model
        self.limit = limit

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for family, value in ((RUNNING, self.limit.running), (QUEUED, self.limit.queued)):
            gauge = GaugeMetricFamily(family.name, family.documentation, labels=family.labels)
            gauge.add_metric([self.model], value)
            yield gauge


# OpenMetrics caps an exemplar's label names and values at 128 characters together.
EXEMPLAR_MAX_CHARS = 128


def exemplar_labels(record: InferenceRecord) -> dict[str, str] | None:
    """`request_id`, and `trace_id` when the request came with one, as far as both fit."""
    labels = {"request_id": record.request_id}
    if record.trace is not None:
        labels["trace_id"] = record.trace[0]
    while sum(len(k) + len(v) for k, v in labels.items()) > EXEMPLAR_MAX_CHARS:
        labels.popitem()  # a long client-chosen request id: keep what fits
        if not labels:
            return None
    return labels


class _LocalHistogram:
    """Bucket counts (not yet cumulative), sum, and the latest exemplar of each bucket, of one
    histogram of this process."""

    __slots__ = ("bounds", "counts", "exemplars", "family", "sum")

    def __init__(self, family: Family) -> None:
        self.family = family
        self.bounds = np.asarray(family.buckets)
        self.counts = np.zeros(len(family.buckets) + 1, dtype=np.int64)  # the last one is +Inf
        self.sum = 0.0
        self.exemplars: list[Exemplar | None] = [None] * len(self.counts)

    def add(
        self,
        values: tuple[float, ...],
        records: Sequence[InferenceRecord] = (),
        times: Sequence[float] = (),
    ) -> None:
        """Count `values`; with `records` and `times` (one per value), the last value of each
        bucket becomes its exemplar, labelled with its request id."""
        array = np.fromiter(values, dtype=float, count=len(values))
        # searchsorted "left" finds the first bound >= the value: Prometheus' `le` bucket.
        index = np.searchsorted(self.bounds, array, side="left")
        self.counts += np.bincount(index, minlength=len(self.counts))
        self.sum = reduce(add, values, self.sum)  # in order, as prometheus_client adds
        if records:
            last = np.full(len(self.counts), -1)
            np.maximum.at(last, index, np.arange(len(values)))
            for bucket in np.flatnonzero(last >= 0):
                i = int(last[bucket])
                labels = exemplar_labels(records[i])
                if labels is not None:
                    self.exemplars[bucket] = Exemplar(labels, values[i], times[i])

    def exported(self, labels: list[str]) -> HistogramMetricFamily:
        f = self.family
        bounds = [*map(floatToGoString, f.buckets), "+Inf"]
        cumulative = [int(c) for c in np.cumsum(self.counts)]
        buckets = [
            [bound, count] if exemplar is None else [bound, count, exemplar]
            for bound, count, exemplar in zip(bounds, cumulative, self.exemplars, strict=True)
        ]
        metric = HistogramMetricFamily(f.name, f.documentation, labels=f.labels)
        metric.add_metric(labels, buckets, self.sum)
        return metric


# Finished requests are counted in batches of this many (and at every scrape).
FOLD_BATCH = 256


class LocalRequestMetrics(Collector):
    """Request-path metrics of one process, for when a scrape reaches the process that counted.

    A request only appends to two lists (list.append is atomic, so no lock is taken); the lists
    are folded into counts, vectorised, every FOLD_BATCH requests and at every scrape. Counting
    each request on its own, as prometheus_client does with a lock per sample and a walk over the
    buckets, costs several times as much per request.
    """

    def __init__(self, model: str, version: str, labels: tuple[str, ...]) -> None:
        self.model, self.version = model, version
        self._fold_lock = threading.Lock()
        self._starts: list[None] = []
        self._finishes: list[tuple[InferenceRecord, float, float]] = []
        self._started = self._finished = 0
        self._requests = dict.fromkeys(STATUSES, 0)
        self._predictions = dict.fromkeys(labels, 0)
        self._latency = _LocalHistogram(LATENCY)
        self._confidence = _LocalHistogram(CONFIDENCE)
        self.started = partial(self._starts.append, None)  # model_requests_in_flight

    def finished(self, record: InferenceRecord, latency_seconds: float) -> None:
        """Count a finished request: its outcome, its latency (with the request id as an
        exemplar) and its answer if it has one; a label outside the declared set is `other`."""
        finishes = self._finishes
        finishes.append((record, latency_seconds, time.time()))
        if len(finishes) >= FOLD_BATCH:
            self._fold()

    def _fold(self) -> None:
        with self._fold_lock:
            # Take what is there now; appends that race with this stay for the next fold.
            started = len(self._starts)
            del self._starts[:started]
            taken = len(self._finishes)
            batch = self._finishes[:taken]
            del self._finishes[:taken]
            self._started += started
            self._finished += taken
            if not batch:
                return
            records, latencies, times = zip(*batch, strict=True)
            for status, n in collections.Counter(r.status for r in records).items():
                self._requests[status] += n
            self._latency.add(latencies, records, times)
            # Failed requests have no answer.
            answered = [r for r in records if r.prediction is not None and r.confidence is not None]
            for label, n in collections.Counter(r.prediction for r in answered).items():
                self._predictions[label if label in self._predictions else OTHER_LABEL] += n
            if answered:
                self._confidence.add(tuple(r.confidence for r in answered))

    def collect(self) -> Iterator[Metric]:
        self._fold()
        mv = [self.model, self.version]
        requests = CounterMetricFamily(
            REQUESTS.name, REQUESTS.documentation, labels=REQUESTS.labels
        )
        predictions = CounterMetricFamily(
            PREDICTIONS.name, PREDICTIONS.documentation, labels=PREDICTIONS.labels
        )
        in_flight = GaugeMetricFamily(
            IN_FLIGHT.name, IN_FLIGHT.documentation, labels=IN_FLIGHT.labels
        )
        with self._fold_lock:
            for status, count in self._requests.items():
                requests.add_metric([*mv, status], count)
            for label, count in self._predictions.items():
                predictions.add_metric([*mv, label], count)
            in_flight.add_metric([self.model], self._started - self._finished)
            histograms = [self._latency.exported(mv), self._confidence.exported(mv)]
        yield from (requests, predictions, *histograms, in_flight)


class SharedRequestMetrics:
    """Request-path metrics in prometheus_client's multiprocess files, summed over workers."""

    def __init__(
        self, registry: CollectorRegistry, model: str, version: str, labels: tuple[str, ...]
    ) -> None:
        mv = (model, version)
        requests = Counter(
            REQUESTS.name, REQUESTS.documentation, REQUESTS.labels, registry=registry
        )
        predictions = Counter(
            PREDICTIONS.name, PREDICTIONS.documentation, PREDICTIONS.labels, registry=registry
        )
        latency, confidence = (
            Histogram(f.name, f.documentation, f.labels, buckets=f.buckets, registry=registry)
            for f in (LATENCY, CONFIDENCE)
        )
        in_flight = Gauge(
            IN_FLIGHT.name,
            IN_FLIGHT.documentation,
            IN_FLIGHT.labels,
            multiprocess_mode="livesum",
            registry=registry,
        )
        self._requests = {s: requests.labels(*mv, s) for s in STATUSES}
        self._predictions = {label: predictions.labels(*mv, label) for label in labels}
        self._latency = latency.labels(*mv)
        self._confidence = confidence.labels(*mv)
        self._in_flight = in_flight.labels(model)

    def started(self) -> None:
        self._in_flight.inc()

    def finished(self, record: InferenceRecord, latency_seconds: float) -> None:
        # No exemplar: prometheus_client's multiprocess files keep none.
        self._in_flight.dec()
        self._requests[record.status].inc()
        self._latency.observe(latency_seconds)
        label, confidence = record.prediction, record.confidence
        if label is not None and confidence is not None:
            self._predictions.get(label, self._predictions[OTHER_LABEL]).inc()
            self._confidence.observe(confidence)


class ModelMetrics:
    """The metric families for one model version, registered in `registry`.

    The request path calls `started` and `finished` once per prediction request. In one process
    these are LocalRequestMetrics, read at scrape time; with several workers
    (PROMETHEUS_MULTIPROC_DIR) a scrape reaches one worker only, so they are prometheus_client's
    shared multiprocess metrics (SharedRequestMetrics).
    """

    def __init__(
        self, registry: CollectorRegistry, model: str, version: str, labels: Iterable[str]
    ) -> None:
        self.registry = registry
        self.model = model
        label_set = (*labels, OTHER_LABEL)
        request_metrics: LocalRequestMetrics | SharedRequestMetrics
        if multiprocess_dir():
            request_metrics = SharedRequestMetrics(registry, model, version, label_set)
        else:
            request_metrics = LocalRequestMetrics(model, version, label_set)
            registry.register(request_metrics)
            # Process metrics are per process; not aggregated across workers.
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            registry.register(GC_COLLECTOR)
        self.started = request_metrics.started
        self.finished = request_metrics.finished
        info = Gauge(
            "model_info",
            "Always 1; carries the served model version.",
            MV,
            multiprocess_mode="max",
            registry=registry,
        )
        info.labels(model, version).set(1)
        self.baseline_ratio = Gauge(
            "model_feature_baseline_ratio",
            "Share of the training baseline in each drift bin.",
            ["model", "feature", "bin"],
            multiprocess_mode="max",
            registry=registry,
        )

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

    def attach_limit(self, limit: ConcurrencyLimit) -> None:
        """Export the predictions running and queued of `limit`.

        In one process they are read at scrape time; with several workers each change is written
        to prometheus_client's shared gauges (summed over the live workers).
        """
        if not multiprocess_dir():
            self.registry.register(LimitCollector(self.model, limit))
            return
        running, queued = (
            Gauge(
                f.name,
                f.documentation,
                f.labels,
                multiprocess_mode="livesum",
                registry=self.registry,
            ).labels(self.model)
            for f in (RUNNING, QUEUED)
        )

        def update() -> None:
            running.set(limit.running)
            queued.set(limit.queued)

        limit.on_change = update
        update()

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

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """This process's registry, or every worker's in multiprocess mode, in the format the
        `accept` header asks for: OpenMetrics (with the latency exemplars) for a scraper that
        asks for it, as Prometheus does, else the classic text format, which has no exemplars."""
        encode, content_type = choose_encoder(accept or "")
        directory = multiprocess_dir()
        if directory:
            forget_dead_workers(directory)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return encode(registry), content_type
        return encode(self.registry), content_type
