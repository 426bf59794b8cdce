"""Grafana provisioning files obey the rules whose violation makes Grafana exit at start (or log an
error at every start: a provisioning folder it reads is missing), the Grafana alert rules match
the Prometheus alerts (same queries, thresholds, `for`, severity), and the logs show a readable
line."""

from __future__ import annotations

import json
import re

import promql_parser
import pytest
import yaml

from mlobs.generate.grafana_alerting import panel_id, rule_uid
from mlobs.generate.kibana_objects import DATA_VIEW_ID
from mlobs.spec import duration_seconds, load_spec
from tests.conftest import REPO
from tests.support.generated import generated_json, generated_yaml
from tests.support.grafana import DATASOURCES, alert_rules
from tests.support.http import log_events
from tests.support.promql import metric_names
from tests.unit.test_server_contract import ANOMALY_BODY, CHAT_BODY

SPEC = load_spec(REPO / "observability.yaml")
GRAFANA_ALERTS = {"ModelP99LatencyHigh", "ModelErrorRateHigh", "ModelFeatureDriftHigh"}
UID = re.compile(r"^[a-zA-Z0-9_-]{1,40}$")


def _yaml(name: str) -> dict:
    return generated_yaml(f"grafana/provisioning/alerting/{name}")


def _groups() -> list[dict]:
    return _yaml("alert-rules.yml")["groups"]


def _datasources() -> list[dict]:
    return yaml.safe_load(DATASOURCES.read_text())["datasources"]


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


def test_rule_uids_fit_grafanas_limits_and_uids_and_titles_are_unique():
    rules = alert_rules()
    assert all(UID.match(r["uid"]) for r in rules)
    assert len({r["uid"] for r in rules}) == len({r["title"] for r in rules}) == len(rules)


def test_an_alert_with_a_long_name_still_gets_a_uid_grafana_accepts():
    """A team's own alert named at length: the uid is cut to Grafana's 40 characters."""
    uid = rule_uid("ModelPredictionConfidenceBelowThresholdForTooLong")
    assert UID.match(uid) and len(uid) == 40


def test_a_link_to_a_missing_panel_names_the_title_when_generating():
    dashboard = json.dumps({"panels": [{"id": 1, "title": "Error rate"}]})
    assert panel_id(dashboard, "Error rate") == 1
    with pytest.raises(KeyError, match="no panel titled 'PSI per feature'"):
        panel_id(dashboard, "PSI per feature")


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


def _prometheus_alerts() -> dict[str, dict]:
    groups = generated_yaml("prometheus/rules/alerts.yml")["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def _unparenthesized(expr: promql_parser.Expr) -> promql_parser.Expr:
    while isinstance(expr, promql_parser.ParenExpr):
        expr = expr.expr
    return expr


def test_grafana_rules_fire_when_the_prometheus_alerts_of_the_same_name_do():
    """A Prometheus alert is `<query> > <threshold>`; its Grafana twin must query the same
    expression and compare it with the same threshold, for as long, with the same severity and
    summary. (That the values are the spec's: tests/unit/test_spec_fields.py.)"""
    prometheus = _prometheus_alerts()
    rules = {r["title"]: r for g in _groups() for r in g["rules"]}
    assert set(rules) == GRAFANA_ALERTS
    for name, rule in rules.items():
        alert = prometheus[name]
        comparison = promql_parser.parse(alert["expr"])
        assert isinstance(comparison, promql_parser.BinaryExpr) and str(comparison.op) == ">"
        data = {q["refId"]: q for q in rule["data"]}
        query = promql_parser.parse(data["A"]["model"]["expr"])
        assert query.prettify() == _unparenthesized(comparison.lhs).prettify(), name
        # A -> reduce to the last value -> threshold: what the condition reads.
        assert (data["B"]["model"]["type"], data["B"]["model"]["expression"]) == ("reduce", "A")
        assert data["B"]["model"]["reducer"] == "last"
        condition = data[rule["condition"]]["model"]
        assert (condition["type"], condition["expression"]) == ("threshold", "B")
        [threshold] = condition["conditions"]
        assert threshold["evaluator"] == {"type": "gt", "params": [comparison.rhs.val]}, name
        assert rule["for"] == alert["for"]
        assert rule["labels"]["severity"] == alert["labels"]["severity"]
        assert rule["annotations"]["summary"] == alert["annotations"]["summary"]


def test_rules_link_to_an_existing_dashboard_panel():
    for rule in alert_rules():
        uid = rule["annotations"]["__dashboardUid__"]
        board = json.loads((REPO / f"grafana/dashboards/{uid}.json").read_text())
        ids = {str(p["id"]) for p in board["panels"]}
        assert rule["annotations"]["__panelId__"] in ids


# Every folder Grafana 12.2 reads under its provisioning path: grafana/grafana v12.2.x
# pkg/services/provisioning/provisioning.go joins ProvisioningPath with these four. A missing
# plugins/ is logged at level=error on every start (pkg/services/provisioning/plugins/
# config_reader.go, "Failed to read plugin provisioning files from directory").
PROVISIONING = REPO / "grafana/provisioning"
PROVISIONING_FOLDERS = ("datasources", "plugins", "dashboards", "alerting")
CONTAINER_PROVISIONING = "/etc/grafana/provisioning"  # the image's GF_PATHS_PROVISIONING


def test_every_provisioning_folder_grafana_reads_exists_with_a_file():
    for folder in PROVISIONING_FOLDERS:
        files = sorted((PROVISIONING / folder).glob("*.yml"))
        # git keeps no empty folder: without a file the folder is missing in every clone.
        assert files, f"grafana/provisioning/{folder}/ has no .yml file"
        for path in files:
            assert yaml.safe_load(path.read_text())["apiVersion"] == 1, path


def _grafana_mounts() -> dict[str, str]:
    """Container path -> host path of the grafana service's bind mounts in docker-compose.yml."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = {}
    for volume in compose["services"]["grafana"]["volumes"]:
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume["source"]
        else:
            host, container, *_ = volume.split(":")
            mounts[container] = host
    return mounts


def test_compose_mounts_every_provisioning_folder():
    mounts = _grafana_mounts()
    for folder in PROVISIONING_FOLDERS:
        direct = mounts.get(f"{CONTAINER_PROVISIONING}/{folder}")
        parent = mounts.get(CONTAINER_PROVISIONING)
        host = direct or (f"{parent}/{folder}" if parent else None)
        assert host, f"compose mounts nothing at {CONTAINER_PROVISIONING}/{folder}"
        assert (REPO / host).resolve() == (PROVISIONING / folder).resolve(), host


def test_logs_show_a_line_that_differs_between_predictions(
    serve, log_file, anomaly_model, chatbot_model
):
    """The logs panel and Explore show the datasource's logMessageField as each row's text.
    `message` is "inference" on every event: a field the person on call can read differs
    between predictions and is a string in every successful inference event."""
    [es] = [d for d in _datasources() if d["type"] == "elasticsearch"]
    field, level = es["jsonData"]["logMessageField"], es["jsonData"]["logLevelField"]
    requests = [
        (anomaly_model, ANOMALY_BODY),
        (chatbot_model, CHAT_BODY),
        (chatbot_model, {"message": "zzzz qqqq"}),  # no known word: the fallback answer
    ]
    for model, body in requests:
        with serve(model) as client:
            assert client.post("/predict", json=body).status_code == 200
    events = log_events(log_file)
    assert len(events) == len(requests)
    lines = [e.get(field) for e in events]
    assert all(isinstance(line, str) and line for line in lines), lines
    assert len(set(lines)) > 1, f"every row would read {lines[0]!r}"
    # Grafana colours each row by this field's value.
    assert [e[level] for e in events] == ["info"] * len(requests)
    mapping = json.loads((REPO / "elasticsearch/component-template.json").read_text())
    assert field in mapping["template"]["mappings"]["properties"], "not a field of the event"


def test_exemplar_links_open_the_log_line_of_the_request(serve, anomaly_model):
    """From a latency exemplar to its log line: the label the server puts on exemplars, a
    provisioned datasource for the internal link, and a Kibana URL (the spec's) that opens the
    data view Kibana's objects define and filters a field the Elasticsearch template maps as a
    keyword."""
    [prom] = [d for d in _datasources() if d["type"] == "prometheus"]
    destinations = prom["jsonData"]["exemplarTraceIdDestinations"]
    uids = {d["uid"] for d in _datasources()}
    mapping = json.loads((REPO / "elasticsearch/component-template.json").read_text())
    properties = mapping["template"]["mappings"]["properties"]
    with serve(anomaly_model) as client:
        client.post("/predict", json=ANOMALY_BODY, headers={"X-Request-ID": "exemplar-1"})
        exposition = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    exemplar_label = re.search(r'# \{(\w+)="exemplar-1"', exposition.text)
    assert exemplar_label is not None, "the server exposes no exemplar with the request id"
    assert {d["name"] for d in destinations} == {exemplar_label.group(1)}
    internal = [d for d in destinations if "datasourceUid" in d]
    assert [d["datasourceUid"] for d in internal] == ["elasticsearch"]
    assert set(uids) >= {d["datasourceUid"] for d in internal}
    [kibana] = [d["url"] for d in destinations if "url" in d]
    assert kibana.startswith(f"{SPEC.kibana_url}/app/discover")
    assert re.findall(r"dataViewId:'([^']*)'", kibana) == [DATA_VIEW_ID]
    # $$ is provisioning's escape: Grafana sees ${__value.raw}, the exemplar's label value.
    field = re.search(r"query:'(\w+):%22\$\$\{__value\.raw\}%22'", kibana)
    assert field is not None and properties[field.group(1)]["type"] == "keyword"
    assert field.group(1) == exemplar_label.group(1)


def test_the_latency_panel_shows_exemplars_of_the_latency_histogram():
    """Exemplars hang on the p99 line: the slow requests whose log lines the links open."""
    health = generated_json("grafana/dashboards/ml-model-health.json")
    with_exemplars = [
        target["expr"]
        for panel in health["panels"]
        for target in panel.get("targets", [])
        if target.get("exemplar")
    ]
    assert len(with_exemplars) == 1, with_exemplars
    # Grafana's variables stand for label values and a duration; any such value parses the same.
    expr = re.sub(r"\$(\w+)", r"\1", with_exemplars[0].replace("$__rate_interval", "1m"))
    call = promql_parser.parse(expr)
    assert isinstance(call, promql_parser.Call) and call.func.name == "histogram_quantile"
    quantile, _ = call.args
    assert quantile.val == 0.99
    assert metric_names(expr) == {"model_latency_seconds_bucket"}
