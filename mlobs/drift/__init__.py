"""Drift against the training baseline: bins, PSI/KS/JS, critical values and a streaming monitor.

- `bins`: quantile bins with open outer edges (numbers) or a vocabulary (categories), each with a
  bin for missing values;
- `baseline`: the per-feature bins and proportions fitted on training data (`baseline.json`);
- `statistics`: PSI, KS, Jensen-Shannon and the critical value of PSI, on binned counts;
- `report`: the per-feature drift report (GET /drift);
- `monitor`: the streaming monitor a server feeds with every request;
- `offline`: the same report from an inference log file (`log_drift`);
- `files`, `cli`: the command `python -m mlobs.drift fit|report` on users' files.
"""

from mlobs.drift.baseline import BASELINE_FORMAT, PREDICTION_FEATURE, Baseline, FeatureBaseline
from mlobs.drift.bins import (
    MAX_CATEGORIES,
    MISSING_BIN,
    MISSING_CATEGORY,
    OTHER_CATEGORY,
    Bins,
    CategoricalBins,
    NumericBins,
    Value,
)
from mlobs.drift.monitor import DriftExport, DriftMonitor, Incrementable
from mlobs.drift.report import BinDrift, DriftReport, FeatureDrift
from mlobs.drift.statistics import (
    PROPORTION_FLOOR,
    js_from_counts,
    ks_from_counts,
    psi,
    psi_critical_value,
    psi_from_counts,
)

__all__ = [
    "BASELINE_FORMAT",
    "MAX_CATEGORIES",
    "MISSING_BIN",
    "MISSING_CATEGORY",
    "OTHER_CATEGORY",
    "PREDICTION_FEATURE",
    "PROPORTION_FLOOR",
    "Baseline",
    "BinDrift",
    "Bins",
    "CategoricalBins",
    "DriftExport",
    "DriftMonitor",
    "DriftReport",
    "FeatureBaseline",
    "FeatureDrift",
    "Incrementable",
    "NumericBins",
    "Value",
    "js_from_counts",
    "ks_from_counts",
    "psi",
    "psi_critical_value",
    "psi_from_counts",
]
