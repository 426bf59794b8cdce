"""Grafana provisioning files obey the rules whose violation makes Grafana exit at start, and the
Grafana alert rules match the Prometheus alerts (same queries, thresholds, `for`, severity)."""

from __future__ import annotations

import re

import promql_parser
import yaml

from mlobs.generate.expressions import alerts
from mlobs.spec import duration_seconds, load_spec
from tests.conftest import REPO
from tests.support.grafana import ALERTING, DATASOURCES, alert_rules

SPEC = load_spec(REPO / "observability.yaml")
GRAFANA_ALERTS = {"ModelP99LatencyHigh", "ModelErrorRateHigh", "ModelFeatureDriftHigh"}
UID = re.compile(r"^[a-zA-Z0-9_-]{1,40}$")


def _yaml(name: str) -> dict:
    return yaml.safe_load((ALERTING / name).read_text())


def _groups() -> list[dict]:
    return _yaml("alert-rules.yml")["groups"]


def _datasources() -> list[dict]:
    return yaml.safe_load(DATASOURCES.read_text())["datasources"]


def test_files_declare_api_version_1():
    for name in ("alert-rules.yml", "contact-points.yml", "policies.yml"):
        assert _yaml(name)["apiVersion"] == 1
    assert yaml.safe_load(DATASOURCES.read_text())["apiVersion"] == 1


def test_group_interval_is_a_positive_multiple_of_ten_seconds():
    for group in _groups():
        seconds = duration_seconds(group["interval"])
        assert seconds > 0 and seconds % 10 == 0


def test_folder_is_a_title_and_differs_from_the_dashboard_folder():
    providers = yaml.safe_load(
        (REPO / "grafana/provisioning/dashboards/dashboards.yml").read_text()
    )["providers"]
    for group in _groups():
        assert isinstance(group["folder"], str) and group["folder"].strip()
        assert group["folder"] not in {p.get("folder") for p in providers}


def test_rules_have_the_required_fields():
    for rule in alert_rules():
        for key in ("uid", "title", "condition", "data"):
            assert rule.get(key), f"{rule.get('title')}: {key} missing"


def test_rule_uids_fit_grafanas_limits_and_uids_and_titles_are_unique():
    rules = alert_rules()
    assert all(UID.match(r["uid"]) for r in rules)
    assert len({r["uid"] for r in rules}) == len({r["title"] for r in rules}) == len(rules)


def test_relative_time_ranges_are_integer_seconds():
    for rule in alert_rules():
        for query in rule["data"]:
            span = query["relativeTimeRange"]
            assert isinstance(span["from"], int) and isinstance(span["to"], int)
            if query["datasourceUid"] != "__expr__":
                assert span["from"] > span["to"] >= 0


def test_every_rule_sets_for_and_valid_states():
    for rule in alert_rules():
        assert duration_seconds(rule["for"]) >= 0
        assert rule["noDataState"] in {"NoData", "Alerting", "OK", "KeepLast"}
        assert rule["execErrState"] in {"Alerting", "Error", "OK", "KeepLast"}


def test_condition_and_expression_inputs_refer_to_existing_ref_ids():
    for rule in alert_rules():
        refs = [q["refId"] for q in rule["data"]]
        assert len(refs) == len(set(refs))
        assert rule["condition"] in refs
        for query in rule["data"]:
            if query["datasourceUid"] == "__expr__":
                assert query["model"]["expression"] in refs


def test_queries_use_provisioned_datasource_uids():
    provisioned = {d["uid"] for d in _datasources()} | {"__expr__"}
    for rule in alert_rules():
        assert {q["datasourceUid"] for q in rule["data"]} <= provisioned


def test_exactly_one_default_datasource_and_valid_uids():
    datasources = _datasources()
    assert [d["uid"] for d in datasources if d.get("isDefault")] == ["prometheus"]
    assert {d["uid"] for d in datasources} == {"prometheus", "elasticsearch", "alertmanager"}
    assert all(UID.match(d["uid"]) for d in datasources)


def test_elasticsearch_datasource_is_current_and_keeps_secrets_out_of_the_file():
    [es] = [d for d in _datasources() if d["type"] == "elasticsearch"]
    assert es["jsonData"]["index"].startswith("logs-mlobs.inference")
    assert es["jsonData"]["timeField"] == "@timestamp"
    assert "database" not in es and "esVersion" not in es["jsonData"]  # obsolete in Grafana 12
    assert es["basicAuth"] is True
    assert re.fullmatch(r"\$\{\w+\}", es["basicAuthUser"])
    assert re.fullmatch(r"\$\{\w+\}", es["secureJsonData"]["basicAuthPassword"])


def test_contact_point_and_policy_agree_and_deliver_to_alert_sink():
    [point] = _yaml("contact-points.yml")["contactPoints"]
    [receiver] = point["receivers"]
    assert UID.match(receiver["uid"]) and receiver["type"] == "webhook"
    assert receiver["settings"]["url"] == "http://alert-sink:8080/grafana"
    # One policy per org: a provisioned policy replaces the whole tree.
    [policy] = _yaml("policies.yml")["policies"]
    assert policy["receiver"] == point["name"]
    assert "model" in policy["group_by"]


def test_grafana_rules_match_the_prometheus_alerts():
    prometheus = {a.name: a for a in alerts(SPEC)}
    rules = {r["title"]: r for r in alert_rules()}
    assert set(rules) == GRAFANA_ALERTS
    for name, rule in rules.items():
        alert = prometheus[name]
        data = {q["refId"]: q for q in rule["data"]}
        assert data["A"]["model"]["expr"] == alert.query
        promql_parser.parse(data["A"]["model"]["expr"])
        threshold = data[rule["condition"]]["model"]["conditions"][0]["evaluator"]
        assert threshold == {"type": "gt", "params": [alert.threshold]} and alert.op == ">"
        assert rule["for"] == alert.for_
        assert rule["labels"]["severity"] == alert.severity
        assert rule["annotations"]["summary"] == alert.summary


def test_rules_link_to_an_existing_dashboard_panel():
    import json

    for rule in alert_rules():
        uid = rule["annotations"]["__dashboardUid__"]
        board = json.loads((REPO / f"grafana/dashboards/{uid}.json").read_text())
        ids = {str(p["id"]) for p in board["panels"]}
        assert rule["annotations"]["__panelId__"] in ids
