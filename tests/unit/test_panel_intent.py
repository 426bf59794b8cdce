"""Each dashboard panel shows what its title says: a hand-written table states, for every panel of
grafana/dashboards/*.json, what each of its lines computes (series read, labels fixed, rate or
increase over which window, aggregation, quantile, ratio), which dashboard variables filter it, its
unit and its panel type; for the Elasticsearch logs panel, which events it lists.

Other tests check that a query reads a series that exists (test_grafana_dashboards), returns data
(test_native_alerts) or agrees with a recording rule (test_panel_rule_agreement); none notices a
panel titled "PSI per feature" drawing the out-of-range share, a p99 line computing the 0.9
quantile, or a 5xx ratio in requests per second. A panel added without a row here fails, and so does
a row whose panel is gone.

Queries are compared by their syntax tree (promql-parser), reduced to what the reader of the panel
sees: windows by name (`$__rate_interval`, `$__range`), dashboard-variable matchers checked apart
from the fixed ones, `on`/`group_left` and parentheses dropped, `or` operands unordered.
Expectations come from this table and observability.yaml (model names, confidence threshold),
never from the generator.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Union

import promql_parser
import pytest

from tests.support import lucene
from tests.support.generated import generated_json, rendered, spec_yaml
from tests.support.grafana import (
    ELASTICSEARCH,
    PROMETHEUS,
    Selection,
    interpolate,
    query_variables,
)

# --- what a query computes -------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """A selected series; `where` holds the fixed label matchers: label -> a value (=), a float
    (an `le` bucket bound), a frozenset (=~ over a plain alternation) or (op, text) otherwise."""

    metric: str
    where: frozenset[tuple[str, Any]] = frozenset()

    def __str__(self) -> str:
        return f"{self.metric}{{{', '.join(f'{k}: {_shown(v)}' for k, v in sorted(self.where))}}}"


@dataclass(frozen=True)
class Range:
    series: Series
    window: str  # a Grafana interval variable such as $__rate_interval, or a literal duration

    def __str__(self) -> str:
        return f"{self.series}[{self.window}]"


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Meaning, ...]

    def __str__(self) -> str:
        return f"{self.function}({', '.join(map(str, self.args))})"


@dataclass(frozen=True)
class Aggregate:
    op: str
    by: frozenset[str]
    of: Meaning

    def __str__(self) -> str:
        return f"{self.op} by ({', '.join(sorted(self.by))}) ({self.of})"


@dataclass(frozen=True)
class Binary:
    op: str
    lhs: Meaning
    rhs: Meaning

    def __str__(self) -> str:
        return f"({self.lhs} {self.op} {self.rhs})"


@dataclass(frozen=True)
class Either:
    """PromQL `or`: the operands' series together."""

    operands: frozenset[Meaning]

    def __str__(self) -> str:
        return "(" + " or ".join(sorted(map(str, self.operands))) + ")"


Meaning = Union[Series, Range, Call, Aggregate, Binary, Either, float, str]  # noqa: UP007


def _shown(value: Any) -> str:
    return "|".join(sorted(value)) if isinstance(value, frozenset) else repr(value)


# Grafana's interval variables, replaced by durations that say which variable they were.
_WINDOWS = {"__rate_interval": 1001, "__range": 1002, "__interval": 1003}
_WINDOW_NAMES = {timedelta(seconds=s): f"${name}" for name, s in _WINDOWS.items()}
_DASHBOARD_VARIABLE = re.compile(r"^\$(\w+)$|^\$\{(\w+)(?::\w+)?\}$")
_LITERAL = re.compile(r"^[\w-]+$")


@dataclass
class Reading:
    """A query reduced to its meaning, and the dashboard variables each selector is filtered by
    (label -> variable)."""

    meaning: Meaning
    filters: list[dict[str, str]]


def read_query(expr: str) -> Reading:
    """What a panel's PromQL computes (Grafana's interval variables stand for themselves)."""
    builtins = {name: f"{seconds}s" for name, seconds in _WINDOWS.items()}
    node = promql_parser.parse(interpolate(expr, {}, PROMETHEUS, builtins))
    filters: list[dict[str, str]] = []
    return Reading(_meaning(node, filters), filters)


def _meaning(node: Any, filters: list[dict[str, str]]) -> Meaning:
    if isinstance(node, promql_parser.ParenExpr):
        return _meaning(node.expr, filters)
    if isinstance(node, promql_parser.NumberLiteral):
        return float(node.val)
    if isinstance(node, promql_parser.StringLiteral):
        return node.val
    if isinstance(node, promql_parser.VectorSelector):
        return _series(node, filters)
    if isinstance(node, promql_parser.MatrixSelector):
        window = _WINDOW_NAMES.get(node.range, promql_parser.display_duration(node.range))
        return Range(_series(node.vector_selector, filters), window)
    if isinstance(node, promql_parser.Call):
        return Call(node.func.name, tuple(_meaning(a, filters) for a in node.args))
    if isinstance(node, promql_parser.AggregateExpr):
        modifier = node.modifier
        if node.param is not None or (modifier and str(modifier.type).endswith("Without")):
            raise NotImplementedError(f"aggregation {node}")
        by = frozenset(modifier.labels) if modifier else frozenset()
        return Aggregate(str(node.op), by, _meaning(node.expr, filters))
    if isinstance(node, promql_parser.BinaryExpr):
        op = str(node.op)
        if node.modifier is not None and node.modifier.return_bool:
            raise NotImplementedError(f"bool modifier in {node}")
        lhs, rhs = _meaning(node.lhs, filters), _meaning(node.rhs, filters)
        if op == "or":
            return Either(_operands(lhs) | _operands(rhs))
        return Binary(op, lhs, rhs)
    raise NotImplementedError(f"PromQL construct {type(node).__name__}: {node}")


def _operands(meaning: Meaning) -> frozenset[Meaning]:
    return meaning.operands if isinstance(meaning, Either) else frozenset({meaning})


def _series(node: promql_parser.VectorSelector, filters: list[dict[str, str]]) -> Series:
    if node.offset is not None or node.at is not None or node.matchers.or_matchers:
        raise NotImplementedError(f"selector {node}")
    name = node.name
    fixed: set[tuple[str, Any]] = set()
    variables: dict[str, str] = {}
    for matcher in node.matchers.matchers:
        if matcher.name == "__name__":
            name = matcher.value
            continue
        variable = _DASHBOARD_VARIABLE.match(matcher.value)
        if variable:
            variables[matcher.name] = variable.group(1) or variable.group(2)
        else:
            fixed.add((matcher.name, _matched(matcher)))
    filters.append(variables)
    return Series(name, frozenset(fixed))


def _matched(matcher: promql_parser.Matcher) -> Any:
    op = str(matcher.op).removeprefix("MatchOp.")
    if op == "Equal":
        return float(matcher.value) if matcher.name == "le" else matcher.value
    if op == "Re" and all(_LITERAL.match(part) for part in matcher.value.split("|")):
        return frozenset(matcher.value.split("|"))
    return (op, matcher.value)


# --- building expectations -------------------------------------------------------------------

RATE_INTERVAL = "$__rate_interval"
TIME_RANGE = "$__range"  # the dashboard's whole time range


def series(metric: str, **where: Any) -> Series:
    return Series(
        metric,
        frozenset(
            (k, frozenset(v) if isinstance(v, set | frozenset) else v) for k, v in where.items()
        ),
    )


def rate(metric: str, window: str = RATE_INTERVAL, **where: Any) -> Call:
    return Call("rate", (Range(series(metric, **where), window),))


def increase(metric: str, window: str = RATE_INTERVAL, **where: Any) -> Call:
    return Call("increase", (Range(series(metric, **where), window),))


def sum_by(labels: str, of: Meaning) -> Aggregate:
    return Aggregate("sum", frozenset(labels.split()), of)


def ratio(numerator: Meaning, denominator: Meaning) -> Binary:
    return Binary("/", numerator, denominator)


def quantile(q: float, of: Meaning) -> Call:
    return Call("histogram_quantile", (q, of))


def absent(of: Series) -> Call:
    return Call("absent", (of,))


def either(*operands: Meaning) -> Either:
    return Either(frozenset(operands))


@dataclass(frozen=True)
class LogSearch:
    """An Elasticsearch logs panel: raw events, newest first. `examples`: the models chosen in
    $model, an event as indexed, and whether the panel lists it."""

    examples: tuple[tuple[tuple[str, ...], dict[str, Any], bool], ...]


@dataclass(frozen=True)
class Panel:
    title: str
    type: str
    unit: str | None
    lines: Mapping[str, Meaning]  # legend -> what that line computes
    filters: Mapping[str, str]  # label -> the dashboard variable every selector is filtered by
    format: str = "time_series"  # how Grafana reads the result (heatmap: de-cumulated buckets)
    logs: LogSearch | None = None


SPEC = spec_yaml()
MODELS = tuple(m["name"] for m in SPEC["models"])
THRESHOLD = float(SPEC["alerts"]["low_confidence"]["confidence_threshold"])
MODEL = {"model": "model"}
MODEL_AND_VERSION = {"model": "model", "model_version": "model_version"}

REQUESTS = "model_requests_total"
PREDICTIONS = "model_predictions_total"
LATENCY = "model_latency_seconds_bucket"
# 5xx: a server error or a shed request (README, observability.yaml's error_rate comment).
SERVER_ERRORS = {"server_error", "shed"}
# The feature drift counts the predicted labels under (mlobs.drift.baseline, README "Drift").
PREDICTION = "prediction"


def _latency(q: float) -> Call:
    return quantile(q, sum_by("model le", rate(LATENCY)))


INTENT: dict[str, dict[str, list[Panel]]] = {
    "ml-model-health": {
        "Traffic and errors": [
            Panel(
                "Request rate by outcome",
                "timeseries",
                "reqps",
                {"{{model}} {{status}}": sum_by("model status", rate(REQUESTS))},
                MODEL_AND_VERSION,
            ),
            Panel(
                "5xx ratio (server errors + shed)",
                "timeseries",
                "percentunit",
                {
                    "{{model}}": ratio(
                        sum_by("model", rate(REQUESTS, status=SERVER_ERRORS)),
                        sum_by("model", rate(REQUESTS)),
                    )
                },
                MODEL_AND_VERSION,
            ),
        ],
        "Latency and saturation": [
            Panel(
                "Latency p50 / p90 / p99",
                "timeseries",
                "s",
                {
                    "p50 {{model}}": _latency(0.5),
                    "p90 {{model}}": _latency(0.9),
                    "p99 {{model}}": _latency(0.99),
                },
                MODEL_AND_VERSION,
            ),
            Panel(
                "Requests in flight",
                "timeseries",
                "short",
                {"{{model}}": sum_by("model", series("model_requests_in_flight"))},
                MODEL,
            ),
            Panel(
                "Predictions running / queued",
                "timeseries",
                "short",
                {
                    "running {{model}}": sum_by("model", series("model_predictions_running")),
                    "queued {{model}}": sum_by("model", series("model_predictions_queued")),
                },
                MODEL,
            ),
        ],
        "Model behaviour": [
            Panel(
                "Prediction distribution",
                "bargauge",
                "percentunit",
                {
                    # Over the whole time range shown: each label's share of the predictions.
                    "{{model}} {{label}}": ratio(
                        sum_by("model label", increase(PREDICTIONS, TIME_RANGE)),
                        sum_by("model", increase(PREDICTIONS, TIME_RANGE)),
                    )
                },
                MODEL_AND_VERSION,
            ),
            Panel(
                "Confidence distribution",
                "heatmap",
                "short",
                {"{{le}}": sum_by("le", increase("model_confidence_bucket"))},
                MODEL_AND_VERSION,
                format="heatmap",
            ),
            Panel(
                "Low-confidence share",
                "timeseries",
                "percentunit",
                {
                    "{{model}}": ratio(
                        sum_by("model", rate("model_confidence_bucket", le=THRESHOLD)),
                        sum_by("model", rate("model_confidence_count")),
                    )
                },
                MODEL_AND_VERSION,
            ),
        ],
        "Scrape health and logs": [
            Panel(
                "Targets up",
                "stat",
                "short",
                {
                    # Per model, 0 rather than nothing once no target is left.
                    "{{job}} targets up": either(
                        sum_by("job", series("up", job=set(MODELS))),
                        Binary("*", either(*(absent(series("up", job=m)) for m in MODELS)), 0.0),
                    ),
                    "{{instance}}": series("up", job=set(MODELS)),
                },
                {},
            ),
            Panel(
                "Scrape duration",
                "timeseries",
                "s",
                {"{{instance}}": series("scrape_duration_seconds", job=set(MODELS))},
                {},
            ),
            Panel(
                "Recent low-confidence predictions",
                "logs",
                None,
                {},
                {},
                logs=LogSearch(
                    (
                        ((MODELS[0],), {"model": MODELS[0], "confidence": THRESHOLD}, True),
                        ((MODELS[0],), {"model": MODELS[0], "confidence": 0.0}, True),
                        ((MODELS[0],), {"model": MODELS[0], "confidence": THRESHOLD + 1e-3}, False),
                        ((MODELS[0],), {"model": MODELS[1], "confidence": 0.0}, False),
                        ((MODELS[0],), {"model": MODELS[0]}, False),
                        (MODELS, {"model": MODELS[1], "confidence": THRESHOLD}, True),
                    )
                ),
            ),
        ],
    },
    "ml-drift": {
        "Population stability": [
            Panel(
                "PSI per feature",
                "timeseries",
                "none",
                {"{{model}} {{feature}}": series("model_feature:psi")},
                MODEL,
            ),
            Panel(
                "Out-of-range share",
                "timeseries",
                "percentunit",
                {"{{model}} {{feature}}": series("model_feature:out_of_range_ratio")},
                MODEL,
            ),
        ],
        "Bins of the selected feature": [
            Panel(
                "Current vs baseline share per bin: $feature",
                "bargauge",
                "percentunit",
                {
                    "current {{bin}}": series("model_feature:bin_ratio"),
                    "baseline {{bin}}": series("model_feature:baseline_ratio"),
                },
                {"model": "model", "feature": "feature"},
            ),
        ],
        "Prediction drift": [
            Panel(
                "Prediction drift (PSI of the predicted label)",
                "timeseries",
                "none",
                {"{{model}}": series("model_feature:psi", feature=PREDICTION)},
                MODEL,
            ),
            Panel(
                "Predicted label share vs baseline",
                "timeseries",
                "percentunit",
                {
                    "{{model}} {{bin}}": series("model_feature:bin_ratio", feature=PREDICTION),
                    "{{model}} {{bin}} baseline": series(
                        "model_feature:baseline_ratio", feature=PREDICTION
                    ),
                },
                MODEL,
            ),
        ],
    },
}


# --- the generated dashboards ----------------------------------------------------------------


def _dashboards() -> dict[str, dict]:
    """Every generated dashboard by uid."""
    paths = [
        p for p in rendered() if p.parent == Path("grafana/dashboards") and p.suffix == ".json"
    ]
    boards = [generated_json(p) for p in paths]
    return {b["uid"]: b for b in boards}


def _sections(board: dict) -> set[tuple[str | None, str]]:
    """(row title, panel title) of every panel: a panel belongs to the row above it."""
    found, row = set(), None
    for panel in board["panels"]:
        if panel["type"] == "row":
            row = panel["title"]
        else:
            found.add((row, panel["title"]))
    return found


def _panel(uid: str, title: str) -> dict:
    matching = [p for p in _dashboards()[uid]["panels"] if p["title"] == title]
    assert len(matching) == 1, f"{uid}: {len(matching)} panels titled {title!r}"
    return matching[0]


def _intents() -> list[tuple[str, Panel]]:
    return [(uid, p) for uid, rows in INTENT.items() for panels in rows.values() for p in panels]


def test_every_panel_has_an_intent_and_every_intent_a_panel():
    boards = _dashboards()
    assert set(boards) == set(INTENT), "a dashboard without rows in INTENT, or a row without one"
    for uid, board in boards.items():
        titles = [p["title"] for p in board["panels"]]
        assert len(titles) == len(set(titles)), f"{uid}: titles must tell panels apart"
        written = {(row, p.title) for row, panels in INTENT[uid].items() for p in panels}
        actual = _sections(board)
        assert actual - written == set(), f"{uid}: panels without intent (row, title)"
        assert written - actual == set(), f"{uid}: intents without a panel (row, title)"


@pytest.mark.parametrize(
    ("uid", "intent"), _intents(), ids=lambda v: v.title if isinstance(v, Panel) else v
)
def test_panel_shows_what_its_title_says(uid: str, intent: Panel):
    panel = _panel(uid, intent.title)
    assert panel["type"] == intent.type
    assert panel.get("fieldConfig", {}).get("defaults", {}).get("unit") == intent.unit
    targets = panel.get("targets", [])
    prometheus = [t for t in targets if t["datasource"]["type"] == PROMETHEUS]
    assert len(prometheus) == len(intent.lines), "one query per line"
    drawn: dict[str, Meaning] = {}
    for target in prometheus:
        reading = read_query(target["expr"])
        drawn[target.get("legendFormat", "")] = reading.meaning
        for filters in reading.filters:
            assert filters == intent.filters, f"{target['expr']}: variables {filters}"
        assert target.get("format", "time_series") == intent.format, target["expr"]
    for legend, meaning in intent.lines.items():
        assert legend in drawn, f"no line {legend!r}; lines: {sorted(drawn)}"
        assert drawn[legend] == meaning, f"{legend!r}\n drawn: {drawn[legend]}\n meant: {meaning}"
    searches = [t for t in targets if t["datasource"]["type"] == ELASTICSEARCH]
    assert len(searches) == (1 if intent.logs else 0)
    if intent.logs:
        _assert_log_search(_dashboards()[uid], panel, searches[0], intent.logs)


def _assert_log_search(board: dict, panel: dict, target: dict, search: LogSearch) -> None:
    assert [m["type"] for m in target["metrics"]] == ["logs"], "raw events, not an aggregation"
    assert target["bucketAggs"] == []
    assert target["timeField"] == "@timestamp"
    assert panel["options"]["sortOrder"] == "Descending", "recent: newest first"
    [model] = [v for v in query_variables(board) if v.name == "model"]
    for chosen, event, listed in search.examples:
        selections = {"model": Selection(model, chosen, all=True)}
        query = interpolate(target["query"], selections, ELASTICSEARCH)
        assert lucene.matches(query, event) is listed, f"{query!r} on {event}: {not listed}"


# --- the reading itself, on queries whose meaning is known -------------------------------------


@pytest.mark.parametrize(
    ("promql", "meaning"),
    [
        (
            'histogram_quantile(0.99, sum(rate(x_bucket{m=~"$model"}[$__rate_interval])) by (le))',
            quantile(0.99, sum_by("le", rate("x_bucket"))),
        ),
        ("a or b or c", either(series("a"), series("b"), series("c"))),
        (
            'x{s=~"a|b", le="0.50"} / on (m) group_left y',
            ratio(series("x", s={"a", "b"}, le=0.5), series("y")),
        ),
        ('{__name__="x", s=~"a.*"}', Series("x", frozenset({("s", ("Re", "a.*"))}))),
        ("increase(x[5m])", Call("increase", (Range(series("x"), "5m"),))),
    ],
)
def test_queries_are_read_as_meant(promql: str, meaning: Meaning):
    assert read_query(promql).meaning == meaning


def test_variable_matchers_are_filters_not_fixed_labels():
    reading = read_query('x{model=~"${model}", feature="$feature", bin="1"}')
    assert reading.meaning == series("x", bin="1")
    assert reading.filters == [{"model": "model", "feature": "feature"}]
