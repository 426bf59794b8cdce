"""mlobs.drift: the PSI definition, out-of-range and missing values, the streaming monitor."""

from __future__ import annotations

import json
import math
import threading
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlobs.drift import (
    MISSING_BIN,
    OTHER_CATEGORY,
    Baseline,
    CategoricalBins,
    DriftMonitor,
    NumericBins,
    js_from_counts,
    ks_from_counts,
    psi,
    psi_critical_value,
    psi_from_counts,
)
from mlobs.drift import bins as bins_module
from mlobs.drift.bins import _counts_by_comparison, _counts_by_search
from tests.support.drift_export import exported_monitor


def _normal(n: int, seed: int, mean: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, 1.0, n)


def _seed_recipe_psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """The seed's recipe: np.histogram over the baseline range, which drops everything outside."""
    edges = np.quantile(expected, np.linspace(0, 1, 11))
    e, _ = np.histogram(expected, edges)
    a, _ = np.histogram(actual, edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        pe, pa = e / e.sum(), a / a.sum()
        return float(np.sum((pa - pe) * np.log(pa / pe)))


def test_matches_the_definition_on_hand_computed_proportions():
    expected, actual = np.array([50, 30, 20, 0]), np.array([20, 30, 49, 1])
    pe = np.maximum(expected / 100, 1e-4)
    pa = np.maximum(actual / 100, 1e-4)
    assert psi_from_counts(expected, actual) == pytest.approx(np.sum((pa - pe) * np.log(pa / pe)))


def test_identical_distributions_stay_below_0_02():
    assert psi(_normal(10_000, 1), _normal(10_000, 2)) < 0.02


def test_half_standard_deviation_shift_lands_near_the_textbook_value():
    # For N(0,1) vs N(0.5,1) the continuous PSI (Jeffreys divergence) is 0.5^2 = 0.25;
    # ten quantile bins lose a little of it.
    value = psi(_normal(200_000, 1), _normal(200_000, 2, mean=0.5))
    assert 0.21 < value < 0.26


def test_all_out_of_range_input_gives_a_large_finite_psi():
    expected = _normal(10_000, 1)
    actual = expected.max() + 1 + np.abs(_normal(1_000, 2))
    value = psi(expected, actual)
    assert math.isfinite(value) and value > 5
    # The seed recipe drops every value and answers NaN: exactly the drift that matters, unseen.
    assert math.isnan(_seed_recipe_psi(expected, actual))


def test_partly_out_of_range_input_is_not_undercounted():
    expected = _normal(10_000, 1)
    actual = np.concatenate([_normal(5_000, 2), expected.max() + 1 + np.abs(_normal(5_000, 3))])
    assert psi(expected, actual) > 2 * _seed_recipe_psi(expected, actual)


def test_missing_values_are_counted_not_dropped():
    expected = _normal(10_000, 1)
    actual = _normal(10_000, 2)
    actual[:3_000] = np.nan
    assert psi(expected, actual) > 1.0
    bins = NumericBins.fit(expected, 10)
    assert bins.counts([1.0, None, float("nan"), 2.0])[-1] == 2
    assert bins.labels[-1] == MISSING_BIN


def test_empty_or_non_finite_input_raises_a_clear_error():
    with pytest.raises(ValueError, match="actual is empty"):
        psi(_normal(100, 1), [])
    with pytest.raises(ValueError, match="expected has no finite value"):
        psi([float("nan"), float("inf")], _normal(100, 1))
    with pytest.raises(ValueError, match="actual has no finite value"):
        psi(_normal(100, 1), [None, float("nan")])
    with pytest.raises(ValueError, match=r"^bins=1: need at least 2 bins$"):
        psi(_normal(100, 1), _normal(100, 2), bins=1)


def test_bins_are_right_closed_with_open_outer_edges():
    bins = NumericBins(edges=(0.0, 1.0), low=-5.0, high=5.0)
    assert [bins.index(v) for v in (-math.inf, -1e9, 0.0, 0.5, 1.0, 1.5, math.inf)] == [
        0,
        0,
        0,
        1,
        1,
        2,
        2,
    ]
    assert bins.labels == ["00:(-inf,0]", "01:(0,1]", "02:(1,inf)", MISSING_BIN]
    values = [-math.inf, -1e9, 0.0, 0.5, 1.0, 1.5, math.inf, None]
    assert bins.counts(values).tolist() == [3, 2, 2, 1]


def test_duplicate_quantiles_are_merged():
    bins = NumericBins.fit(np.array([0.0] * 900 + list(range(1, 101))), 10)
    assert list(bins.edges) == sorted(set(bins.edges))
    assert bins.edges[0] == 0.0
    # A point mass gets its own bin (right-closed), so a shift away from it is visible.
    assert bins.index(0.0) == 0 and bins.index(0.001) == 1


def test_unseen_categories_and_missing_are_counted():
    baseline = Baseline.fit({"color": ["red"] * 60 + ["blue"] * 40})
    feature = baseline.features["color"]
    assert feature.bins.labels == ["red", "blue", OTHER_CATEGORY, "__missing__"]
    counts = feature.bins.counts(["red", "green", "purple", None])
    assert counts.tolist() == [1, 0, 2, 1]


def test_categorical_vocabulary_is_capped_at_the_most_frequent():
    values = [f"c{i}" for i in range(30) for _ in range(30 - i)]
    bins = CategoricalBins.fit(values)
    assert bins.categories == tuple(f"c{i}" for i in range(20))
    assert bins.index("c25") == 20


def test_categories_equally_frequent_are_ranked_by_name_not_by_first_appearance():
    # Fitting is reproducible whatever the order of the training rows.
    assert CategoricalBins.fit(["b", "c", "a", "c"]).categories == ("c", "a", "b")
    assert CategoricalBins.fit(["b", "a", "c"], max_categories=2).categories == ("a", "b")


def test_baseline_round_trips_through_json(tmp_path):
    baseline = Baseline.fit({"x": _normal(1000, 1).tolist(), "label": ["a", "b", "a", "c"] * 250})
    path = tmp_path / "baseline.json"
    baseline.save(path)
    assert Baseline.load(path) == baseline


def test_loading_a_wrong_file_fails_clearly(tmp_path):
    path = tmp_path / "baseline.json"
    path.write_text('{"features": []}')
    with pytest.raises(ValueError, match="not a baseline"):
        Baseline.load(path)


def test_monitor_counts_match_a_batch_recomputation():
    baseline = Baseline.fit({"x": _normal(2000, 1).tolist(), "kind": ["a", "b"] * 1000})
    monitor = DriftMonitor(baseline)
    rng = np.random.default_rng(7)
    xs = [None if rng.random() < 0.05 else float(v) for v in rng.normal(0.3, 1.5, 5000)]
    kinds = rng.choice(["a", "b", "z"], 5000).tolist()
    for x, kind in zip(xs, kinds, strict=True):
        monitor.observe({"x": x, "kind": kind})
    counts = monitor.counts()
    np.testing.assert_array_equal(counts["x"], baseline.features["x"].bins.counts(xs))
    np.testing.assert_array_equal(counts["kind"], baseline.features["kind"].bins.counts(kinds))


def test_monitor_counts_out_of_range_values_exactly():
    train = _normal(2000, 1)
    baseline = Baseline.fit({"x": train.tolist(), "kind": ["a", "b"] * 1000})
    monitor = DriftMonitor(baseline)
    xs = [float(train.min()), float(train.max()), -math.inf, math.inf, None, math.nan, "text"]
    xs += np.random.default_rng(3).normal(0.0, 3.0, 2000).tolist()
    kinds = ["a", "z", None, 7] * (len(xs) // 4) + ["a"] * (len(xs) % 4)
    for x, kind in zip(xs, kinds, strict=True):
        monitor.observe({"x": x, "kind": kind})
    counts, outside = monitor.totals()
    numbers = [x for x in xs if isinstance(x, float) and not math.isnan(x)]
    assert outside["x"] == sum(x < train.min() or x > train.max() for x in numbers)
    assert outside["kind"] == sum(k in ("z", 7) for k in kinds)
    missing = len(xs) - len(numbers)  # None, NaN and a string where a number belongs
    assert counts["x"][-1] == missing
    np.testing.assert_array_equal(
        counts["x"][:-1], baseline.features["x"].bins.counts(numbers)[:-1]
    )
    assert sum(counts["kind"]) == len(kinds)


def test_monitor_counts_an_absent_feature_as_missing():
    baseline = Baseline.fit({"x": [1.0, 2.0, 3.0]})
    monitor = DriftMonitor(baseline)
    monitor.observe({})
    assert monitor.counts()["x"][-1] == 1


def test_the_predicted_label_is_counted_as_feature_prediction():
    baseline = Baseline.fit({"x": [1.0, 2.0, 3.0], "prediction": ["yes", "no", "no"]})
    monitor = DriftMonitor(baseline)
    monitor.observe({"x": 1.0}, "yes")
    monitor.observe({"x": 2.0, "prediction": "no"})  # without the argument: from the values
    monitor.observe({"x": 3.0}, "maybe")
    monitor.observe({"x": 3.0})  # neither: missing
    labels = baseline.features["prediction"].bins.labels
    counts = dict(zip(labels, monitor.counts()["prediction"], strict=True))
    assert counts == {"no": 1, "yes": 1, "__other__": 1, "__missing__": 1}


def test_concurrent_updates_are_not_lost():
    baseline = Baseline.fit({"x": _normal(1000, 1).tolist(), "y": _normal(1000, 2).tolist()})
    monitor = DriftMonitor(baseline)

    def work() -> None:
        for v in np.random.default_rng().normal(size=5_000):
            monitor.observe({"x": float(v), "y": float(v)})

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert monitor.counts()["x"].sum() == monitor.counts()["y"].sum() == 40_000


def test_report_flags_drift_above_the_threshold_and_significance():
    baseline = Baseline.fit({"x": _normal(5000, 1).tolist()})
    monitor = DriftMonitor(baseline, psi_threshold=0.2)
    for v in _normal(2000, 2, mean=1.0):
        monitor.observe({"x": float(v)})
    [feature] = monitor.report().features
    assert feature.count == 2000 and feature.missing == 0
    assert feature.psi > 0.2 and feature.exceeds_threshold and feature.significant
    assert feature.psi > feature.critical_value
    assert 0 < feature.out_of_range_share < 0.2
    assert feature.ks is not None and 0.3 < feature.ks < 0.45  # exact KS for a 1 sd shift: 0.38
    assert sum(b.current for b in feature.bins) == pytest.approx(1.0)


def test_report_of_an_empty_window_has_no_statistics():
    monitor = DriftMonitor(Baseline.fit({"x": [1.0, 2.0, 3.0]}))
    [feature] = monitor.report().features
    assert feature.count == 0 and feature.psi is None and not feature.exceeds_threshold


def test_windows_roll_over():
    now = [0.0]
    monitor = DriftMonitor(
        Baseline.fit({"x": [1.0, 2.0, 3.0]}), window_seconds=60, clock=lambda: now[0]
    )
    monitor.observe({"x": 1.0})
    now[0] = 70.0  # previous window still reported
    monitor.observe({"x": 2.0})
    assert monitor.counts()["x"].sum() == 2
    now[0] = 140.0  # the first window has aged out
    assert monitor.counts()["x"].sum() == 1
    now[0] = 1000.0  # long idle: nothing recent
    assert monitor.counts()["x"].sum() == 0


def test_critical_value_gives_about_the_stated_false_alarm_rate():
    baseline_sample = _normal(2000, 0)
    bins = NumericBins.fit(baseline_sample, 10)
    expected = bins.counts(baseline_sample)
    critical = psi_critical_value(2000, 1000, bins.size - 1)  # the empty missing bin adds nothing
    rng = np.random.default_rng(11)
    alarms = [
        psi_from_counts(expected, bins.counts(rng.normal(size=1000))) > critical for _ in range(400)
    ]
    assert 0.01 <= np.mean(alarms) <= 0.10  # 5 % nominal
    assert psi_critical_value(2000, 100_000, 10) < psi_critical_value(2000, 1000, 10)


def test_ks_and_js_on_bins():
    e = np.array([10, 20, 30, 40, 0])
    assert ks_from_counts(e, e) == 0 and js_from_counts(e, e) == 0
    assert js_from_counts(np.array([1, 0, 0]), np.array([0, 1, 0])) == pytest.approx(1.0)
    # the last bin (missing values) is not part of the ordered CDF
    assert ks_from_counts(np.array([1, 0, 0, 5]), np.array([0, 0, 1, 0])) == pytest.approx(1.0)


def test_live_export_lags_by_at_most_the_batch_or_the_delay():
    live = exported_monitor()
    monitor = live.monitor
    monitor.observe({"x": 1.0})
    monitor.observe({"x": 9.0})
    assert live.exported() == 0  # queued
    monitor.observe({"x": None})
    assert live.exported() == 3  # a full batch
    assert live.outside.value == 1 and live.bins[-1].value == 1  # 9.0 is out of range; missing
    monitor.observe({"x": 2.0})
    live.now[0] = 1.0
    monitor.observe({"x": 2.0})
    assert live.exported() == 5  # the oldest waited max_delay_seconds
    monitor.observe({"x": 3.0})
    monitor.flush()
    assert live.exported() == 6


# --- the binning paths against a plain reference ------------------------------------------------


def _reference_counts(edges: list[float], values: list[float]) -> list[int]:
    """Right-closed bins (-inf, e0], (e0, e1], ..., (e_last, inf), then missing (NaN)."""
    counts = [0] * (len(edges) + 2)
    for v in values:
        counts[-1 if math.isnan(v) else sum(e < v for e in edges)] += 1
    return counts


def _reference_fit(values: list[float], bins: int) -> tuple[tuple[float, ...], list[int]]:
    finite = np.array([v for v in values if math.isfinite(v)])
    edges = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    return tuple(float(e) for e in edges), _reference_counts(edges.tolist(), values)


_edges = st.lists(
    st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=30, unique=True
).map(sorted)
_special = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0])


@given(st.data(), _edges)
def test_both_counting_paths_equal_the_reference(data, edges):
    # Values on the edges too: the right-closed boundary is where an off-by-one would show.
    values = data.draw(st.lists(st.one_of(st.sampled_from(edges), st.floats(), _special)))
    array, edge_array = np.array(values, dtype=float), np.array(edges)
    expected = _reference_counts(edges, values)
    assert _counts_by_search(edge_array, array).tolist() == expected
    assert _counts_by_comparison(edge_array, array).tolist() == expected


@settings(max_examples=200)
@given(
    st.lists(
        st.one_of(st.floats(-1e12, 1e12), st.integers(-3, 3).map(float), _special), min_size=1
    ).filter(lambda vs: any(math.isfinite(v) for v in vs)),
    st.integers(2, 20),
)
def test_fitting_from_one_sort_equals_np_quantile_and_the_reference_counts(values, bins):
    fitted, counts = NumericBins.fit_counts(np.array(values), bins)
    edges, expected = _reference_fit(values, bins)
    assert fitted.edges == edges
    assert counts.tolist() == expected
    finite = [v for v in values if math.isfinite(v)]
    assert (fitted.low, fitted.high) == (min(finite), max(finite))


@settings(max_examples=50)
@given(
    st.lists(st.one_of(st.floats(-1e6, 1e6), _special), min_size=1).filter(
        lambda vs: any(math.isfinite(v) for v in vs)
    ),
    st.lists(st.one_of(st.floats(-1e6, 1e6), _special), min_size=1).filter(
        lambda vs: any(math.isfinite(v) for v in vs)
    ),
)
def test_psi_equals_the_reference_computation(expected, actual):
    edges, expected_counts = _reference_fit(expected, 10)
    reference = psi_from_counts(
        np.array(expected_counts), np.array(_reference_counts(list(edges), actual))
    )
    assert psi(expected, actual) == reference


def test_counts_take_the_comparison_path_for_batches_large_for_their_edges(monkeypatch):
    compared: list[tuple[int, int]] = []  # (edges, values) of each count by comparison

    def comparison(edges: np.ndarray, array: np.ndarray) -> np.ndarray:
        compared.append((edges.size, array.size))
        return _counts_by_comparison(edges, array)

    monkeypatch.setattr(bins_module, "_counts_by_comparison", comparison)
    rng = np.random.default_rng(4)
    values = rng.normal(size=20_000)
    values[rng.integers(0, 20_000, 500)] = np.nan
    values[:3] = [math.inf, -math.inf, 0.5]
    bins = NumericBins(edges=(-1.0, 0.0, 0.5, 1.0), low=-3.0, high=3.0)
    in_small_batches = sum(bins.counts(batch) for batch in np.array_split(values, 200))
    assert compared == []  # batches of 100: a binary search per value
    assert bins.counts(values).tolist() == in_small_batches.tolist()
    assert compared == [(4, 20_000)]
    assert bins.counts(values).tolist() == _reference_counts(list(bins.edges), values.tolist())
    # Many edges need more values: each adds a pass.
    many = NumericBins(edges=tuple(np.linspace(-2, 2, 127)), low=-3.0, high=3.0)
    many.counts(values[:4096])
    many.counts(values[:6000])
    assert compared[2:] == [(127, 6000)]


def test_a_baseline_with_edges_out_of_order_is_refused(tmp_path):
    data = Baseline.fit({"x": _normal(1000, 1).tolist()}).to_dict()
    data["features"][0]["edges"][2:4] = reversed(data["features"][0]["edges"][2:4])
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(data))
    with pytest.raises(
        ValueError, match="feature entry 0: bin edges must be finite and increasing"
    ):
        Baseline.load(path)


def test_columns_named_categorical_are_categories_even_when_numbers():
    baseline = Baseline.fit({"grade": [1, 2, 2, 3], "x": [1, 2, 2, 3]}, categorical=["grade"])
    assert baseline.features["grade"].bins.labels == ["2", "1", "3", OTHER_CATEGORY, "__missing__"]
    assert baseline.features["x"].kind == "numeric"


def test_numbers_too_far_apart_to_bin_are_refused_naming_the_feature():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warning: a stray line on stderr
        with pytest.raises(
            ValueError, match=r"baseline feature 'x': values span more than 1\.8e308"
        ):
            Baseline.fit({"x": [-1.7e308, 1.7e308]})
