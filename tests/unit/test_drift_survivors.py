"""mlobs.drift: what a user of the monitor, its report and the statistics would notice at the edges:
windows that have rolled, an empty window, PSI exactly at the critical value, count dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from mlobs.drift import Baseline, DriftMonitor, NumericBins, js_from_counts, ks_from_counts
from mlobs.drift import report as report_module
from mlobs.drift.report import drift_json


def _baseline() -> Baseline:
    return Baseline.fit({"x": [1.0, 2.0, 3.0, 4.0], "color": ["red", "red", "blue", "blue"]})


def test_out_of_range_share_covers_only_the_reported_window_after_it_rolls():
    """A value out of range in a window that has aged out no longer counts in the report."""
    now = [0.0]
    monitor = DriftMonitor(_baseline(), window_seconds=60, clock=lambda: now[0])
    monitor.observe({"x": 99.0, "color": "green"})  # out of range / unseen
    now[0] = 70.0
    monitor.observe({"x": 2.0, "color": "red"})
    now[0] = 140.0  # the first window has aged out: one in-range request is left
    by_name = {f.feature: f for f in monitor.report().features}
    assert (by_name["x"].count, by_name["x"].out_of_range_share) == (1, 0.0)
    assert (by_name["color"].count, by_name["color"].out_of_range_share) == (1, 0.0)
    now[0] = 150.0
    monitor.observe({"x": -5.0, "color": "blue"})  # out of range, in the current window
    by_name = {f.feature: f for f in monitor.report().features}
    assert (by_name["x"].count, by_name["x"].out_of_range_share) == (2, 0.5)
    assert (by_name["color"].count, by_name["color"].out_of_range_share) == (2, 0.0)


def test_the_report_and_its_json_state_the_monitors_window():
    """/drift says over how many seconds its counts were taken."""
    monitor = DriftMonitor(_baseline(), window_seconds=900.0, psi_threshold=0.3)
    monitor.observe({"x": 2.0, "color": "red"})
    report = monitor.report()
    assert (report.window_seconds, report.psi_threshold) == (900.0, 0.3)
    assert drift_json("m", "1", report)["window_seconds"] == 900.0


def test_an_empty_window_still_lists_every_feature_with_its_bins_and_zero_shares():
    """Before any traffic, /drift names each feature and its kind, and every bin's baseline share
    next to a current share of 0 (not NaN, which is not even JSON)."""
    baseline = _baseline()
    features = DriftMonitor(baseline).report().features
    assert [(f.feature, f.kind, f.count) for f in features] == [
        ("x", "numeric", 0),
        ("color", "categorical", 0),
    ]
    for feature in features:
        fitted = baseline.features[feature.feature]
        assert [b.bin for b in feature.bins] == fitted.bins.labels
        assert [b.baseline for b in feature.bins] == list(fitted.proportions)
        assert [b.current for b in feature.bins] == [0.0] * fitted.bins.size
        assert feature.psi is None and not feature.significant


def test_psi_exactly_at_the_critical_value_is_not_significant(monkeypatch):
    """Significant means above the critical value (psi_critical_value: "PSI above which drift is
    significant"), as exceeding the threshold means above it."""
    monitor = DriftMonitor(Baseline.fit({"x": np.linspace(0.0, 1.0, 500).tolist()}))
    for v in np.random.default_rng(4).normal(0.8, 0.3, 300):
        monitor.observe({"x": float(v)})
    [shifted] = monitor.report().features
    assert shifted.psi is not None and shifted.significant  # clearly above the usual critical value

    monkeypatch.setattr(report_module, "psi_critical_value", lambda *_: shifted.psi)
    [at_critical] = monitor.report().features
    assert at_critical.critical_value == at_critical.psi == shifted.psi
    assert not at_critical.significant
    monkeypatch.setattr(report_module, "psi_critical_value", lambda *_: shifted.psi * (1 - 1e-12))
    [just_above] = monitor.report().features
    assert just_above.significant

    monitor.psi_threshold = shifted.psi
    [at_threshold] = monitor.report().features
    assert not at_threshold.exceeds_threshold


EXPECTED = [3, 7, 11, 5, 13, 1]
ACTUAL = [9, 2, 6, 17, 4, 3]


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint16, np.float32])
def test_ks_and_js_of_counts_do_not_depend_on_the_counts_dtype(dtype: type) -> None:
    """The same counts give the same KS and JS whether they come as integers (np.bincount) or as
    float32 (e.g. torch.histc): computed in double precision either way."""
    e64, a64 = np.array(EXPECTED, float), np.array(ACTUAL, float)
    e, a = np.array(EXPECTED, dtype), np.array(ACTUAL, dtype)
    assert ks_from_counts(e, a) == ks_from_counts(e64, a64)
    assert ks_from_counts(e, a64) == ks_from_counts(e64, a64)
    assert ks_from_counts(e64, a) == ks_from_counts(e64, a64)
    assert js_from_counts(e, a) == js_from_counts(e64, a64)
    assert js_from_counts(e, a64) == js_from_counts(e64, a64)
    assert js_from_counts(e64, a) == js_from_counts(e64, a64)


def test_bins_built_by_hand_with_a_missing_edge_are_refused_clearly():
    """A None among the edges is a ValueError naming the rule, not a TypeError from numpy."""
    with pytest.raises(ValueError, match=r"bin edges must be finite and increasing: \[1.0, None\]"):
        NumericBins(edges=(1.0, None), low=0.0, high=2.0)
    # Two equal edges would make a bin no value can fall into (a hand-edited baseline.json).
    with pytest.raises(ValueError, match=r"finite and increasing: \[1.0, 1.0\]"):
        NumericBins(edges=(1.0, 1.0), low=0.0, high=2.0)
