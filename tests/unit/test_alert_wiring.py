"""Contracts between the generated configs: scrape jobs, rules, routes and receivers agree."""

import promql_parser

from mlobs.spec import load_spec
from tests.conftest import REPO
from tests.support.generated import generated_yaml
from tests.support.promql import matcher_selects, selected_values

SPEC = load_spec(REPO / "observability.yaml")


def _yaml(path: str):
    return generated_yaml(path)


def _alerts() -> list[dict]:
    return [r for g in _yaml("prometheus/rules/alerts.yml")["groups"] for r in g["rules"]]


def test_every_model_is_scraped_by_dns_under_its_own_job():
    jobs = {j["job_name"]: j for j in _yaml("prometheus/prometheus.yml")["scrape_configs"]}
    for model in SPEC.models:
        sd = jobs[model.name]["dns_sd_configs"][0]
        assert sd["names"] == [model.name] and sd["type"] == "A" and sd["port"] == 8080
    assert {"prometheus", "alertmanager", "alert-sink"} <= set(jobs)
    # The server alerts watch exactly the models' jobs among those scraped.
    models = {model.name for model in SPEC.models}
    for name in ("ModelServerDown", "ModelServerMissing"):
        [alert] = [a for a in _alerts() if a["alert"] == name]
        assert selected_values(alert["expr"], "up", "job", set(jobs)) == models, name


def test_every_alert_has_severity_model_and_texts():
    for alert in _alerts():
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}
        assert {"summary", "description", "dashboard"} <= set(alert["annotations"])
        assert "$value" not in str(alert["annotations"])


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
        assert hook["url"] == "http://alert-sink:8080/alertmanager"
        assert hook["send_resolved"] is True  # the sink lists resolved notifications too
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


def _matcher_selects(matcher: str, label: str, value: str) -> bool:
    """Whether an Alertmanager matcher such as `alertname=~"A|B"` selects label=value (with a
    quoted value its syntax is PromQL's label matcher)."""
    [parsed] = promql_parser.parse(f"{{{matcher}}}").matchers.matchers
    return parsed.name == label and matcher_selects(parsed, value)
