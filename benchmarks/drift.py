"""Drift costs: the per-request monitor update and PSI over a million values (`make bench`).

Prints figures and writes benchmarks/results/drift.json; no pass/fail. Side-by-side comparisons
in one run: the update with and without mirroring into prometheus_client counters (the
multiprocess path), and PSI against the seed's np.histogram recipe.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from mlobs.drift import DriftMonitor, psi
from mlobs.metrics import ModelMetrics
from services.anomaly_detector.data import FEATURES, simulate_normal
from services.anomaly_detector.model import AnomalyDetector

RESULTS = Path(__file__).parent / "results" / "drift.json"


def _best_of(repeats: int, work: Callable[[], object]) -> float:
    """Fastest of `repeats` timings in seconds (the least disturbed by other processes)."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        timings.append(time.perf_counter() - start)
    return min(timings)


def update_cost(requests: int = 50_000) -> dict[str, float]:
    """Nanoseconds per feature value of DriftMonitor.observe, without and with live export."""
    model = AnomalyDetector.load()
    rows = simulate_normal(requests, np.random.default_rng(0))
    values = [
        {**dict(zip(FEATURES, map(float, r), strict=True)), "prediction": "normal"} for r in rows
    ]
    n_values = requests * len(model.baseline.features)
    plain = DriftMonitor(model.baseline)
    live = DriftMonitor(model.baseline)
    metrics = ModelMetrics(CollectorRegistry(), model.name, model.version, model.labels)
    live.export = metrics.live_drift_counters(model.baseline)

    def run(monitor: DriftMonitor) -> Callable[[], None]:
        def observe_all() -> None:
            for v in values:
                monitor.observe(v)
            monitor.flush()  # the values still queued are part of the cost

        return observe_all

    return {
        "features": len(model.baseline.features),
        "ns_per_value": 1e9 * _best_of(3, run(plain)) / n_values,
        "ns_per_value_with_multiprocess_export": 1e9 * _best_of(3, run(live)) / n_values,
    }


def _seed_recipe(expected: np.ndarray, actual: np.ndarray) -> float:
    edges = np.quantile(expected, np.linspace(0, 1, 11))
    e, _ = np.histogram(expected, edges)
    a, _ = np.histogram(actual, edges)
    pe, pa = np.maximum(e / e.sum(), 1e-4), np.maximum(a / a.sum(), 1e-4)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def psi_cost(n: int = 1_000_000) -> dict[str, float]:
    """Milliseconds for PSI of n vs n values, next to the seed's histogram recipe."""
    rng = np.random.default_rng(1)
    expected, actual = rng.normal(size=n), rng.normal(0.1, 1.0, n)
    mlobs_s = _best_of(5, lambda: psi(expected, actual))
    seed_s = _best_of(5, lambda: _seed_recipe(expected, actual))
    return {
        "values": n,
        "psi_ms": 1e3 * mlobs_s,
        "seed_recipe_ms": 1e3 * seed_s,
        "ratio_to_seed_recipe": mlobs_s / seed_s,
    }


def main() -> None:
    update = update_cost()
    print(f"DriftMonitor.observe ({update['features']} features per request):")
    print(
        f"  {update['ns_per_value']:8.0f} ns per feature value (single process: exported at scrape)"
    )
    print(
        f"  {update['ns_per_value_with_multiprocess_export']:8.0f} ns per feature value "
        "(several workers: mirrored into prometheus_client counters)"
    )
    cost = psi_cost()
    print(
        f"PSI of 1,000,000 vs 1,000,000 values: {cost['psi_ms']:.1f} ms "
        f"(goal < 100 ms); seed np.histogram recipe {cost['seed_recipe_ms']:.1f} ms "
        f"(x{cost['ratio_to_seed_recipe']:.2f})"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"monitor_update": update, "psi": cost}, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
