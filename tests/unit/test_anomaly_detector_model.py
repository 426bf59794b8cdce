"""The anomaly detector is a real model: it catches faults at a stated rate and is reproducible."""

from __future__ import annotations

import json

import numpy as np

from services.anomaly_detector import train
from services.anomaly_detector.data import FEATURES, simulate_anomalies, simulate_normal
from services.anomaly_detector.model import MODEL_FILE, AnomalyDetector

# Stated in the README: on fresh simulated data, at least this share of faults is flagged while
# at most this share of healthy readings is.
MIN_DETECTION_RATE = 0.80
MAX_FALSE_POSITIVE_RATE = 0.02


def _predict(model: AnomalyDetector, rows: np.ndarray) -> list:
    return [
        model.predict(
            model.input_model.model_validate({"features": dict(zip(FEATURES, row, strict=True))})
        )
        for row in rows
    ]


def test_catches_injected_faults_at_the_stated_rate(anomaly_model):
    rng = np.random.default_rng(99)
    faults = _predict(anomaly_model, simulate_anomalies(600, rng))
    healthy = _predict(anomaly_model, simulate_normal(3000, rng))
    detection = np.mean([p.label == "anomaly" for p in faults])
    false_positives = np.mean([p.label == "anomaly" for p in healthy])
    assert detection >= MIN_DETECTION_RATE
    assert false_positives <= MAX_FALSE_POSITIVE_RATE


def test_each_fault_kind_is_mostly_caught(anomaly_model):
    scores = anomaly_model.score(simulate_anomalies(900, np.random.default_rng(5)))
    flagged = scores > anomaly_model.params.threshold
    for kind in range(3):  # wear, cooling, decoupled power
        assert flagged[kind::3].mean() >= 0.7


def test_confidence_is_a_probability_and_highest_far_from_the_threshold(anomaly_model):
    rows = np.vstack(
        [
            simulate_normal(200, np.random.default_rng(1)),
            simulate_anomalies(200, np.random.default_rng(2)),
        ]
    )
    predictions = _predict(anomaly_model, rows)
    confidences = np.array([p.confidence for p in predictions])
    scores = np.array([p.extra["score"] for p in predictions])
    assert ((confidences >= 0.5) & (confidences <= 1)).all()
    margin = np.abs(scores - anomaly_model.params.threshold)
    assert confidences[margin > 2].mean() > confidences[margin < 0.5].mean()


def test_robust_fit_ignores_contamination():
    rng = np.random.default_rng(3)
    clean = simulate_normal(5000, rng)
    dirty = np.vstack([clean, simulate_anomalies(250, rng) + 5])
    clean_center, _ = train.robust_gaussian(clean)
    dirty_center, _ = train.robust_gaussian(dirty)
    naive_shift = np.abs(dirty.mean(axis=0) - clean.mean(axis=0))
    robust_shift = np.abs(dirty_center - clean_center)
    assert (robust_shift < naive_shift).all()


def test_training_reproduces_the_committed_artifact():
    params, baseline = train.train()
    committed = json.loads(MODEL_FILE.read_text())
    assert committed["version"] == params.version
    np.testing.assert_allclose(committed["center"], params.center, rtol=1e-9)
    np.testing.assert_allclose(committed["precision"], params.precision, rtol=1e-7)
    assert committed["threshold"] == params.threshold
    assert committed["training_sample"] == params.training_sample
    assert set(baseline.features) == {*FEATURES, "prediction"}
