"""Every panel query, with the dashboards' default variable values substituted the way Grafana 12.2
does for its datasource (tests/support/grafana.py cites the source), is valid PromQL or Lucene and
selects the data of every model. A custom all-value such as `.*`, substituted unescaped into
Lucene, gave `model:.*` and an empty logs panel until someone picked a model."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import promql_parser
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mlobs.generate.expressions import recording_rules
from mlobs.logs import flush_logs
from mlobs.server import create_app
from mlobs.settings import Settings
from mlobs.spec import load_spec
from tests.conftest import REPO
from tests.support import lucene
from tests.support.grafana import (
    DASHBOARDS,
    ELASTICSEARCH,
    PROMETHEUS,
    Labels,
    PanelQuery,
    Selection,
    Variable,
    dashboard,
    default_selection,
    default_selections,
    interpolate,
    matcher_selects,
    panel_queries,
    series_lookup,
)
from tests.support.promql import metric_names, vector_selectors
from tests.unit.test_server_contract import ANOMALY_BODY, CHAT_BODY

SPEC = load_spec(REPO / "observability.yaml")
THRESHOLD = SPEC.alerts.low_confidence.confidence_threshold
SENTINEL = "__grafana_variable_{}__"
UNRESOLVED = re.compile(r"\$\{?[A-Za-z_]\w*")  # "$1" in label_replace is a regex group


@dataclass(frozen=True)
class Exposed:
    """What real model servers expose: their /metrics series and their inference log events."""

    series: list[tuple[str, Labels]]
    events: list[dict]


@pytest.fixture(scope="module")
def exposed(tmp_path_factory, anomaly_model, chatbot_model) -> Exposed:
    log_file = tmp_path_factory.mktemp("interpolation") / "inference.log"
    series: list[tuple[str, Labels]] = []
    for model, body in ((anomaly_model, ANOMALY_BODY), (chatbot_model, CHAT_BODY)):
        app = create_app(model, Settings(log_file=log_file))
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.post("/predict", json=body).status_code == 200
            text = client.get("/metrics").text
        series += [
            (s.name, s.labels) for f in text_string_to_metric_families(text) for s in f.samples
        ]
    flush_logs()
    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    return Exposed(series, [e for e in events if e.get("message") == "inference"])


def _selections(board: dict, exposed: Exposed) -> dict[str, Selection]:
    recorded = {r.record: metric_names(r.expr) for r in recording_rules(SPEC)}
    return default_selections(board, series_lookup(exposed.series, recorded))


def _boards_and_queries() -> list[tuple[dict, PanelQuery]]:
    return [(board, q) for board in map(dashboard, DASHBOARDS) for q in panel_queries(board)]


def test_default_values_are_all_models_and_the_first_feature(exposed):
    """Grafana's defaults: "All" where the variable offers it, otherwise the first option."""
    models = sorted(m.name for m in SPEC.models)
    for board in map(dashboard, DASHBOARDS):
        selections = _selections(board, exposed)
        assert selections["model"].all and list(selections["model"].options) == models
        assert selections["model"].value() == models  # every option: no custom all-value
    drift = dashboard(REPO / "grafana/dashboards/ml-drift.json")
    feature = _selections(drift, exposed)["feature"]
    assert not feature.all and feature.values == feature.options[:1] and feature.options


def test_a_custom_all_value_is_substituted_unescaped_and_lists_are_escaped_per_datasource():
    """The mechanism of the defect, on Grafana's own rules."""
    model = Variable("model", "label_values(model_info, model)", True, True, None, None, 1)
    both = {"model": default_selection(model, ["chatbot", "anomaly-detector"])}
    assert (
        interpolate('x{model=~"$model"}', both, PROMETHEUS)
        == 'x{model=~"(anomaly-detector|chatbot)"}'
    )
    assert interpolate("model:${model:lucene}", both, ELASTICSEARCH) == (
        'model:("anomaly\\-detector" OR "chatbot")'
    )
    custom = Variable("model", model.query, True, True, ".*", None, 1)
    star = {"model": default_selection(custom, ["chatbot"])}
    assert interpolate("model:${model:lucene}", star, ELASTICSEARCH) == "model:.*"
    version = Variable("v", "label_values(model_info, model_version)", True, True, None, None, 1)
    one = {"v": default_selection(version, ["1.0.0"])}
    assert interpolate('x{v=~"$v"}', one, PROMETHEUS) == 'x{v=~"1\\\\.0\\\\.0"}'


@pytest.mark.parametrize(
    ("board", "query"), _boards_and_queries(), ids=[q.name for _, q in _boards_and_queries()]
)
def test_every_panel_query_is_valid_with_the_default_values(board, query, exposed):
    text = query.interpolated(_selections(board, exposed))
    # Grafana leaves an unknown $name as it is: a misspelt variable would reach the datasource.
    assert not UNRESOLVED.findall(text), f"{query.name}: no such variable in {text}"
    try:
        if query.datasource == PROMETHEUS:
            promql_parser.parse(text)
        else:
            lucene.parse(text)
    except Exception as exc:  # both parsers raise their own error types
        pytest.fail(f"{query.name}: {exc}\n{text}")


def test_promql_matchers_select_every_value_of_their_variable(exposed):
    """Each label matcher built from a variable accepts every value the default selects (for
    "All": every option), once Grafana has escaped it for PromQL."""
    checked = 0
    for board, query in _boards_and_queries():
        if query.datasource != PROMETHEUS:
            continue
        selections = _selections(board, exposed)
        # The same query with each variable as a marker shows which matcher came from which.
        marked = query.text
        for name in sorted(selections, key=len, reverse=True):  # $model_version before $model
            marked = marked.replace(f"${name}", SENTINEL.format(name))
        real = vector_selectors(query.interpolated(selections))
        template = vector_selectors(interpolate(marked, {}, PROMETHEUS))
        for marks, selector in zip(template, real, strict=True):
            for source, matcher in zip(
                marks.matchers.matchers, selector.matchers.matchers, strict=True
            ):
                for name, selection in selections.items():
                    if SENTINEL.format(name) not in source.value:
                        continue
                    values = selection.options if selection.all else selection.values
                    rejected = [v for v in values if not matcher_selects(matcher, v)]
                    assert not rejected, f"{query.name}: {matcher.value!r} rejects {rejected}"
                    checked += 1
    assert checked > 15


def _events_at(exposed: Exposed, confidence: float) -> dict[str, dict]:
    """One real inference event per model, its confidence set to `confidence`."""
    events = {e["model"]: {**e, "confidence": confidence} for e in exposed.events}
    assert set(events) == {m.name for m in SPEC.models}
    return events


def test_elasticsearch_queries_select_low_confidence_events_of_every_model(exposed):
    """With the defaults, the Lucene queries select the events of every model at the threshold
    (low confidence is "at or below" it, as Prometheus' le bucket counts) and none above it."""
    queries = [(b, q) for b, q in _boards_and_queries() if q.datasource == ELASTICSEARCH]
    assert queries
    at, above = _events_at(exposed, THRESHOLD), _events_at(exposed, THRESHOLD + 0.01)
    for board, query in queries:
        text = query.interpolated(_selections(board, exposed))
        for model, event in at.items():
            assert lucene.matches(text, event), f"{query.name}: {text!r} misses {model}"
        for event in above.values():
            assert not lucene.matches(text, event), f"{query.name}: {text!r} selects {event}"
