"""Contracts between the generated configs: scrape jobs, rules, routes and receivers agree."""

import re

import yaml

from mlobs.spec import load_spec
from tests.conftest import REPO

SPEC = load_spec(REPO / "observability.yaml")


def _yaml(path: str):
    return yaml.safe_load((REPO / path).read_text())


def _alerts() -> list[dict]:
    return [r for g in _yaml("prometheus/rules/alerts.yml")["groups"] for r in g["rules"]]


def test_every_model_is_scraped_by_dns_under_its_own_job():
    jobs = {j["job_name"]: j for j in _yaml("prometheus/prometheus.yml")["scrape_configs"]}
    for model in SPEC.models:
        sd = jobs[model.name]["dns_sd_configs"][0]
        assert sd["names"] == [model.name] and sd["type"] == "A" and sd["port"] == 8080
    assert {"prometheus", "alertmanager", "alert-sink"} <= set(jobs)
    server_down = next(a for a in _alerts() if a["alert"] == "ModelServerDown")
    assert "|".join(m.name for m in SPEC.models) in server_down["expr"]


def test_every_alert_has_severity_model_and_texts():
    for alert in _alerts():
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}
        assert {"summary", "description", "dashboard"} <= set(alert["annotations"])
        assert "$value" not in str(alert["annotations"])
        assert "model" in alert["annotations"]["dashboard"]


def test_alertmanager_routes_every_severity_to_alert_sink_and_inhibits_symptoms():
    config = _yaml("alertmanager/alertmanager.yml")
    receivers = {r["name"]: r for r in config["receivers"]}
    route = config["route"]
    assert route["group_by"] == ["alertname", "model"]
    routed = {m for r in route["routes"] for m in r["matchers"]}
    used = {a["labels"]["severity"] for a in _alerts()}
    assert {f'severity="{s}"' for s in used} <= routed
    for r in route["routes"]:
        hook = receivers[r["receiver"]]["webhook_configs"][0]
        assert hook["url"] == "http://alert-sink:8080/alertmanager" and hook["send_resolved"]
    [inhibit] = config["inhibit_rules"]
    # A server that is down and one that vanished from discovery silence the same symptoms.
    [source] = inhibit["source_matchers"]
    [target] = inhibit["target_matchers"]
    for gone in ("ModelServerDown", "ModelServerMissing"):
        assert _matcher_selects(source, "alertname", gone), gone
    for symptom in ("ModelP99LatencyHigh", "ModelErrorRateHigh", "ModelNoTraffic"):
        assert _matcher_selects(target, "alertname", symptom), symptom
    assert not _matcher_selects(target, "alertname", "ModelServerMissing")
    assert inhibit["equal"] == ["model"]


def test_a_vanished_server_is_routed_and_labelled_like_a_down_one():
    alerts = {a["alert"]: a for a in _alerts()}
    down, missing = alerts["ModelServerDown"], alerts["ModelServerMissing"]
    assert missing["labels"] == down["labels"] and missing["for"] == down["for"]
    assert missing["labels"]["severity"] == SPEC.alerts.server_down.severity
    assert missing["for"] == SPEC.alerts.server_down.for_


def _matcher_selects(matcher: str, label: str, value: str) -> bool:
    """Whether an Alertmanager matcher such as `alertname=~"A|B"` selects label=value."""
    match = re.fullmatch(r'(\w+)(=~|!~|!=|=)"(.*)"', matcher)
    assert match, matcher
    name, op, pattern = match.groups()
    if name != label:
        return False
    hit = re.fullmatch(pattern, value) is not None if "~" in op else pattern == value
    return hit != op.startswith("!")
