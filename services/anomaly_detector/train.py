"""Train the anomaly detector and write its artifacts (`python -m services.anomaly_detector.train`).

Deterministic from SEED: running it again rewrites the committed artifacts with the same numbers.
1. Fit a robust centre and covariance on training data that, like real plant data, holds a few
   faults (concentration steps of a minimum-covariance-determinant estimator).
2. Set the distance threshold on held-out healthy data to the target false-positive rate.
3. Fit the logistic slope that turns distance into P(anomaly) on held-out healthy and faulty data.
4. Write the model (with a training sample) and the drift baseline fitted on that sample.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mlobs.drift import Baseline
from services.anomaly_detector.data import FEATURES, simulate_anomalies, simulate_normal
from services.anomaly_detector.model import (
    ARTIFACTS,
    LABELS,
    AnomalyDetector,
    DetectorParams,
    mahalanobis,
)

VERSION = "1.0.0"
SEED = 20261129
TRAIN_SIZE = 20_000
CONTAMINATION = 0.02  # share of faulty readings in the training data
HOLDOUT_SIZE = 10_000
TARGET_FALSE_POSITIVE_RATE = 0.01
SUPPORT_FRACTION = 0.75  # share of the training data the robust fit keeps
SAMPLE_SIZE = 2_000  # training rows shipped with the model for the drift baseline


def robust_gaussian(x: np.ndarray, support: float = SUPPORT_FRACTION, steps: int = 50):
    """Centre and covariance of the `support` share of rows closest to their own centre."""
    keep = int(len(x) * support)
    subset = np.argsort(np.abs(x - np.median(x, axis=0)).sum(axis=1))[:keep]
    for _ in range(steps):
        center, cov = x[subset].mean(axis=0), np.cov(x[subset], rowvar=False)
        nearest = np.sort(np.argsort(mahalanobis(x, center, np.linalg.inv(cov)))[:keep])
        if np.array_equal(nearest, subset):
            break
        subset = nearest
    return center, cov


def fit_steepness(normal: np.ndarray, anomalous: np.ndarray, threshold: float) -> float:
    """Slope s of P(anomaly) = 1 / (1 + exp(-s (d - threshold))) by maximum likelihood (Newton)."""
    d = np.concatenate([normal, anomalous]) - threshold
    y = np.concatenate([np.zeros(len(normal)), np.ones(len(anomalous))])
    s = 1.0
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-s * d))
        gradient = np.sum((p - y) * d)
        hessian = np.sum(p * (1 - p) * d * d) + 1e-9
        step = gradient / hessian
        s = max(s - step, 1e-3)
        if abs(step) < 1e-10:
            break
    return s


def train(seed: int = SEED) -> tuple[DetectorParams, Baseline]:
    """Train on simulated data; return the model parameters and the drift baseline."""
    rng = np.random.default_rng(seed)
    n_faulty = int(TRAIN_SIZE * CONTAMINATION)
    training = np.vstack(
        [simulate_normal(TRAIN_SIZE - n_faulty, rng), simulate_anomalies(n_faulty, rng)]
    )
    rng.shuffle(training)
    center, cov = robust_gaussian(training)
    precision = np.linalg.inv(cov)

    healthy = mahalanobis(simulate_normal(HOLDOUT_SIZE, rng), center, precision)
    faulty = mahalanobis(simulate_anomalies(HOLDOUT_SIZE // 10, rng), center, precision)
    threshold = float(np.quantile(healthy, 1 - TARGET_FALSE_POSITIVE_RATE))
    steepness = fit_steepness(healthy, faulty, threshold)

    sample = np.round(training[:SAMPLE_SIZE], 3)
    params = DetectorParams(
        version=VERSION,
        features=FEATURES,
        center=tuple(float(c) for c in center),
        precision=tuple(tuple(float(v) for v in row) for row in precision),
        threshold=round(threshold, 6),
        steepness=round(steepness, 6),
        example={
            f: round(float(v), 2) for f, v in zip(FEATURES, np.median(sample, axis=0), strict=True)
        },
        training_sample={f: sample[:, i].tolist() for i, f in enumerate(FEATURES)},
    )
    distances = mahalanobis(sample, center, precision)
    predicted = np.where(distances > params.threshold, LABELS[1], LABELS[0]).tolist()
    baseline = Baseline.fit({**params.training_sample, "prediction": predicted})
    return params, baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ARTIFACTS, help="artifact folder")
    args = parser.parse_args()
    params, baseline = train()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model.json").write_text(params.to_json())
    baseline.save(args.out / "baseline.json")
    detector = AnomalyDetector(params, baseline)
    rng = np.random.default_rng(1)
    caught = np.mean(detector.score(simulate_anomalies(3000, rng)) > params.threshold)
    false_alarms = np.mean(detector.score(simulate_normal(30000, rng)) > params.threshold)
    print(
        f"anomaly-detector {VERSION}: threshold {params.threshold:.3f}, "
        f"detection rate {caught:.1%}, false-positive rate {false_alarms:.2%} -> {args.out}"
    )


if __name__ == "__main__":
    main()
