"""Drift costs (`make bench`): the per-request monitor update, PSI over a million values, and
log_drift, the counting behind the offline report of an inference log.

Prints figures and writes benchmarks/results/drift.json; no pass/fail. Side-by-side comparisons
in one run: the update with and without mirroring into prometheus_client counters (the
multiprocess path), and PSI against the seed's np.histogram recipe, timed in alternating pairs
on the same data so that both see the same machine load; the ratio is taken per pair.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
from prometheus_client import CollectorRegistry

from mlobs.drift import DriftMonitor, psi
from mlobs.drift.offline import log_drift
from mlobs.metrics import ModelMetrics
from services.anomaly_detector.data import FEATURES, simulate_normal
from services.anomaly_detector.model import AnomalyDetector

RESULTS = Path(__file__).parent / "results" / "drift.json"


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def _best_of(repeats: int, work: Callable[[], object]) -> float:
    """Fastest of `repeats` timings in seconds (the least disturbed by other processes)."""
    return min(_timed(work) for _ in range(repeats))


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
    """The seed's PSI: it drops values outside the baseline range and has no missing bin."""
    edges = np.quantile(expected, np.linspace(0, 1, 11))
    e, _ = np.histogram(expected, edges)
    a, _ = np.histogram(actual, edges)
    pe, pa = np.maximum(e / e.sum(), 1e-4), np.maximum(a / a.sum(), 1e-4)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def psi_cost(n: int, pairs: int = 15) -> dict[str, float]:
    """Milliseconds for PSI of n vs n values next to the seed's histogram recipe: `pairs` pairs
    of runs on the same data, the order alternating; the ratio mlobs / recipe per pair."""
    rng = np.random.default_rng(1)
    expected, actual = rng.normal(size=n), rng.normal(0.1, 1.0, n)
    psi(expected, actual), _seed_recipe(expected, actual)  # warm-up: first-touch page faults
    mlobs_s, seed_s = [], []
    for i in range(pairs):
        if i % 2 == 0:
            mlobs_s.append(_timed(lambda: psi(expected, actual)))
            seed_s.append(_timed(lambda: _seed_recipe(expected, actual)))
        else:
            seed_s.append(_timed(lambda: _seed_recipe(expected, actual)))
            mlobs_s.append(_timed(lambda: psi(expected, actual)))
    ratios = sorted(m / s for m, s in zip(mlobs_s, seed_s, strict=True))
    return {
        "values": n,
        "pairs": pairs,
        "psi_ms_median": 1e3 * statistics.median(mlobs_s),
        "psi_ms_best": 1e3 * min(mlobs_s),
        "seed_recipe_ms_median": 1e3 * statistics.median(seed_s),
        "seed_recipe_ms_best": 1e3 * min(seed_s),
        "ratio_to_seed_recipe_median": statistics.median(ratios),
        "ratio_to_seed_recipe_min": ratios[0],
        "ratio_to_seed_recipe_max": ratios[-1],
    }


def log_drift_cost(lines: int = 100_000) -> dict[str, float]:
    """Seconds for log_drift, the work of `python -m mlobs.drift report` without the start-up and
    the output, on a log of `lines` predictions as the anomaly detector's server writes them
    (read, parsed, counted, reported)."""
    model = AnomalyDetector.load()
    rows = simulate_normal(lines, np.random.default_rng(2))
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "inference.log"
        with log.open("wb") as file:
            for row in rows:
                event = {
                    "timestamp": "2026-01-01T00:00:00.000000Z",
                    "level": "info",
                    "message": "inference",
                    "model": model.name,
                    "model_version": model.version,
                    "request_id": "0" * 32,
                    "input_hash": "0" * 16,
                    "prediction": "normal",
                    "confidence": 0.99,
                    "latency_ms": 1.234,
                    "status": "success",
                    "features": dict(zip(FEATURES, map(float, row), strict=True)),
                }
                file.write(orjson.dumps(event) + b"\n")
        assert model.baseline is not None
        seconds = _best_of(3, lambda: log_drift(model.baseline, [log]))
        size = log.stat().st_size
    return {
        "lines": lines,
        "megabytes": size / 1e6,
        "seconds": seconds,
        "lines_per_s": lines / seconds,
    }


def _psi_line(cost: dict[str, float]) -> str:
    n = f"{cost['values']:,}"
    ratio, low, high = (cost[f"ratio_to_seed_recipe_{k}"] for k in ("median", "min", "max"))
    return (
        f"PSI of {n} vs {n} values: {cost['psi_ms_median']:.1f} ms "
        f"(best {cost['psi_ms_best']:.1f}); seed np.histogram recipe "
        f"{cost['seed_recipe_ms_median']:.1f} ms (best {cost['seed_recipe_ms_best']:.1f}); "
        f"mlobs / recipe x{ratio:.2f} (range {low:.2f}-{high:.2f} over {cost['pairs']} pairs; "
        "goal <= 1.00, and < 100 ms)"
    )


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
    costs = [psi_cost(100_000), psi_cost(1_000_000)]
    for cost in costs:
        print(_psi_line(cost))
    offline = log_drift_cost()
    print(
        f"log_drift (the counting of python -m mlobs.drift report) of {offline['lines']:,} logged "
        f"predictions ({offline['megabytes']:.0f} MB): {offline['seconds']:.2f} s, "
        f"{offline['lines_per_s']:,.0f} lines/s"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"monitor_update": update, "psi": costs, "log_drift": offline}, indent=2) + "\n"
    )
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
