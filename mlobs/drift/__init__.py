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

from mlobs.drift.baseline import Baseline
from mlobs.drift.bins import MISSING_BIN, OTHER_CATEGORY, CategoricalBins, NumericBins
from mlobs.drift.monitor import DriftExport, DriftMonitor
from mlobs.drift.statistics import (
    PROPORTION_FLOOR,
    js_from_counts,
    ks_from_counts,
    psi,
    psi_critical_value,
    psi_from_counts,
)

# What the project imports from the package; the rest is imported from the modules.
__all__ = [
    "MISSING_BIN",
    "OTHER_CATEGORY",
    "PROPORTION_FLOOR",
    "Baseline",
    "CategoricalBins",
    "DriftExport",
    "DriftMonitor",
    "NumericBins",
    "js_from_counts",
    "ks_from_counts",
    "psi",
    "psi_critical_value",
    "psi_from_counts",
]
