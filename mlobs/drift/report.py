"""The drift report (GET /drift): per feature, the statistics and the share of each bin, from the
bin counts of a window of live values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mlobs.drift.baseline import Baseline, FeatureBaseline
from mlobs.drift.statistics import (
    js_from_counts,
    ks_from_counts,
    psi_critical_value,
    psi_from_counts,
)


@dataclass(frozen=True)
class BinDrift:
    bin: str
    baseline: float
    current: float


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature over the report's window."""

    feature: str
    kind: str
    count: int
    missing: int
    out_of_range_share: float | None
    psi: float | None
    ks: float | None
    js: float | None
    critical_value: float | None
    significant: bool
    exceeds_threshold: bool  # PSI over the threshold on min_samples values or more (the alert)
    bins: list[BinDrift]


@dataclass(frozen=True)
class DriftReport:
    window_seconds: float
    psi_threshold: float
    min_samples: int  # below this many values PSI is noise: no feature exceeds the threshold
    features: list[FeatureDrift]


def feature_drift(
    feature: FeatureBaseline,
    counts: np.ndarray,
    outside: int,
    psi_threshold: float,
    min_samples: int,
) -> FeatureDrift:
    """Drift of one feature from its live bin counts and out-of-range (or unseen) count.

    It exceeds the threshold as the DataDrift alert sees it: PSI above `psi_threshold` on at
    least `min_samples` values (missing ones included, as Prometheus counts them).
    """
    total = int(counts.sum())
    expected = np.asarray(feature.proportions)
    current = counts / total if total else np.zeros_like(counts)
    bins = [
        BinDrift(label, float(e), float(c))
        for label, e, c in zip(feature.bins.labels, expected, current, strict=True)
    ]
    missing = int(counts[-1])
    if total == 0:
        return FeatureDrift(
            feature.name, feature.kind, 0, 0, None, None, None, None, None, False, False, bins
        )
    value = psi_from_counts(expected, counts)
    critical = psi_critical_value(feature.count, total, feature.bins.size)
    ks = ks_from_counts(expected, counts) if feature.kind == "numeric" else None
    present = total - missing
    return FeatureDrift(
        feature=feature.name,
        kind=feature.kind,
        count=total,
        missing=missing,
        out_of_range_share=outside / present if present else None,
        psi=value,
        ks=ks,
        js=js_from_counts(expected, counts),
        critical_value=critical,
        significant=value > critical,
        exceeds_threshold=value > psi_threshold and total >= min_samples,
        bins=bins,
    )


def drift_report(
    baseline: Baseline,
    counts: Mapping[str, np.ndarray],
    outside: Mapping[str, int],
    window_seconds: float,
    psi_threshold: float,
    min_samples: int,
) -> DriftReport:
    """The report of every baseline feature, from bin counts and out-of-range counts by feature."""
    features = [
        feature_drift(f, counts[name], outside[name], psi_threshold, min_samples)
        for name, f in baseline.features.items()
    ]
    return DriftReport(window_seconds, psi_threshold, min_samples, features)


def drift_json(model: str, model_version: str, report: DriftReport) -> dict[str, Any]:
    """The JSON of GET /drift (and of `python -m mlobs.drift report --json`): the model, its
    version and the report's fields."""
    return {"model": model, "model_version": model_version, **asdict(report)}
