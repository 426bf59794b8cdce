"""Every panel query, with the dashboards' default variable values substituted the way Grafana 12.2
does for its datasource (tests/support/grafana.py cites the source), is valid PromQL or Lucene and
selects the data of every model. A custom all-value such as `.*`, substituted unescaped into
Lucene, gave `model:.*` and an empty logs panel until someone picked a model; reading a dashboard
with an `allValue` now raises here, so that fails these tests."""

from __future__ import annotations

import dataclasses
import re

import promql_parser
import pytest

from mlobs.generate.expressions import recording_rules
from mlobs.spec import load_spec
from tests.conftest import REPO, Exposed
from tests.support import lucene
from tests.support.grafana import (
    DASHBOARDS,
    ELASTICSEARCH,
    PROMETHEUS,
    PanelQuery,
    Selection,
    dashboard,
    default_selections,
    panel_queries,
    series_lookup,
)
from tests.support.promql import matcher_selects, vector_selectors

SPEC = load_spec(REPO / "observability.yaml")
RECORDED = {r.record: r.expr for r in recording_rules(SPEC)}
SENTINEL = "__grafana_variable_{}__"
# Grafana leaves an unknown $name as it is ("$1" in label_replace is a regex group), and
# tests/support/grafana.py does not interpolate the deprecated [[name]] form.
UNRESOLVED = re.compile(r"\$\{?[A-Za-z_]\w*|\[\[\w")


def _selections(board: dict, exposed: Exposed) -> dict[str, Selection]:
    return default_selections(board, series_lookup(exposed.series, RECORDED))


def _boards_and_queries() -> list[tuple[dict, PanelQuery]]:
    return [(board, q) for board in map(dashboard, DASHBOARDS) for q in panel_queries(board)]


def test_default_values_are_all_models_and_the_first_feature(exposed):
    """Grafana's defaults: "All" where the variable offers it, otherwise the first option."""
    models = sorted(m.name for m in SPEC.models)
    for board in map(dashboard, DASHBOARDS):
        selections = _selections(board, exposed)
        assert selections["model"].all and list(selections["model"].options) == models
        assert selections["model"].value() == models
    drift = dashboard(REPO / "grafana/dashboards/ml-drift.json")
    feature = _selections(drift, exposed)["feature"]
    assert not feature.all and feature.values == feature.options[:1] and feature.options


@pytest.mark.parametrize(
    ("board", "query"), _boards_and_queries(), ids=[q.name for _, q in _boards_and_queries()]
)
def test_every_panel_query_is_valid_with_the_default_values(board, query, exposed):
    text = query.interpolated(_selections(board, exposed))
    # A misspelt variable would reach the datasource as it is.
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
        template = vector_selectors(dataclasses.replace(query, text=marked).template)
        for marks, selector in zip(template, real, strict=True):
            for source, matcher in zip(
                marks.matchers.matchers, selector.matchers.matchers, strict=True
            ):
                for name, selection in selections.items():
                    if SENTINEL.format(name) not in source.value:
                        continue
                    rejected = [v for v in selection.values if not matcher_selects(matcher, v)]
                    assert not rejected, f"{query.name}: {matcher.value!r} rejects {rejected}"
                    checked += 1
    assert checked > 15


def test_elasticsearch_queries_select_low_confidence_events_of_every_model(exposed):
    """With the defaults, the Lucene queries select a low-confidence event of every model. Where
    the confidence boundary lies is test_low_confidence_definition's."""
    queries = [(b, q) for b, q in _boards_and_queries() if q.datasource == ELASTICSEARCH]
    assert queries
    # One real inference event per model, with a confidence every definition calls low.
    events = {e["model"]: {**e, "confidence": 0.0} for e in exposed.events}
    assert set(events) == {m.name for m in SPEC.models}
    for board, query in queries:
        text = query.interpolated(_selections(board, exposed))
        for model, event in events.items():
            assert lucene.matches(text, event), f"{query.name}: {text!r} misses {model}"
