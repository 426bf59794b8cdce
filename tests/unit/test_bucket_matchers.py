"""`le` matchers equal the bucket labels prometheus_client writes: `le="1"` selects nothing when
the servers expose `le="1.0"` (Prometheus 3 normalises to that too). Checked for every matcher of
the rules, the Grafana alert rules and the dashboards, and for the promtool tests' inputs, against
the /metrics of real model servers."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import promql_parser
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mlobs.generate.expressions import bucket_label
from mlobs.metrics import CONFIDENCE_BUCKETS, LATENCY_BUCKETS
from tests.conftest import Exposed
from tests.support.generated import generated_yaml, rendered
from tests.support.grafana import PROMETHEUS, alert_rules, prometheus_queries
from tests.support.promql import matcher_selects, vector_selectors


def _client_bucket_labels(bounds: tuple[float, ...]) -> list[str]:
    registry = CollectorRegistry()
    Histogram("h", "h", buckets=bounds, registry=registry).observe(0.3)
    text = generate_latest(registry).decode()
    return [
        s.labels["le"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "h_bucket"
    ]


@pytest.mark.parametrize("bounds", [LATENCY_BUCKETS, CONFIDENCE_BUCKETS])
def test_bucket_label_is_what_prometheus_client_writes(bounds):
    expected = [bucket_label(b) for b in (*bounds, float("inf"))]
    assert expected == _client_bucket_labels(bounds)


@pytest.fixture(scope="module")
def exposed_buckets(exposed: Exposed) -> dict[str, set[str]]:
    """metric name -> the `le` labels real servers expose for it."""
    labels: dict[str, set[str]] = defaultdict(set)
    for name, sample_labels in exposed.series:
        if "le" in sample_labels and name.startswith("model_"):
            labels[name].add(sample_labels["le"])
    assert {"model_latency_seconds_bucket", "model_confidence_bucket"} <= set(labels)
    return labels


def _generated(folder: str, suffix: str) -> list[Path]:
    """The generated files of a folder (as rendered now: the committed ones equal them)."""
    return sorted(p for p in rendered() if p.parent == Path(folder) and p.name.endswith(suffix))


def _rule_exprs(path: Path) -> list[tuple[str, str]]:
    groups = generated_yaml(path)["groups"]
    return [
        (f"{path.name}: {r.get('record') or r['alert']}", r["expr"])
        for g in groups
        for r in g["rules"]
    ]


def _every_query() -> list[tuple[str, str]]:
    queries = [e for p in _generated("prometheus/rules", ".yml") for e in _rule_exprs(p)]
    queries += [
        (f"Grafana rule {r['title']}", q["model"]["expr"])
        for r in alert_rules()
        for q in r["data"]
        if q["datasourceUid"] == PROMETHEUS
    ]
    queries += [(q.name, q.template) for q in prometheus_queries()]
    return queries


def _le_matchers(promql: str) -> list[tuple[str, promql_parser.Matcher]]:
    return [
        (selector.name, m)
        for selector in vector_selectors(promql)
        for m in selector.matchers.matchers
        if m.name == "le"
    ]


def test_every_le_matcher_selects_a_bucket_the_servers_expose(exposed_buckets):
    checked = 0
    for name, promql in _every_query():
        for metric, matcher in _le_matchers(promql):
            exposed = exposed_buckets.get(metric, set())
            assert any(matcher_selects(matcher, le) for le in exposed), (
                f"{name}: le {matcher.value!r} of {metric}; the servers expose {sorted(exposed)}"
            )
            checked += 1
    assert checked >= 2  # the low-confidence rule and its panel


def test_promtool_test_inputs_use_the_bucket_labels_the_servers_expose(exposed_buckets):
    """A promtool test fed `le="1"` passes against rules that never see that label in production."""
    checked = 0
    for path in _generated("prometheus/tests", ".test.yml"):
        for case in generated_yaml(path)["tests"]:
            for entry in case["input_series"]:
                selector = promql_parser.parse(entry["series"])
                for matcher in selector.matchers.matchers:
                    if matcher.name == "le" and selector.name in exposed_buckets:
                        assert matcher.value in exposed_buckets[selector.name], (
                            f"{path.name}: {entry['series']}"
                        )
                        checked += 1
    assert checked > 0
