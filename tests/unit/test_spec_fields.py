"""Every field of observability.yaml, where it must show in the generated files and what it must
mean there, stated in this file by hand and never taken from mlobs.generate: a wrong threshold,
comparison, `for`, window or denominator in a generator fails here, even though the generator
agrees with itself.

The table (FIELDS) runs twice: on observability.yaml, and on a copy in which every value differs
(CHANGES), so a value written into a generator by hand, or one field's value used for another,
fails too. The numbers the recording rules compute are checked with promtool on the rendered
rules (test_recorded_ratios_and_psi_compute_their_definition).
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import logstash_pipeline_parser
import promql_parser as pql
import pytest
import yaml
from fastapi.testclient import TestClient
from luqum.parser import parser as lucene
from luqum.tree import SearchField, To

from mlobs.generate.__main__ import render_all
from mlobs.metrics import STATUSES
from mlobs.model import ServedModel
from mlobs.server import create_app
from mlobs.settings import Settings
from mlobs.spec import load_spec
from tests.conftest import REPO, require_tool
from tests.support.generated import rendered, spec_yaml
from tests.support.grafana import PROMETHEUS, panel_queries
from tests.support.logstash_conditions import conditionals, evaluate, tags_added
from tests.support.promql import matcher_selects, raw_metric_names
from tests.support.promtool import series

ALERTS_FILE = "prometheus/rules/alerts.yml"
RECORDING_FILE = "prometheus/rules/recording.yml"
SCRAPE_FILE = "prometheus/prometheus.yml"
GRAFANA_RULES_FILE = "grafana/provisioning/alerting/alert-rules.yml"
LOGSTASH_FILE = "logstash/pipeline/inference.conf"
HEALTH = "grafana/dashboards/ml-model-health.json"
DRIFT = "grafana/dashboards/ml-drift.json"

LATENCY = "ModelP99LatencyHigh"
ERRORS = "ModelErrorRateHigh"
DRIFTED = "ModelFeatureDriftHigh"
LOW_CONFIDENCE = "ModelLowConfidence"
DOWN = "ModelServerDown"
MISSING = "ModelServerMissing"
NO_TRAFFIC = "ModelNoTraffic"

# Outcomes of model_requests_total that failed the caller with a 5xx (README: 500, 504 on
# timeout, 503 when shed); the error ratio divides these by every outcome.
FAILED = {"server_error", "shed"}
LOW_TAG = "low_confidence"

# Every value of observability.yaml changed (the models stay: the Kubernetes manifests need a
# compose service per model), and within the copy no two durations and no two numbers are equal.
# Three severities cannot tell six alerts apart: the only pairs equal in both specs are
# latency/low_confidence and drift/no_traffic.
CHANGES: dict[str, Any] = {
    "grafana_url": "https://grafana.example.org",
    "kibana_url": "https://kibana.example.org:5601",
    "alerts": {
        "latency": {"threshold_seconds": 0.25, "window": "3m", "for": "2m", "severity": "critical"},
        "error_rate": {
            "threshold_ratio": 0.05,
            "min_request_rate": 0.5,
            "window": "4m",
            "for": "6m",
            "severity": "warning",
        },
        "drift": {
            "psi_threshold": 0.15,
            "window": "30m",
            "min_samples": 500,
            "for": "20m",
            "severity": "info",
        },
        "low_confidence": {
            "confidence_threshold": 0.4,
            "max_share": 0.35,
            "window": "11m",
            "for": "12m",
            "severity": "critical",
        },
        "server_down": {"for": "90s", "severity": "info"},
        "no_traffic": {"window": "14m", "for": "7m", "severity": "info"},
    },
}


# --- what one spec renders to ------------------------------------------------------------------


@dataclass(frozen=True)
class Generated:
    """The files one spec renders to, and GET /drift of a server that reads that spec."""

    spec: dict[str, Any]  # the spec as plain YAML
    files: dict[Path, str]
    drift: dict[str, Any]

    def parsed(self, path: str) -> Any:
        text = self.files[Path(path)]
        return json.loads(text) if path.endswith(".json") else yaml.safe_load(text)

    def value(self, field: str) -> Any:
        return spec_value(self.spec, field)


def spec_value(spec: dict[str, Any], field: str) -> Any:
    """`alerts.drift.window` -> "1h"; `models[].name` -> every model's name."""
    if field.startswith("models[]."):
        return [m.get(field.removeprefix("models[].")) for m in spec["models"]]
    value: Any = spec
    for key in field.split("."):
        value = value[key]
    return value


def spec_fields(spec: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Every leaf of the spec by its path; keys of list items as `models[].name`."""
    for key, value in spec.items():
        if isinstance(value, dict):
            yield from spec_fields(value, f"{prefix}{key}.")
        elif isinstance(value, list):
            yield from sorted({f"{prefix}{key}[].{k}" for item in value for k in item})
        else:
            yield f"{prefix}{key}"


def _changed_spec() -> dict[str, Any]:
    committed, spec = spec_yaml(), spec_yaml()
    spec["grafana_url"], spec["kibana_url"] = CHANGES["grafana_url"], CHANGES["kibana_url"]
    for alert, values in CHANGES["alerts"].items():
        spec["alerts"][alert].update(values)
    # The copy proves something only if it changes every value and repeats none.
    for field in spec_fields(spec):
        if not field.startswith("models[]"):
            assert spec_value(spec, field) != spec_value(committed, field), field
    values = [v for a in spec["alerts"].values() for k, v in a.items() if k != "severity"]
    durations = [_duration(v) for v in values if isinstance(v, str)]
    numbers = [v for v in values if not isinstance(v, str)]
    assert len(set(durations)) == len(durations) and len(set(numbers)) == len(numbers)
    return spec


def _drift_report(model: ServedModel, spec_path: Path, log_dir: Path) -> dict[str, Any]:
    settings = Settings(log_file=log_dir / "inference.log", spec_path=spec_path)
    with TestClient(create_app(model, settings)) as client:
        return client.get("/drift").json()


@pytest.fixture(scope="module", params=["observability.yaml", "changed copy"])
def generated(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    anomaly_model: ServedModel,
) -> Generated:
    work = tmp_path_factory.mktemp("spec")
    if request.param == "observability.yaml":
        spec, path, files = spec_yaml(), REPO / "observability.yaml", rendered()
    else:
        spec, path = _changed_spec(), work / "observability.yaml"
        path.write_text(yaml.safe_dump(spec))
        files = render_all(load_spec(path), REPO)
    return Generated(spec, files, _drift_report(anomaly_model, path, work))


# --- PromQL: what an expression reads and compares ---------------------------------------------


def _duration(text: str) -> timedelta:
    return pql.parse_duration(text)


def _bare(node: Any) -> Any:
    while isinstance(node, pql.ParenExpr):
        node = node.expr
    return node


def _recorded(g: Generated) -> dict[str, str]:
    groups = g.parsed(RECORDING_FILE)["groups"]
    return {r["record"]: r["expr"] for group in groups for r in group["rules"]}


def _expand(g: Generated, node: Any) -> Any:
    """`node`, or the expression of the recorded series it names."""
    node = _bare(node)
    recorded = _recorded(g)
    if isinstance(node, pql.VectorSelector) and node.name in recorded:
        assert not node.matchers.matchers, f"{node}: a recorded series is read whole"
        return _bare(pql.parse(recorded[node.name]))
    return node


def _alert(g: Generated, name: str) -> dict[str, Any]:
    [rule] = [
        r
        for group in g.parsed(ALERTS_FILE)["groups"]
        for r in group["rules"]
        if r.get("alert") == name
    ]
    return rule


def _comparison(node: Any) -> tuple[Any, str, float]:
    """(left side, operator, number) of `<left> <op> <number>`."""
    node = _bare(node)
    assert isinstance(node, pql.BinaryExpr), f"{node} is not a comparison"
    number = _bare(node.rhs)
    assert isinstance(number, pql.NumberLiteral), f"{node} is not compared with a number"
    # `> bool` keeps every series (as 0 or 1): an alert on it would always fire.
    assert node.modifier is None or not node.modifier.return_bool, f"{node}: bool comparison"
    return _bare(node.lhs), str(node.op), number.val


def _alert_comparison(g: Generated, name: str) -> tuple[Any, str, float]:
    return _comparison(pql.parse(_alert(g, name)["expr"]))


@dataclass(frozen=True)
class Summed:
    """`sum by (<by>) (<function>(<metric>{<matchers>}[<window>]))`."""

    by: set[str]
    function: str
    metric: str
    matchers: list[pql.Matcher]
    window: timedelta


def _summed(g: Generated, node: Any) -> Summed:
    node = _expand(g, node)
    assert isinstance(node, pql.AggregateExpr) and str(node.op) == "sum", f"{node}: not a sum"
    assert node.modifier is not None and node.modifier.type == pql.AggModifierType.By, node
    call = _bare(node.expr)
    assert isinstance(call, pql.Call), f"{node}: not a sum of a function of a range"
    [matrix] = call.args
    selector = matrix.vector_selector
    return Summed(
        set(node.modifier.labels),
        call.func.name,
        selector.name,
        list(selector.matchers.matchers),
        matrix.range,
    )


def _statuses(matchers: list[pql.Matcher]) -> set[str]:
    """The request outcomes a selector of model_requests_total keeps."""
    assert {m.name for m in matchers} <= {"status"}, matchers
    return {s for s in STATUSES if all(matcher_selects(m, s) for m in matchers)}


def _ratio(g: Generated, node: Any) -> tuple[Summed, Summed]:
    """(numerator, denominator) of a ratio of two sums, recorded or not."""
    node = _expand(g, node)
    assert isinstance(node, pql.BinaryExpr) and str(node.op) == "/", f"{node}: not a ratio"
    return _summed(g, node.lhs), _summed(g, node.rhs)


def _on(node: Any, op: str, labels: set[str]) -> tuple[Any, Any]:
    """The two sides of `<left> <op> on (<labels>) <right>`."""
    node = _bare(node)
    assert isinstance(node, pql.BinaryExpr) and str(node.op) == op, f"{node}: not `{op}`"
    matching = node.modifier.matching
    assert matching.type == pql.LabelModifierType.Include and set(matching.labels) == labels
    return node.lhs, node.rhs


def _ranges(g: Generated, node: Any) -> set[timedelta]:
    """Every range the expression reads, through recorded series too."""
    recorded, found = _recorded(g), set()

    def visit(item: Any) -> None:
        if isinstance(item, pql.MatrixSelector):
            found.add(item.range)
        elif isinstance(item, pql.VectorSelector) and item.name in recorded:
            found.update(_ranges(g, pql.parse(recorded[item.name])))

    pql.walk(node, visit)
    return found


def _metrics(g: Generated, node: Any) -> set[str]:
    """Every exported metric the expression reads, through recorded series too."""
    return raw_metric_names(str(node), _recorded(g))


# --- checks: one spec value in one place -------------------------------------------------------

Check = Callable[[Generated, Any], None]


def all_of(*checks: Check) -> Check:
    def check(g: Generated, value: Any) -> None:
        for each in checks:
            each(g, value)

    return check


def compares(alert: str, op: str) -> Check:
    """The alert fires when its query is `op` the value (`>`: at the value it stays quiet)."""

    def check(g: Generated, value: Any) -> None:
        _, actual, number = _alert_comparison(g, alert)
        assert (actual, number) == (op, value), f"{alert}: {actual} {number}"

    return check


def held_for(*alerts: str) -> Check:
    def check(g: Generated, value: Any) -> None:
        for alert in alerts:
            assert _duration(_alert(g, alert)["for"]) == _duration(value), alert

    return check


def labelled(*alerts: str) -> Check:
    def check(g: Generated, value: Any) -> None:
        for alert in alerts:
            assert _alert(g, alert)["labels"]["severity"] == value, alert

    return check


def p99_latency_over(g: Generated, window: str) -> None:
    """The latency alert compares the p99 of all of a model's requests over the window."""
    left, _, _ = _alert_comparison(g, LATENCY)
    quantile = _expand(g, left)
    assert isinstance(quantile, pql.Call) and quantile.func.name == "histogram_quantile"
    q, buckets = quantile.args
    assert _bare(q).val == 0.99
    summed = _summed(g, buckets)
    assert (summed.by, summed.function, summed.metric) == (
        {"model", "le"},
        "rate",
        "model_latency_seconds_bucket",
    )
    assert summed.matchers == [] and summed.window == _duration(window)


def _error_alert_parts(g: Generated) -> tuple[Any, Any]:
    """(error ratio, traffic condition) of `(<ratio> and on (model) <traffic>) > threshold`."""
    left, _, _ = _alert_comparison(g, ERRORS)
    return _on(left, "and", {"model"})


def error_ratio_over(g: Generated, window: str) -> None:
    """5xx (server errors and shed) / ALL requests of the same model, both over the window."""
    ratio, traffic = _error_alert_parts(g)
    failed, every = _ratio(g, ratio)
    rate, _, _ = _comparison(_expand(g, traffic))
    for summed in (failed, every, _summed(g, rate)):
        assert (summed.by, summed.function, summed.metric) == (
            {"model"},
            "rate",
            "model_requests_total",
        )
        assert summed.window == _duration(window)
    assert _statuses(failed.matchers) == FAILED
    assert _statuses(every.matchers) == set(STATUSES)


def needs_traffic(g: Generated, value: Any) -> None:
    """The error alert holds only while a model gets at least `value` requests per second."""
    _, traffic = _error_alert_parts(g)
    rate, op, number = _comparison(_expand(g, traffic))
    assert (op, number) == (">=", value)
    summed = _summed(g, rate)
    assert (summed.function, summed.metric) == ("rate", "model_requests_total")
    assert _statuses(summed.matchers) == set(STATUSES)


def drift_over(g: Generated, window: str) -> None:
    """PSI compares the counts of the window with the baseline, and only those."""
    left, _, _ = _alert_comparison(g, DRIFTED)
    assert _ranges(g, left) == {_duration(window)}
    assert _metrics(g, left) == {"model_feature_bin_total", "model_feature_baseline_ratio"}


def psi_needs_samples(g: Generated, value: Any) -> None:
    """No PSI unless the window holds at least `value` values of the feature."""
    left, _, _ = _alert_comparison(g, DRIFTED)
    _, samples = _on(_expand(g, left), "and", {"model", "feature"})
    count, op, number = _comparison(_expand(g, samples))
    assert (op, number) == (">=", value)
    assert _metrics(g, count) == {"model_feature_bin_total"}


def _low_confidence_ratio(g: Generated) -> tuple[Summed, Summed]:
    left, _, _ = _alert_comparison(g, LOW_CONFIDENCE)
    return _ratio(g, left)


def _le(matchers: list[pql.Matcher]) -> float:
    [le] = matchers
    assert (le.name, str(le.op)) == ("le", "MatchOp.Equal"), le
    return float(le.value)


def _every_prediction(metric: str, matchers: list[pql.Matcher]) -> bool:
    """model_confidence_count, or its +Inf bucket: every prediction, whatever its confidence."""
    le = [m.value for m in matchers if m.name == "le"]
    return (metric, le) in [("model_confidence_count", []), ("model_confidence_bucket", ["+Inf"])]


def low_confidence_bucket(g: Generated, threshold: float) -> None:
    """The numerator is the bucket of predictions at or below the threshold."""
    low, _ = _low_confidence_ratio(g)
    assert low.metric == "model_confidence_bucket" and _le(low.matchers) == threshold


def low_confidence_over(g: Generated, window: str) -> None:
    """Low-confidence predictions / ALL predictions of the model, both over the window."""
    low, every = _low_confidence_ratio(g)
    assert _every_prediction(every.metric, every.matchers)
    assert all(m.name == "le" for m in every.matchers), every.matchers
    for summed in (low, every):
        assert (summed.by, summed.function) == ({"model"}, "rate")
        assert summed.window == _duration(window)


def no_requests_over(g: Generated, window: str) -> None:
    left, op, number = _alert_comparison(g, NO_TRAFFIC)
    assert (op, number) == ("==", 0)
    summed = _summed(g, left)
    assert (summed.by, summed.function, summed.metric) == (
        {"model"},
        "rate",
        "model_requests_total",
    )
    assert _statuses(summed.matchers) == set(STATUSES) and summed.window == _duration(window)


def _other_jobs(g: Generated, models: list[str]) -> set[str]:
    jobs = {job["job_name"] for job in g.parsed(SCRAPE_FILE)["scrape_configs"]}
    return jobs - set(models)


def down_targets_of(g: Generated, models: list[str]) -> None:
    """ModelServerDown: `up == 0` of the models' jobs, none other, labelled with the model."""
    left, op, number = _alert_comparison(g, DOWN)
    assert (op, number) == ("==", 0)
    assert isinstance(left, pql.Call) and left.func.name == "label_replace"
    up, *texts = left.args
    assert [t.val for t in texts] == ["model", "$1", "job", "(.+)"]
    up = _bare(up)
    assert up.name == "up"
    [job] = up.matchers.matchers
    assert job.name == "job"
    assert {m for m in models if matcher_selects(job, m)} == set(models)
    assert not {j for j in _other_jobs(g, models) if matcher_selects(job, j)}


def missing_targets_of(g: Generated, models: list[str]) -> None:
    """ModelServerMissing: one absent(up{job="<model>"}) per model."""
    left, op, number = _alert_comparison(g, MISSING)
    assert (op, number) == ("==", 1)
    absent: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, pql.Call) and node.func.name == "absent":
            [matcher] = _bare(node.args[0]).matchers.matchers
            assert (matcher.name, str(matcher.op)) == ("job", "MatchOp.Equal")
            absent.append(matcher.value)

    pql.walk(left, visit)
    assert sorted(absent) == sorted(models)


def scraped_as_jobs(g: Generated, models: list[str]) -> None:
    jobs = [job["job_name"] for job in g.parsed(SCRAPE_FILE)["scrape_configs"]]
    assert set(models) <= set(jobs) and len(jobs) == len(set(jobs))


def links_to_grafana(g: Generated, url: str) -> None:
    for group in g.parsed(ALERTS_FILE)["groups"]:
        for rule in group["rules"]:
            assert rule["annotations"]["dashboard"].startswith(f"{url.rstrip('/')}/d/"), rule


def links_to_kibana(g: Generated, url: str) -> None:
    links = [
        link["url"]
        for panel in g.parsed(HEALTH)["panels"]
        for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links", [])
    ]
    assert links and all(link.startswith(f"{url.rstrip('/')}/app/discover") for link in links)


# Grafana alert rules


def _grafana_rule(g: Generated, title: str) -> dict[str, Any]:
    [rule] = [
        r
        for group in g.parsed(GRAFANA_RULES_FILE)["groups"]
        for r in group["rules"]
        if r["title"] == title
    ]
    return rule


def _grafana_condition(rule: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(the threshold expression, the PromQL it reads through its chain of expressions)."""
    data = {q["refId"]: q for q in rule["data"]}
    condition = data[rule["condition"]]
    step = condition
    while step["datasourceUid"] == "__expr__":
        step = data[step["model"]["expression"]]
    return condition["model"], step["model"]["expr"]


def grafana_threshold(title: str) -> Check:
    """Grafana's threshold `gt` is Prometheus's `>`: above the value, not at it."""

    def check(g: Generated, value: Any) -> None:
        condition, _ = _grafana_condition(_grafana_rule(g, title))
        assert condition["type"] == "threshold"
        [only] = condition["conditions"]
        assert only["evaluator"] == {"type": "gt", "params": [value]}, title

    return check


def grafana_query(title: str) -> Check:
    """The Grafana rule runs the left side of the Prometheus alert (checked above)."""

    def check(g: Generated, _value: Any) -> None:
        _, query = _grafana_condition(_grafana_rule(g, title))
        left, _, _ = _alert_comparison(g, title)
        assert str(_bare(pql.parse(query))) == str(left), title

    return check


def grafana_for(title: str) -> Check:
    def check(g: Generated, value: Any) -> None:
        assert _duration(_grafana_rule(g, title)["for"]) == _duration(value), title

    return check


def grafana_severity(title: str) -> Check:
    def check(g: Generated, value: Any) -> None:
        assert _grafana_rule(g, title)["labels"]["severity"] == value, title

    return check


# Dashboards


def _panel(g: Generated, board: str, title: str) -> dict[str, Any]:
    [panel] = [p for p in g.parsed(board)["panels"] if p.get("title") == title]
    return panel


def _panel_promql(g: Generated, board: str, title: str) -> list[Any]:
    queries = panel_queries(g.parsed(board))
    return [
        pql.parse(q.template) for q in queries if q.panel == title and q.datasource == PROMETHEUS
    ]


def line_at(board: str, title: str) -> Check:
    """The panel draws one threshold line, at the value (absolute, not a percentage)."""

    def check(g: Generated, value: Any) -> None:
        defaults = _panel(g, board, title)["fieldConfig"]["defaults"]
        assert defaults["custom"]["thresholdsStyle"]["mode"] != "off", title
        thresholds = defaults["thresholds"]
        assert thresholds["mode"] == "absolute", title
        assert [s["value"] for s in thresholds["steps"]] == [None, value], title

    return check


def panel_over(board: str, title: str) -> Check:
    """The panel's recorded series cover the window (its own ranges are Grafana's)."""

    def check(g: Generated, window: str) -> None:
        [query] = _panel_promql(g, board, title)
        assert _ranges(g, query) == {_duration(window)}, title

    return check


def panel_bucket(g: Generated, threshold: float) -> None:
    """The low-confidence panel divides the bucket at the threshold by all predictions."""
    [query] = _panel_promql(g, HEALTH, "Low-confidence share")
    assert isinstance(query, pql.BinaryExpr) and str(query.op) == "/"
    low, every = _bare(query.lhs), _bare(query.rhs)

    def selector(node: Any) -> pql.VectorSelector:
        return _bare(node.expr).args[0].vector_selector

    low_selector, every_selector = selector(low), selector(every)
    assert low_selector.name == "model_confidence_bucket"
    le = [m for m in low_selector.matchers.matchers if m.name == "le"]
    assert _le(le) == threshold
    assert _every_prediction(every_selector.name, list(every_selector.matchers.matchers))


def lucene_at_or_below(g: Generated, threshold: float) -> None:
    """The logs panel shows the events at or below the threshold (`confidence:<=x`)."""
    [target] = _panel(g, HEALTH, "Recent low-confidence predictions")["targets"]
    query = target["query"].replace("${model:lucene}", "x")
    bounds = []

    def visit(node: Any) -> None:
        if isinstance(node, SearchField) and node.name == "confidence":
            assert isinstance(node.expr, To) and node.expr.include, node
            bounds.append(float(node.expr.a.value))
        for child in node.children:
            visit(child)

    visit(lucene.parse(query))
    assert bounds == [threshold]


# Logstash


def logstash_tags_at_or_below(g: Generated, threshold: float) -> None:
    """Logstash tags an event low_confidence at and just under the threshold, not just over."""
    tree = dict(logstash_pipeline_parser.Pipeline(g.files[Path(LOGSTASH_FILE)]).parse())
    [condition] = [c for c, body in conditionals(tree["filter"]) if LOW_TAG in tags_added(body)]
    for confidence, tagged in [
        (threshold, True),
        (math.nextafter(threshold, 0.0), True),
        (math.nextafter(threshold, 1.0), False),
    ]:
        assert evaluate(condition, {"confidence": confidence, "tags": []}) is tagged, confidence


# /drift


def drift_reports_threshold(g: Generated, value: float) -> None:
    assert g.drift["psi_threshold"] == value


def drift_reports_min_samples(g: Generated, value: int) -> None:
    assert g.drift["min_samples"] == value


def drift_reports_window(g: Generated, window: str) -> None:
    assert g.drift["window_seconds"] == _duration(window).total_seconds()


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """A spec field and what it must be in each place; None: it does not go there."""

    field: str
    rules: Check | None = None  # prometheus/rules/*.yml (and prometheus.yml)
    grafana_alert: Check | None = None  # grafana/provisioning/alerting/alert-rules.yml
    dashboard: Check | None = None  # grafana/dashboards/*.json
    logstash: Check | None = None  # logstash/pipeline/inference.conf
    drift_endpoint: Check | None = None  # GET /drift of a model server
    unused: str = ""  # why nothing reads the field

    def checks(self) -> Iterator[tuple[str, Check]]:
        for column in fields(self)[1:-1]:
            check = getattr(self, column.name)
            if check is not None:
                yield column.name, check


# fmt: off
FIELDS: list[Row] = [
    Row("models[].name",
        rules=all_of(down_targets_of, missing_targets_of, scraped_as_jobs)),
    Row("models[].port", unused="no generated file reads it (docker-compose.yml publishes ports)"),
    Row("models[].description", unused="documentation of the spec only"),
    Row("grafana_url", rules=links_to_grafana),
    Row("kibana_url", dashboard=links_to_kibana),

    Row("alerts.latency.threshold_seconds",
        rules=compares(LATENCY, ">"),
        grafana_alert=grafana_threshold(LATENCY),
        dashboard=line_at(HEALTH, "Latency p50 / p90 / p99")),
    Row("alerts.latency.window", rules=p99_latency_over, grafana_alert=grafana_query(LATENCY)),
    Row("alerts.latency.for", rules=held_for(LATENCY), grafana_alert=grafana_for(LATENCY)),
    Row("alerts.latency.severity",
        rules=labelled(LATENCY), grafana_alert=grafana_severity(LATENCY)),

    Row("alerts.error_rate.threshold_ratio",
        rules=compares(ERRORS, ">"),
        grafana_alert=grafana_threshold(ERRORS),
        dashboard=line_at(HEALTH, "5xx ratio (server errors + shed)")),
    Row("alerts.error_rate.min_request_rate", rules=needs_traffic),
    Row("alerts.error_rate.window", rules=error_ratio_over, grafana_alert=grafana_query(ERRORS)),
    Row("alerts.error_rate.for", rules=held_for(ERRORS), grafana_alert=grafana_for(ERRORS)),
    Row("alerts.error_rate.severity",
        rules=labelled(ERRORS), grafana_alert=grafana_severity(ERRORS)),

    Row("alerts.drift.psi_threshold",
        rules=compares(DRIFTED, ">"),
        grafana_alert=grafana_threshold(DRIFTED),
        dashboard=all_of(line_at(DRIFT, "PSI per feature"),
                         line_at(DRIFT, "Prediction drift (PSI of the predicted label)")),
        drift_endpoint=drift_reports_threshold),
    Row("alerts.drift.window",
        rules=drift_over,
        grafana_alert=grafana_query(DRIFTED),
        dashboard=all_of(panel_over(DRIFT, "PSI per feature"),
                         panel_over(DRIFT, "Out-of-range share")),
        drift_endpoint=drift_reports_window),
    Row("alerts.drift.min_samples",
        rules=psi_needs_samples,
        drift_endpoint=drift_reports_min_samples),
    Row("alerts.drift.for", rules=held_for(DRIFTED), grafana_alert=grafana_for(DRIFTED)),
    Row("alerts.drift.severity",
        rules=labelled(DRIFTED), grafana_alert=grafana_severity(DRIFTED)),

    Row("alerts.low_confidence.confidence_threshold",
        rules=low_confidence_bucket,
        dashboard=all_of(panel_bucket, lucene_at_or_below),
        logstash=logstash_tags_at_or_below),
    Row("alerts.low_confidence.max_share",
        rules=compares(LOW_CONFIDENCE, ">"),
        dashboard=line_at(HEALTH, "Low-confidence share")),
    Row("alerts.low_confidence.window", rules=low_confidence_over),
    Row("alerts.low_confidence.for", rules=held_for(LOW_CONFIDENCE)),
    Row("alerts.low_confidence.severity", rules=labelled(LOW_CONFIDENCE)),

    Row("alerts.server_down.for", rules=held_for(DOWN, MISSING)),
    Row("alerts.server_down.severity", rules=labelled(DOWN, MISSING)),

    Row("alerts.no_traffic.window", rules=no_requests_over),
    Row("alerts.no_traffic.for", rules=held_for(NO_TRAFFIC)),
    Row("alerts.no_traffic.severity", rules=labelled(NO_TRAFFIC)),
]
# fmt: on

CASES = [
    pytest.param(row.field, check, id=f"{row.field}@{where}")
    for row in FIELDS
    for where, check in row.checks()
]


def test_every_field_of_the_spec_has_a_row():
    rows = [row.field for row in FIELDS]
    assert len(rows) == len(set(rows))
    assert set(spec_fields(spec_yaml())) == set(rows)
    assert all(bool(row.unused) != any(row.checks()) for row in FIELDS)


@pytest.mark.parametrize(("field", "check"), CASES)
def test_spec_field_shows_with_its_meaning(generated: Generated, field: str, check: Check):
    check(generated, generated.value(field))


# --- what the recorded ratios and PSI compute (promtool on the rendered rules) -----------------

# Per minute, per outcome; 5 of 100 requests fail with a 5xx.
REQUESTS_PER_MINUTE = {"success": 90, "client_error": 5, "server_error": 3, "shed": 2}
# Cumulative confidence buckets per minute (le as prometheus_client writes it), of 100.
CONFIDENCE_PER_MINUTE = {"0.3": 12, "0.4": 20, "0.5": 30, "0.6": 41, "+Inf": 100}
# Bins of a drifted feature: baseline share and the share of the live values.
BASELINE = {"a": 0.5, "b": 0.3, "c": 0.2}
LIVE = {"a": 0.2, "b": 0.3, "c": 0.5}
LABELS = {"model": "m", "instance": "i"}


def _promtool(tmp_path: Path, g: Generated, tests: list[dict[str, Any]]) -> None:
    promtool = require_tool("promtool")
    rules = tmp_path / "recording.yml"
    rules.write_text(g.files[Path(RECORDING_FILE)])
    test_file = tmp_path / "rules.test.yml"
    test_file.write_text(
        yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests})
    )
    result = subprocess.run(
        [promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}{result.stderr}"


def _equals(expr: str, value: float, labels: str) -> dict[str, Any]:
    return {
        "expr": f"abs({expr} - {value!r}) < bool 1e-9",
        "exp_samples": [{"labels": labels, "value": 1}],
    }


def _inputs(alerts: dict[str, Any]) -> list[dict[str, str]]:
    """Counters growing at the rates above until the end of the drift window (`_end`), and
    one-bin features whose window then holds exactly min_samples values, and one fewer."""
    end, minutes, min_samples = _end(alerts), _end(alerts) - 1, alerts["drift"]["min_samples"]
    inputs = [
        series("model_requests_total", {**LABELS, "status": s}, f"0+{n}x{end}")
        for s, n in REQUESTS_PER_MINUTE.items()
    ]
    inputs += [
        series("model_confidence_bucket", {**LABELS, "le": le}, f"0+{n}x{end}")
        for le, n in CONFIDENCE_PER_MINUTE.items()
    ]
    inputs.append(series("model_confidence_count", LABELS, f"0+100x{end}"))
    scale = math.ceil(min_samples / (10 * minutes))  # at least min_samples values in the window
    for b, share in BASELINE.items():
        bin_labels = {**LABELS, "feature": "drifted", "bin": b}
        inputs.append(series("model_feature_baseline_ratio", bin_labels, f"{share}x{end}"))
        per_minute = f"{LIVE[b] * 10 * scale:g}"
        inputs.append(series("model_feature_bin_total", bin_labels, f"0+{per_minute}x{end}"))
    for feature, count in [("at_minimum", min_samples), ("below_minimum", min_samples - 1)]:
        bin_labels = {**LABELS, "feature": feature, "bin": "a"}
        inputs.append(series("model_feature_baseline_ratio", bin_labels, f"1x{end}"))
        # 0 until the window starts, `count` at its end.
        inputs.append(series("model_feature_bin_total", bin_labels, f"0x{minutes} {count}"))
    return inputs


def _end(alerts: dict[str, Any]) -> int:
    """The minute of evaluation: one drift window after the first minute."""
    return int(_duration(alerts["drift"]["window"]).total_seconds() // 60) + 1


def test_recorded_ratios_and_psi_compute_their_definition(generated: Generated, tmp_path):
    alerts = generated.spec["alerts"]
    threshold = alerts["low_confidence"]["confidence_threshold"]
    [low] = [
        n for le, n in CONFIDENCE_PER_MINUTE.items() if le != "+Inf" and float(le) == threshold
    ]
    failed = sum(REQUESTS_PER_MINUTE[s] for s in FAILED) / sum(REQUESTS_PER_MINUTE.values())
    psi = sum((LIVE[b] - q) * math.log(LIVE[b] / q) for b, q in BASELINE.items())
    checks = [
        _equals('model:server_error_ratio{model="m"}', failed, '{model="m"}'),
        _equals('model:low_confidence_ratio{model="m"}', low / 100, '{model="m"}'),
        _equals('model_feature:psi{feature="drifted"}', psi, '{feature="drifted", model="m"}'),
        _equals(
            'model_feature:psi{feature="at_minimum"}', 0.0, '{feature="at_minimum", model="m"}'
        ),
        {"expr": 'model_feature:psi{feature="below_minimum"}', "exp_samples": []},
    ]
    end = f"{_end(alerts)}m"
    case = {
        "interval": "1m",
        "input_series": _inputs(alerts),
        "promql_expr_test": [{**c, "eval_time": end} for c in checks],
    }
    _promtool(tmp_path, generated, [case])
