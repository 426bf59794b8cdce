"""Every alert links to the dashboard that explains it, at the panel a user must look at: the
table below says which, from README's "Alerts" and "Grafana" sections, not from the generator's
own table (mlobs.generate.links), so a link to the wrong dashboard or panel fails here. The
linked panel reads the alert's series (through the recording rules), and the dashboard receives
the alert's labels as its variables. ModelFeatureDriftHigh used to link ml-model-health, which
has no drift panel."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.support.generated import generated_json, generated_yaml, rendered, spec_yaml
from tests.support.grafana import PROMETHEUS, alert_rules, panel_queries, query_variables
from tests.support.promql import raw_metric_names


class Link(NamedTuple):
    """Where an alert's link must land: a dashboard, the panel that explains the alert there, and
    the alert labels that select what the panel shows (the dashboard variables of the same name)."""

    dashboard: str
    panel: str
    variables: tuple[str, ...]


HEALTH, DRIFT = "ml-model-health", "ml-drift"
EXPECTED = {
    "ModelP99LatencyHigh": Link(HEALTH, "Latency p50 / p90 / p99", ("model",)),
    "ModelErrorRateHigh": Link(HEALTH, "5xx ratio (server errors + shed)", ("model",)),
    "ModelFeatureDriftHigh": Link(DRIFT, "PSI per feature", ("model", "feature")),
    "ModelLowConfidence": Link(HEALTH, "Low-confidence share", ("model",)),
    # A target that cannot be scraped, or none at all: "Targets up" per model shows 0 for both.
    "ModelServerDown": Link(HEALTH, "Targets up", ("model",)),
    "ModelServerMissing": Link(HEALTH, "Targets up", ("model",)),
    "ModelNoTraffic": Link(HEALTH, "Request rate by outcome", ("model",)),
}
# README: Grafana's own alert rules (p99 latency, 5xx ratio, PSI), titled as the alerts.
GRAFANA_RULES = ("ModelP99LatencyHigh", "ModelErrorRateHigh", "ModelFeatureDriftHigh")


def _recorded() -> dict[str, str]:
    """record -> its expression, from the rendered recording rules."""
    return {
        rule["record"]: rule["expr"]
        for group in generated_yaml("prometheus/rules/recording.yml")["groups"]
        for rule in group["rules"]
    }


def _board(uid: str) -> dict:
    path = Path(f"grafana/dashboards/{uid}.json")
    assert path in rendered(), f"no dashboard with uid {uid}"
    return generated_json(path)


def _panel_series(board: dict, title: str) -> set[str]:
    """The exported series the Prometheus queries of the panel with this title read."""
    queries = [q for q in panel_queries(board) if q.panel == title]
    assert queries, f"{board['uid']} has no panel {title!r} with queries"
    return {
        name
        for query in queries
        if query.datasource == PROMETHEUS
        for name in raw_metric_names(query.template, _recorded())
    }


def _prometheus_alerts() -> dict[str, dict]:
    groups = generated_yaml("prometheus/rules/alerts.yml")["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def _alert_labels() -> dict[str, set[str]]:
    """The labels each alert fires with, from its promtool tests."""
    tests = generated_yaml("prometheus/tests/alerts.test.yml")["tests"]
    labels: dict[str, set[str]] = {}
    for case in tests:
        for check in case.get("alert_rule_test", []):
            for alert in check["exp_alerts"]:
                labels.setdefault(check["alertname"], set()).update(alert["exp_labels"])
    return labels


def test_the_table_covers_every_alert_and_grafana_rule():
    """A new alert needs its line above."""
    assert set(_prometheus_alerts()) == set(EXPECTED)
    assert sorted(rule["title"] for rule in alert_rules()) == sorted(GRAFANA_RULES)


@pytest.mark.parametrize("name", EXPECTED)
def test_prometheus_alert_links_its_dashboard_with_its_panel_and_labels(name):
    expected = EXPECTED[name]
    alert = _prometheus_alerts()[name]
    url = urlsplit(alert["annotations"]["dashboard"])
    assert f"{url.scheme}://{url.netloc}" == spec_yaml()["grafana_url"].rstrip("/")
    assert url.path == f"/d/{expected.dashboard}"
    board = _board(expected.dashboard)
    series = raw_metric_names(alert["expr"], _recorded())
    panel = expected.panel
    assert _panel_series(board, panel) & series, f"{panel} does not read {sorted(series)}"
    # The alert's own labels, as Prometheus fills the template in, select the variables.
    assert parse_qsl(url.query) == [
        (f"var-{label}", f"{{{{ $labels.{label} }}}}") for label in expected.variables
    ]
    variables = {v.name for v in query_variables(board)}
    fired_with = _alert_labels()[name]
    assert set(expected.variables) <= variables & fired_with
    # Every dashboard variable the alert has a label for is filled in (the drift dashboard's
    # feature, not only the model).
    assert variables & fired_with <= set(expected.variables)


@pytest.mark.parametrize("name", GRAFANA_RULES)
def test_grafana_rule_links_the_panel_of_its_series(name):
    expected = EXPECTED[name]
    [rule] = [rule for rule in alert_rules() if rule["title"] == name]
    assert rule["annotations"]["__dashboardUid__"] == expected.dashboard
    board = _board(expected.dashboard)
    [panel] = [p for p in board["panels"] if str(p["id"]) == rule["annotations"]["__panelId__"]]
    assert panel["title"] == expected.panel
    query = next(q for q in rule["data"] if q["datasourceUid"] == PROMETHEUS)
    series = raw_metric_names(query["model"]["expr"], _recorded())
    assert _panel_series(board, panel["title"]) & series, panel["title"]
