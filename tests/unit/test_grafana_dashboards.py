"""The generated dashboards: official schemas, SDK round trip, PromQL that parses and reads only
series that the servers export or the rules record, thresholds that are the alert thresholds."""

from __future__ import annotations

import json
import re
from urllib.parse import unquote

import jsonschema
import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as dm

from mlobs.generate.expressions import recording_rules
from mlobs.generate.links import ERROR_RATIO_PANEL, LATENCY_PANEL, LOW_CONFIDENCE_PANEL, PSI_PANEL
from mlobs.spec import load_spec
from tests.conftest import REPO
from tests.support.generated import generated_json, generated_text, spec_yaml
from tests.support.grafana import (
    DASHBOARDS,
    dashboard,
    prometheus_queries,
    query_variables,
    schema_dir,
)
from tests.support.promql import metric_names

SPEC = load_spec(REPO / "observability.yaml")
# Series Prometheus itself attaches to every target.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds"}


def _validator(schema_file: str, definition: str | None = None) -> jsonschema.Validator:
    schema = json.loads((schema_dir() / schema_file).read_text())
    if definition is not None:
        schema = {**schema, "$ref": f"#/definitions/{definition}"}
    return jsonschema.Draft7Validator(schema)


def _errors(validator: jsonschema.Validator, instance) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(instance)
    ]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_validates_against_the_official_schema(path):
    assert _errors(_validator("dashboard.jsonschema.json"), dashboard(path)) == []


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panel_options_and_queries_validate_against_their_plugin_schemas(path):
    for panel in dashboard(path)["panels"]:
        if panel["type"] == "row":
            continue
        kind = panel["type"]
        assert _errors(_validator(f"{kind}.jsonschema.json", "Options"), panel["options"]) == [], (
            kind
        )
        custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom")
        if custom is not None:
            assert _errors(_validator(f"{kind}.jsonschema.json", "FieldConfig"), custom) == [], kind
        for target in panel["targets"]:
            plugin = target["datasource"]["type"]
            assert _errors(_validator(f"{plugin}.jsonschema.json"), target) == [], panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_round_trips_through_the_sdk_models(path):
    register_default_plugins()
    text = generated_text(path.relative_to(REPO))
    decoded = dm.Dashboard.from_json(json.loads(text))
    assert JSONEncoder(sort_keys=True, indent=2).encode(decoded) + "\n" == text


def test_every_dashboard_has_unique_panel_ids_and_says_it_is_generated():
    for path in DASHBOARDS:
        board = dashboard(path)
        assert "make generate" in board["description"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))  # units: tests/unit/test_panel_intent.py


def test_queries_read_only_exported_or_recorded_series(exposed):
    known = (
        {name for name, _ in exposed.series}
        | {r.record for r in recording_rules(SPEC)}
        | PROMETHEUS_SERIES
    )
    queries = prometheus_queries()
    assert len(queries) > 15
    for query in queries:
        names = metric_names(query.template)
        assert names, query.text
        assert names <= known, f"{query.panel}: unknown series {names - known}"


def test_every_exported_family_is_on_a_dashboard_or_in_a_rule(exposed):
    """A metric the servers export but nobody graphs or alerts on is invisible to the person on
    call (model_predictions_running/queued belong beside requests in flight)."""
    read = {name for query in prometheus_queries() for name in metric_names(query.template)}
    read |= {n for r in recording_rules(SPEC) for n in metric_names(r.expr)}
    for path in DASHBOARDS:
        for variable in query_variables(dashboard(path)):
            selector, _ = variable.label_values()
            read |= metric_names(selector.replace("$", ""))

    def family(name: str) -> str:
        return name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")

    # Ours, not the process and Python collectors every client exports.
    exported = {name for name, _ in exposed.series if name.startswith("model_")}
    assert {"model_predictions_running", "model_predictions_queued"} <= exported
    assert {family(n) for n in exported} - {family(n) for n in read} == set()


def _threshold_steps(uid: str, title: str) -> list[float]:
    board = generated_json(f"grafana/dashboards/{uid}.json")
    panel = next(p for p in board["panels"] if p["title"] == title)
    assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"
    return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]]


def test_threshold_lines_are_the_alert_thresholds():
    a = spec_yaml()["alerts"]  # observability.yaml as written, not as mlobs.spec reads it
    assert _threshold_steps("ml-model-health", ERROR_RATIO_PANEL) == [
        a["error_rate"]["threshold_ratio"]
    ]
    assert _threshold_steps("ml-model-health", LATENCY_PANEL) == [a["latency"]["threshold_seconds"]]
    assert _threshold_steps("ml-model-health", LOW_CONFIDENCE_PANEL) == [
        a["low_confidence"]["max_share"]
    ]
    assert _threshold_steps("ml-drift", PSI_PANEL) == [a["drift"]["psi_threshold"]]


# Kibana Discover's app state in a URL (rison): a data view and a query.
_DISCOVER = re.compile(
    r"/app/discover#/\?_g=\(time:\(from:now-1h,to:now\)\)"
    r"&_a=\(dataSource:\(dataViewId:'(?P<view>[^']*)',type:dataView\),"
    r"query:\(language:(?P<language>\w+),query:'(?P<query>[^']*)'\)\)"
)


def test_model_panels_link_to_kibana_filtered_by_model():
    """A click on a model's series opens Discover on the inference data view with a KQL query
    for that model's events (Grafana puts the series' `model` label into the link)."""
    board = generated_json("grafana/dashboards/ml-model-health.json")
    links = [
        link["url"]
        for panel in board["panels"]
        for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links", [])
    ]
    assert links
    [data_view] = [
        json.loads(line)
        for line in generated_text("kibana/saved-objects.ndjson").splitlines()
        if json.loads(line)["type"] == "index-pattern"
    ]
    kibana_url = spec_yaml()["kibana_url"]
    for url in links:
        assert url.startswith(kibana_url), url
        opened = _DISCOVER.fullmatch(url.removeprefix(kibana_url))
        assert opened is not None, url
        assert opened["view"] == data_view["id"]
        assert opened["language"] == "kuery"
        clicked = opened["query"].replace("${__field.labels.model}", "chatbot")
        assert unquote(clicked) == 'model:"chatbot"'


def test_logs_panel_reads_log_events_from_elasticsearch():
    """Which events it selects is checked in test_grafana_interpolation (every model, with
    Grafana's variable interpolation) and test_low_confidence_definition (at or below the
    threshold)."""
    board = dashboard(REPO / "grafana/dashboards/ml-model-health.json")
    [panel] = [p for p in board["panels"] if p["type"] == "logs"]
    [target] = panel["targets"]
    assert target["datasource"]["uid"] == "elasticsearch"
    assert target["metrics"][0]["type"] == "logs"
