"""One process reads plain counters at scrape time; workers share prometheus_client's files.
Both must expose exactly the same samples for the same requests."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, generate_latest

from mlobs.logs import InferenceRecord
from mlobs.metrics import FOLD_BATCH, LocalRequestMetrics, SharedRequestMetrics
from tests.support.http import metric_samples

LABELS = ("normal", "anomaly", "other")
# (status, latency in seconds, predicted label, confidence): bucket bounds, the +Inf bucket,
# an undeclared label and failed requests without an answer.
REQUESTS = [
    ("success", 0.005, "normal", 0.1),
    ("success", 0.0051, "anomaly", 0.99),
    ("success", 0.5, "unheard-of", 0.995),
    ("success", 12.0, "normal", 1.0),
    ("client_error", 0.001, None, None),
    ("server_error", 0.3, None, None),
]


def finish(metrics, status: str, latency: float, label: str | None, confidence: float | None):
    record = InferenceRecord("req", prediction=label, confidence=confidence, status=status)
    metrics.finished(record, latency)


def _exposition(kind: type, requests: list[tuple] = REQUESTS) -> dict:
    registry = CollectorRegistry()
    if kind is LocalRequestMetrics:
        metrics = LocalRequestMetrics("m", "1", LABELS)
        registry.register(metrics)
    else:
        metrics = SharedRequestMetrics(registry, "m", "1", LABELS)
    for request in requests:
        metrics.started()
        finish(metrics, *request)
    metrics.started()  # one still in flight
    return metric_samples(generate_latest(registry).decode())


def test_local_and_shared_request_metrics_expose_the_same_samples():
    local = _exposition(LocalRequestMetrics)
    assert local == _exposition(SharedRequestMetrics)
    mv = {"model": "m", "model_version": "1"}

    def value(name: str, **labels: str) -> float:
        return local[(name, frozenset(labels.items()))]

    assert value("model_requests_total", **mv, status="success") == 4
    assert value("model_latency_seconds_bucket", **mv, le="0.005") == 2  # le: bound included
    assert value("model_latency_seconds_bucket", **mv, le="10.0") == 5
    assert value("model_latency_seconds_count", **mv) == 6
    assert value("model_predictions_total", **mv, label="other") == 1
    assert value("model_confidence_bucket", **mv, le="0.99") == 2
    assert value("model_confidence_sum", **mv) == 0.1 + 0.99 + 0.995 + 1.0
    assert value("model_requests_in_flight", model="m") == 1


def test_counts_folded_in_batches_equal_counting_each_request():
    many = REQUESTS * (2 * FOLD_BATCH // len(REQUESTS) + 7)  # several folds and a remainder
    local = _exposition(LocalRequestMetrics, many)
    assert local == _exposition(SharedRequestMetrics, many)
    mv = frozenset({"model": "m", "model_version": "1"}.items())
    assert local[("model_latency_seconds_count", mv)] == len(many)


def test_concurrent_requests_and_scrapes_lose_no_count():
    metrics = LocalRequestMetrics("m", "1", LABELS)
    registry = CollectorRegistry()
    registry.register(metrics)
    per_thread = 3 * FOLD_BATCH + 5

    def serve() -> None:
        for _ in range(per_thread):
            metrics.started()
            finish(metrics, "success", 0.01, "normal", 0.9)

    def scrape() -> None:
        for _ in range(50):
            generate_latest(registry)

    threads = [threading.Thread(target=serve) for _ in range(4)]
    threads.append(threading.Thread(target=scrape))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    samples = metric_samples(generate_latest(registry).decode())
    mv = {"model": "m", "model_version": "1"}
    assert samples[("model_requests_total", frozenset({**mv, "status": "success"}.items()))] == (
        4 * per_thread
    )
    assert samples[("model_requests_in_flight", frozenset({"model": "m"}.items()))] == 0
