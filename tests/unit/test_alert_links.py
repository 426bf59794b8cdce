"""Every alert links to a dashboard that explains it: the linked dashboard exists, the panel that
mlobs.generate.links names for the alert is on it and reads the alert's series (through the
recording rules), and the dashboard receives the alert's labels as its variables.
ModelFeatureDriftHigh used to link ml-model-health, which has no drift panel."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from mlobs.generate.links import ALERT_PANELS
from mlobs.spec import load_spec
from tests.conftest import REPO
from tests.support.generated import generated_json, generated_yaml, rendered
from tests.support.grafana import PROMETHEUS, alert_rules, panel_queries, query_variables
from tests.support.promql import raw_metric_names

SPEC = load_spec(REPO / "observability.yaml")
# record -> its expression, from the rendered recording rules.
RECORDED = {
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
        for name in raw_metric_names(query.template, RECORDED)
    }


def _prometheus_alerts() -> list[dict]:
    groups = generated_yaml("prometheus/rules/alerts.yml")["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _alert_labels() -> dict[str, set[str]]:
    """The labels each alert fires with, from its promtool tests."""
    tests = generated_yaml("prometheus/tests/alerts.test.yml")["tests"]
    labels: dict[str, set[str]] = {}
    for case in tests:
        for check in case.get("alert_rule_test", []):
            for alert in check["exp_alerts"]:
                labels.setdefault(check["alertname"], set()).update(alert["exp_labels"])
    return labels


@pytest.mark.parametrize("alert", _prometheus_alerts(), ids=lambda a: a["alert"])
def test_prometheus_alert_links_a_dashboard_with_its_panel_and_labels(alert):
    url = urlsplit(alert["annotations"]["dashboard"])
    assert f"{url.scheme}://{url.netloc}" == SPEC.grafana_url
    assert url.path.startswith("/d/")
    board = _board(url.path.removeprefix("/d/"))
    series = raw_metric_names(alert["expr"], RECORDED)
    panel = ALERT_PANELS[alert["alert"]].panel
    assert _panel_series(board, panel) & series, f"{panel} does not read {sorted(series)}"
    variables = {v.name for v in query_variables(board)}
    fired_with = _alert_labels()[alert["alert"]]
    for key, value in parse_qsl(url.query):
        assert key.startswith("var-") and key.removeprefix("var-") in variables, key
        label = value.removeprefix("{{ $labels.").removesuffix(" }}")
        assert value == f"{{{{ $labels.{label} }}}}" and label in fired_with, value
    # Every dashboard variable the alert has a label for is filled in (the drift dashboard's
    # feature, not only the model).
    passed = {k.removeprefix("var-") for k, _ in parse_qsl(url.query)}
    assert variables & fired_with <= passed


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["title"])
def test_grafana_rule_links_the_panel_of_its_series(rule):
    board = _board(rule["annotations"]["__dashboardUid__"])
    [panel] = [p for p in board["panels"] if str(p["id"]) == rule["annotations"]["__panelId__"]]
    query = next(q for q in rule["data"] if q["datasourceUid"] == PROMETHEUS)
    series = raw_metric_names(query["model"]["expr"], RECORDED)
    assert _panel_series(board, panel["title"]) & series, panel["title"]
