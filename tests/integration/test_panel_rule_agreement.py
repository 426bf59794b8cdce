"""Panels that draw an alert's quantity compute what the recording rule computes: with Grafana's
default variables and `$__rate_interval` at the rule's window, promtool evaluates both on the
inputs of the recording-rule tests (two replicas, every request outcome including `shed`) and
they agree. A panel that forgot shed requests, or read another bucket, would draw a line beside
an alert that does not match it."""

from __future__ import annotations

import promql_parser
import pytest

from mlobs.generate import expressions as x
from mlobs.generate.links import ERROR_RATIO_PANEL, LATENCY_PANEL, LOW_CONFIDENCE_PANEL
from mlobs.spec import load_spec
from tests.conftest import REPO
from tests.support.generated import generated_json, generated_yaml
from tests.support.grafana import (
    BUILTINS,
    PROMETHEUS,
    default_selections,
    interpolate,
    series_lookup,
)
from tests.support.promtool import promtool_test, series

SPEC = load_spec(REPO / "observability.yaml")
HEALTH = generated_json("grafana/dashboards/ml-model-health.json")
A = SPEC.alerts
# panel title -> (recorded series drawn by its queries, in order; the window the rule uses)
PANELS = {
    ERROR_RATIO_PANEL: ([x.SERVER_ERROR_RATIO], A.error_rate.window),
    LOW_CONFIDENCE_PANEL: ([x.LOW_CONFIDENCE_RATIO], A.low_confidence.window),
    LATENCY_PANEL: ([x.latency_quantile_name(q) for q in x.LATENCY_QUANTILES], A.latency.window),
}


def _traffic_case() -> dict:
    """The recording-rule test with request outcomes, latency and confidence."""
    tests = generated_yaml("prometheus/tests/recording.test.yml")["tests"]
    return next(
        t
        for t in tests
        if any("server_error_ratio" in c["expr"] for c in t.get("promql_expr_test", []))
    )


def _input_labels(case: dict) -> list[tuple[str, dict[str, str]]]:
    out = []
    for entry in case["input_series"]:
        selector = promql_parser.parse(entry["series"])
        out.append((selector.name, {m.name: m.value for m in selector.matchers.matchers}))
    return out


@pytest.mark.parametrize("title", PANELS)
def test_panel_computes_what_the_recording_rule_records(tmp_path, title):
    recorded, window = PANELS[title]
    case = _traffic_case()
    minute = case["promql_expr_test"][0]["eval_time"]
    info = series("model_info", {"model": "chatbot", "model_version": "1"}, "1x60")
    case = {**case, "input_series": [*case["input_series"], info]}
    selections = default_selections(HEALTH, series_lookup(_input_labels(case), {}))
    [panel] = [p for p in HEALTH["panels"] if p["title"] == title]
    targets = [t for t in panel["targets"] if t["datasource"]["type"] == PROMETHEUS]
    assert len(targets) == len(recorded)
    checks = []
    for target, record in zip(targets, recorded, strict=True):
        builtins = {**BUILTINS, "__rate_interval": window}
        query = interpolate(target["expr"], selections, PROMETHEUS, builtins)
        checks.append(
            {
                "expr": f"abs(({query}) - on (model) {record}) < bool 1e-9",
                "eval_time": minute,
                "exp_samples": [{"labels": '{model="chatbot"}', "value": 1}],
            }
        )
    case = {**case, "promql_expr_test": checks}
    promtool_test(tmp_path, [case])
