"""The PSI recording rule computes exactly mlobs.drift.psi from the same counts (promtool)."""

from __future__ import annotations

import numpy as np
import pytest

from mlobs.drift import Baseline, psi_from_counts
from mlobs.spec import duration_seconds, load_spec
from tests.conftest import REPO
from tests.support.promtool import promtool_test, series

SPEC = load_spec(REPO / "observability.yaml")
WINDOW_MINUTES = int(duration_seconds(SPEC.alerts.drift.window) // 60)
EVAL_MINUTES = 2 * WINDOW_MINUTES
LABELS = {"model": "m", "feature": "f"}
SELECTOR = '{model="m",feature="f"}'


def _psi_case(
    baseline_props: list[float], labels: list[str], per_instance: list[list[int]]
) -> dict:
    """Counters that grow by `per_instance[i][bin]` a minute on instance i; PSI over the window
    must equal mlobs.drift PSI of the summed counts."""
    counts = np.sum(per_instance, axis=0) * WINDOW_MINUTES
    expected = psi_from_counts(np.asarray(baseline_props), counts)
    input_series = []
    for i, rates in enumerate(per_instance):
        for label, rate in zip(labels, rates, strict=True):
            input_series.append(
                series(
                    "model_feature_bin_total",
                    {**LABELS, "bin": label, "instance": f"i{i}"},
                    f"0+{rate}x{EVAL_MINUTES}",
                )
            )
            input_series.append(
                series(
                    "model_feature_baseline_ratio",
                    {**LABELS, "bin": label, "instance": f"i{i}"},
                    f"{baseline_props[labels.index(label)]!r}x{EVAL_MINUTES}",
                )
            )
    return {
        "interval": "1m",
        "input_series": input_series,
        "promql_expr_test": [
            {
                "expr": f"abs(model_feature:psi{SELECTOR} - {expected!r}) < bool 1e-6",
                "eval_time": f"{EVAL_MINUTES}m",
                "exp_samples": [{"labels": '{feature="f", model="m"}', "value": 1}],
            }
        ],
    }


def _baseline(seed: int = 0):
    feature = Baseline.fit({"f": np.random.default_rng(seed).normal(size=2000).tolist()}).features[
        "f"
    ]
    return list(feature.proportions), feature.bins.labels


def test_promql_psi_equals_python_psi_on_shifted_counts_over_two_instances(tmp_path):
    props, labels = _baseline()
    rng = np.random.default_rng(1)
    instances = [rng.integers(0, 20, len(labels)).tolist() for _ in range(2)]
    promtool_test(tmp_path, [_psi_case(props, labels, instances)])


def test_promql_psi_equals_python_psi_when_everything_is_out_of_range(tmp_path):
    props, labels = _baseline()
    rates = [0] * len(labels)
    rates[-2] = 7  # the open top bin: values above the training maximum
    promtool_test(tmp_path, [_psi_case(props, labels, [rates])])


def test_promql_psi_equals_python_psi_for_categories_with_unseen_and_missing(tmp_path):
    feature = Baseline.fit({"f": ["a"] * 70 + ["b"] * 30}).features["f"]
    rates = [[3, 1, 4, 2]]  # a, b, __other__, __missing__
    promtool_test(tmp_path, [_psi_case(list(feature.proportions), feature.bins.labels, rates)])


def test_no_psi_below_the_minimum_sample_count(tmp_path):
    props, labels = _baseline()
    per_minute = [0] * len(labels)
    per_minute[0] = 1  # WINDOW_MINUTES values in the window: below min_samples
    assert SPEC.alerts.drift.min_samples > WINDOW_MINUTES
    case = _psi_case(props, labels, [per_minute])
    case["promql_expr_test"] = [
        {"expr": "model_feature:psi", "eval_time": f"{EVAL_MINUTES}m", "exp_samples": []}
    ]
    promtool_test(tmp_path, [case])


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_promql_psi_matches_on_random_baselines(tmp_path, seed):
    props, labels = _baseline(seed)
    rng = np.random.default_rng(seed)
    instances = [rng.integers(0, 9, len(labels)).tolist() for _ in range(3)]
    promtool_test(tmp_path, [_psi_case(props, labels, instances)])
