"""With several workers (PROMETHEUS_MULTIPROC_DIR set) /metrics says what one process would say.

A scrape reaches one worker, so the workers keep their counts in prometheus_client's files and
every scrape sums them. Here the test process plays a worker: the variable points at a fresh
directory, and prometheus_client keeps its values in files there, as it does in a worker that
imports it with the variable set. The same requests go through a single-process app and a
worker's app (the real create_app, driven by TestClient), and their /metrics are compared; the
gauges of predictions running and waiting are read while predictions are held; a worker killed
mid-prediction (a child process that SIGKILLs itself) leaves its counts but not its gauges.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import values

import mlobs
from mlobs.model import Prediction
from services.anomaly_detector.data import FEATURES, simulate_normal
from tests.support.http import metric_samples, sample
from tests.support.slow_model import SlowModel, SlowRequest
from tests.support.waiting import wait_for

MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"
BIN = "model_feature_bin_total"
OUT_OF_RANGE = "model_feature_out_of_range_total"
ANOMALY = {"model": "anomaly-detector"}
SLOW = {"model": "slow-model"}
SLOW_MV = {**SLOW, "model_version": "1.0.0"}
# Series a worker's scrape must show exactly as one process does for the same requests. Latency
# is left out (it differs from run to run) except for its count; process_* and python_* are per
# process by design.
COMPARED = {
    "model_requests_total",
    "model_predictions_total",
    "model_confidence_bucket",
    "model_confidence_count",
    "model_confidence_sum",
    "model_latency_seconds_count",
    "model_requests_in_flight",
    "model_predictions_running",
    "model_predictions_queued",
    "model_info",
    "model_feature_baseline_ratio",
    BIN,
    OUT_OF_RANGE,
}
# One series of each of prometheus_client's process, platform and garbage collector collectors.
PER_PROCESS = {"process_resident_memory_bytes", "python_info", "python_gc_objects_collected_total"}


def _as_worker(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """From now on this process keeps its metrics as one of several workers does, in `directory`
    (made empty). prometheus_client picks its value class when imported; a worker imports it
    with PROMETHEUS_MULTIPROC_DIR already set, which is what this reproduces."""
    directory.mkdir()
    monkeypatch.setenv(MULTIPROC, str(directory))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    return directory


@pytest.fixture
def files_closed() -> Iterator[None]:
    """The multiprocess files this process opened are closed after the test."""
    yield
    values.close_all_multiprocess_files()


def _readings(rows: np.ndarray) -> list[dict]:
    return [{"features": dict(zip(FEATURES, map(float, row), strict=True))} for row in rows]


# Shifted but valid readings, and one far outside the training range on every feature.
BODIES = [
    *_readings(simulate_normal(40, np.random.default_rng(11), load_shift=2.0)),
    {"features": dict.fromkeys(FEATURES, 1e6)},
]


def _compared(exposition: str) -> dict[tuple[str, frozenset], float]:
    return {k: v for k, v in metric_samples(exposition).items() if k[0] in COMPARED}


def _drift_series(exposition: str, name: str) -> dict[tuple[str, ...], float]:
    """{(feature, bin) or (feature,): value} of one drift family of the anomaly detector."""
    found = {}
    for (sample_name, labels), value in metric_samples(exposition).items():
        labels = dict(labels)
        if sample_name == name and labels.pop("model") == ANOMALY["model"]:
            found[(labels.pop("feature"), *labels.values())] = value
    return found


def _predict_all(client) -> str:
    """The BODIES, then /drift (a read bins what is queued), then /metrics."""
    for body in BODIES:
        assert client.post("/predict", json=body).status_code == 200
    assert client.get("/drift").status_code == 200
    return client.get("/metrics").text


def test_a_workers_metrics_and_drift_counts_equal_those_of_one_process(
    serve, anomaly_model, tmp_path, monkeypatch, files_closed
):
    with serve(anomaly_model) as client:
        one_process = _predict_all(client)
    _as_worker(tmp_path / "prom", monkeypatch)
    with serve(anomaly_model) as client:
        before = client.get("/metrics").text
        worker = _predict_all(client)
    # Each app has its own registry: a second one in the same worker process starts too.
    with serve(anomaly_model) as client:
        assert client.get("/readyz").status_code == 200

    # Every bin of the baseline is a series from the start, at 0: increase() over a series
    # that appears with its first count would miss that count.
    features = anomaly_model.baseline.features
    every_bin = {(name, b) for name, feature in features.items() for b in feature.bins.labels}
    assert _drift_series(before, BIN) == dict.fromkeys(every_bin, 0.0)
    assert _drift_series(before, OUT_OF_RANGE) == {(name,): 0.0 for name in features}

    assert _compared(worker) == _compared(one_process)
    # ... and what they both say is right: each reading counts once per feature, in one bin.
    bins = _drift_series(worker, BIN)
    assert set(bins) == every_bin
    for name in FEATURES:
        assert sum(v for (f, _), v in bins.items() if f == name) == len(BODIES), name
        assert _drift_series(worker, OUT_OF_RANGE)[(name,)] >= 1, name  # the 1e6 reading
    mv = {**ANOMALY, "model_version": anomaly_model.version}
    assert sample(worker, "model_requests_total", **mv, status="success") == len(BODIES)
    assert sample(worker, "model_requests_in_flight", **ANOMALY) == 0
    # The standard process, platform and GC series describe one process: a single process
    # shows its own, a worker's scrape none (they would not add up across workers).
    names = {name for name, _ in metric_samples(one_process)}
    assert names >= PER_PROCESS, PER_PROCESS - names
    assert not PER_PROCESS & {name for name, _ in metric_samples(worker)}


HELD = threading.Event()


class HeldModel(SlowModel):
    """Answers at once, except "hold", which waits until the test sets HELD."""

    def predict(self, payload: SlowRequest) -> Prediction:
        if payload.message == "hold":
            HELD.wait(timeout=60)
        return self._answer(payload)


def test_predictions_running_and_waiting_are_summed_over_the_live_workers(
    serve, tmp_path, monkeypatch, files_closed
):
    """One slot and a queue of one: the first held prediction runs, the second waits, a third
    is shed; each gauge is a single series for the model, whatever the number of workers."""
    _as_worker(tmp_path / "prom", monkeypatch)
    HELD.clear()
    with (
        serve(HeldModel(0), predict_concurrency=1, predict_queue=1) as client,
        ThreadPoolExecutor(2) as pool,
    ):
        start = client.get("/metrics").text
        try:
            held = [pool.submit(client.post, "/predict", json={"message": "hold"}) for _ in "ab"]

            def both_in() -> bool:
                text = client.get("/metrics").text
                return sample(text, "model_predictions_queued", **SLOW) == 1

            wait_for("one prediction running and one waiting", both_in, timeout=30, every=0.05)
            during = client.get("/metrics").text
            shed = client.post("/predict", json={"message": "quick"})
        finally:
            HELD.set()
        answers = [h.result(timeout=30) for h in held]
        after = client.get("/metrics").text
    assert [a.status_code for a in answers] == [200, 200]
    assert shed.status_code == 503
    assert _gauges(during) == {
        "model_predictions_running": 1,
        "model_predictions_queued": 1,
        "model_requests_in_flight": 2,
    }
    # Series from the start (a dashboard shows 0, not "no data"), and back to 0 at the end.
    assert _gauges(start) == _gauges(after) == dict.fromkeys(_gauges(during), 0)
    assert sample(after, "model_requests_total", **SLOW_MV, status="success") == 2
    assert sample(after, "model_requests_total", **SLOW_MV, status="shed") == 1


def _gauges(exposition: str) -> dict[str, float]:
    """The three live gauges of the slow model, each of which must be one series."""
    names = ("model_predictions_running", "model_predictions_queued", "model_requests_in_flight")
    found = {k: v for k, v in metric_samples(exposition).items() if k[0] in names}
    # One series each, for the model: not one per worker (pid), not one per state.
    assert sorted(found) == sorted((name, frozenset(SLOW.items())) for name in names), found
    return {name: value for (name, _), value in found.items()}


# A worker that counted one answered request, then was killed (SIGKILL: no goodbye) while it
# ran another; it keeps its metrics as a worker does, in PROMETHEUS_MULTIPROC_DIR.
KILLED_WORKER = """
import asyncio, os, signal
from prometheus_client import CollectorRegistry
from mlobs.logs import InferenceRecord
from mlobs.metrics import ModelMetrics
from mlobs.runner import ConcurrencyLimit

metrics = ModelMetrics(CollectorRegistry(), "slow-model", "1.0.0", ["done"])
limit = ConcurrencyLimit(1, 1)
metrics.attach_limit(limit)
metrics.started()
metrics.finished(InferenceRecord("answered", prediction="done", confidence=0.9), 0.02)
metrics.started()
asyncio.run(limit.acquire())
os.kill(os.getpid(), signal.SIGKILL)
"""


def _kill_a_worker(directory: Path) -> int:
    """Run KILLED_WORKER with `directory` as its multiprocess directory; its process id."""
    repo = Path(mlobs.__file__).resolve().parent.parent  # the checkout under test
    with subprocess.Popen(
        [sys.executable, "-c", KILLED_WORKER],
        env={**os.environ, MULTIPROC: str(directory)},
        cwd=repo,
        stderr=subprocess.PIPE,
        text=True,
    ) as worker:
        _, errors = worker.communicate(timeout=60)
    assert worker.returncode == -signal.SIGKILL, errors
    return worker.pid


def test_a_killed_workers_counts_stay_but_its_predictions_in_flight_do_not(
    serve, tmp_path, monkeypatch, files_closed
):
    directory = _as_worker(tmp_path / "prom", monkeypatch)
    killed = _kill_a_worker(directory)
    with pytest.raises(ProcessLookupError):  # gone, so it cannot be running anything
        os.kill(killed, 0)
    with serve(HeldModel(0)) as client:
        assert client.post("/predict", json={"message": "quick"}).status_code == 200
        text = client.get("/metrics").text
    # No counter goes backwards when a worker dies: its answered request is still counted.
    assert sample(text, "model_requests_total", **SLOW_MV, status="success") == 2
    assert sample(text, "model_predictions_total", **SLOW_MV, label="done") == 2
    assert _gauges(text) == {
        "model_predictions_running": 0,
        "model_predictions_queued": 0,
        "model_requests_in_flight": 0,
    }


def test_live_gauges_of_a_worker_still_running_are_kept(serve, tmp_path, monkeypatch, files_closed):
    """Only dead workers are forgotten: the live gauges of another running worker stay in the
    sum. Process 1 (always running) stands in for that worker."""
    directory = _as_worker(tmp_path / "prom", monkeypatch)
    _kill_a_worker(directory)
    [dead_file] = directory.glob("gauge_livesum_*.db")
    # The same gauges, under the pid of a process that is alive: pid 1 always is.
    (directory / "gauge_livesum_1.db").write_bytes(dead_file.read_bytes())
    with serve(HeldModel(0)) as client:
        text = client.get("/metrics").text
    assert _gauges(text) == {
        "model_predictions_running": 1,
        "model_predictions_queued": 0,
        "model_requests_in_flight": 1,
    }
