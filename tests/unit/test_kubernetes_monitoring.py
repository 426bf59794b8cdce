"""deploy/kubernetes/metrics/: what Prometheus, Alertmanager and Grafana get on the cluster is what
the compose stack uses: the same rule groups (and promtool takes them), the same dashboards byte
for byte, the same datasources but for their URLs, the same routing; and every model's targets
carry job=<model>, which ModelServerDown and ModelServerMissing select on.

Both sides are the generators' output now (tests.support.generated; the bases through
tests/support/kubernetes.py, part), so that a change of mlobs/generate/kubernetes/ meets these
tests before `make generate`.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import promql_parser
import yaml

from mlobs.generate.kubernetes.metrics import DATASOURCES_KEY
from mlobs.spec import load_spec
from tests.conftest import REPO, require_tool
from tests.support.generated import generated_text, generated_yaml, rendered
from tests.support.kubernetes import README, part, readme_secrets
from tests.support.promql import selected_values

SPEC = load_spec(REPO / "observability.yaml")
# The README's namespaces: ours, and kube-prometheus-stack's.
NAMESPACE, MONITORING_NAMESPACE = "mlobs", "monitoring"
# The datasources the dashboards query; the chart brings its own Alertmanager's.
DATASOURCE_UIDS = {"prometheus", "elasticsearch"}
ALERTMANAGER_YML = "alertmanager/alertmanager.yml"


def _kind(kind: str, objects: list[dict] | None = None) -> list[dict]:
    """The objects of a kind of the metrics base (or of `objects`)."""
    return [obj for obj in (part("metrics") if objects is None else objects) if obj["kind"] == kind]


def _generated_in(folder: str) -> dict[Path, str]:
    """The generated files of one folder, by path."""
    return {path: text for path, text in sorted(rendered().items()) if path.parent == Path(folder)}


# --- rules -------------------------------------------------------------------------------------


def _rule_files_groups() -> list[dict]:
    files = _generated_in("prometheus/rules")
    assert files
    return [group for text in files.values() for group in yaml.safe_load(text)["groups"]]


def test_the_prometheus_rule_holds_the_groups_of_prometheus_rules_evaluated_as_compose_does():
    """Same groups, same evaluation interval: a group without one would get the Prometheus
    resource's (the operator's default is 30s), not compose's global evaluation_interval."""
    prometheus_yml = generated_yaml("prometheus/prometheus.yml")
    interval = prometheus_yml["global"]["evaluation_interval"]
    [rule] = _kind("PrometheusRule")
    assert rule["spec"]["groups"] == [{"interval": interval, **g} for g in _rule_files_groups()]


def test_promtool_accepts_the_prometheus_rules_groups(tmp_path):
    promtool = require_tool("promtool")
    [rule] = _kind("PrometheusRule")
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# Labels the servers export (mlobs.metrics) and `le`; what a scrape adds differs between compose
# (job, instance) and the operator (also pod, namespace, service, container, endpoint).
METRIC_LABELS = {"model", "model_version", "status", "label", "feature", "bin", "le"}


def _aggregations(expr: str) -> list[tuple[str, list[str]]]:
    found = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.AggregateExpr):
            modifier = node.modifier
            found.append(
                (str(modifier.type).rsplit(".", 1)[-1], list(modifier.labels))
                if modifier
                else ("none", [])
            )

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def test_every_rule_aggregates_by_the_servers_labels_so_any_number_of_pods_adds_up():
    """`sum by (model, ...)` over the servers' own labels: a rule that kept or dropped target
    labels (`without (instance)`, `by (pod)`, a bare `sum`) would split or merge models
    differently on the cluster than with compose."""
    [rule] = _kind("PrometheusRule")
    exprs = [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]
    aggregations = [a for expr in exprs for a in _aggregations(expr)]
    assert aggregations
    for kind, labels in aggregations:
        assert kind == "By" and "model" in labels and set(labels) <= METRIC_LABELS, (kind, labels)


# --- the job label -----------------------------------------------------------------------------


def _job(monitor: dict, service: dict) -> str:
    """The `job` the Prometheus Operator gives a ServiceMonitor's targets: the Service's name,
    or the value of the Service label named by jobLabel when it has one (prometheus-operator
    v0.93.0 pkg/prometheus/promcfg.go, generateServiceMonitorConfig); then the endpoint's own
    relabelings."""
    job = service["metadata"]["name"]
    label = monitor["spec"].get("jobLabel")
    if label and service["metadata"].get("labels", {}).get(label):
        job = service["metadata"]["labels"][label]
    for endpoint in monitor["spec"]["endpoints"]:
        for relabel in endpoint.get("relabelings", []):
            assert relabel.get("targetLabel") != "job", "relabelings of job are not modelled"
    return job


def _selected_services(monitor: dict, services: list[dict]) -> list[dict]:
    wanted = monitor["spec"]["selector"]["matchLabels"].items()
    namespace = monitor["metadata"]["namespace"]  # no namespaceSelector: its own namespace
    assert "namespaceSelector" not in monitor["spec"]
    return [
        s
        for s in services
        if s["metadata"]["namespace"] == namespace and wanted <= s["metadata"]["labels"].items()
    ]


def test_each_models_targets_get_job_equal_to_the_model_name_even_when_renamed():
    """The rules find a model's targets by `job` = model name. An overlay's namePrefix renames
    Services; the job label must not follow."""
    monitors = _kind("ServiceMonitor")
    assert len(monitors) == len(SPEC.models)
    for prefix in ("", "prod-"):
        services = copy.deepcopy(_kind("Service", part("model-servers")))
        for service in services:
            service["metadata"]["name"] = prefix + service["metadata"]["name"]
        jobs = {}
        for monitor in monitors:
            [service] = _selected_services(monitor, services)
            ports = {p["name"] for p in service["spec"]["ports"]}
            assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
            jobs[monitor["metadata"]["name"]] = _job(monitor, service)
        assert sorted(jobs.values()) == sorted(m.name for m in SPEC.models), prefix
    # The alerts' `up` selectors pick exactly these jobs, not another target's.
    [rule] = _kind("PrometheusRule")
    exprs = {
        r["alert"]: r["expr"]
        for group in rule["spec"]["groups"]
        for r in group["rules"]
        if r.get("alert") in ("ModelServerDown", "ModelServerMissing")
    }
    assert set(exprs) == {"ModelServerDown", "ModelServerMissing"}
    candidates = {*jobs.values(), "alert-sink", "prometheus", "kubelet"}
    for name, expr in exprs.items():
        assert selected_values(expr, "up", "job", candidates) == set(jobs.values()), name


# --- Grafana -----------------------------------------------------------------------------------


def test_the_dashboards_are_the_files_of_grafana_dashboards_byte_for_byte():
    maps = [cm for cm in _kind("ConfigMap") if cm["metadata"]["labels"].get("grafana_dashboard")]
    data = {name: text for cm in maps for name, text in cm["data"].items()}
    files = {path.name: text for path, text in _generated_in("grafana/dashboards").items()}
    assert data == files
    for cm in maps:  # kube-prometheus-stack's sidecar defaults (chart 88.0.0 values.yaml)
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["namespace"] == MONITORING_NAMESPACE


def _datasources() -> dict[str, dict]:
    [cm] = [cm for cm in _kind("ConfigMap") if cm["metadata"]["labels"].get("grafana_datasource")]
    assert cm["metadata"]["labels"]["grafana_datasource"] == "1"
    # The grafana chart's sidecar reads datasources in Grafana's own namespace only
    # (grafana-community/helm-charts grafana-12.10.0 values.yaml,
    # sidecar.datasources.searchNamespace).
    assert cm["metadata"]["namespace"] == MONITORING_NAMESPACE
    provisioning = yaml.safe_load(cm["data"][DATASOURCES_KEY])
    assert provisioning["apiVersion"] == 1
    return {ds["uid"]: ds for ds in provisioning["datasources"]}


def test_the_datasources_are_the_compose_stacks_with_cluster_urls_and_ecks_ca():
    path = REPO / "grafana/provisioning/datasources/datasources.yml"
    compose = {ds["uid"]: ds for ds in yaml.safe_load(path.read_text())["datasources"]}
    ours = _datasources()
    assert set(ours) == set(DATASOURCE_UIDS)
    prometheus, elasticsearch = ours["prometheus"], ours["elasticsearch"]
    assert prometheus.pop("url") == f"http://prometheus-operated.{MONITORING_NAMESPACE}.svc:9090"
    assert elasticsearch.pop("url") == f"https://mlobs-es-http.{NAMESPACE}.svc:9200"
    assert elasticsearch["jsonData"].pop("tlsAuthWithCACert") is True
    assert elasticsearch["secureJsonData"].pop("tlsCACert") == "${GRAFANA_ES_CA_CERT}"
    for uid, datasource in ours.items():
        assert datasource == {k: v for k, v in compose[uid].items() if k != "url"}, uid
    # The chart's own Prometheus datasource is also the default: the README turns it off.
    assert sum(bool(ds.get("isDefault")) for ds in ours.values()) == 1


def test_grafana_gets_every_variable_its_datasources_read_from_the_readmes_secret():
    """The README has the user create a Secret in the monitoring namespace and hand it to Grafana
    as environment variables (chart value grafana.envFromSecrets): exactly what the datasources
    read."""
    [(name, keys)] = [
        (name, keys)
        for (namespace, name), keys in readme_secrets().items()
        if namespace == MONITORING_NAMESPACE
    ]
    assert re.search(rf"envFromSecrets:\s*\n\s*- name: {re.escape(name)}\b", README.read_text())
    text = yaml.safe_dump(list(_datasources().values()))
    variables = set(re.findall(r"(?<!\$)\$\{(\w+)\}", text))
    assert variables == keys


# --- Alertmanager ------------------------------------------------------------------------------


def _matcher_text(matcher: dict) -> str:
    """prometheus-operator v0.93.0 v1alpha1 Matcher.String: name, operator, quoted value."""
    value = matcher["value"].replace("\\", "\\\\").replace('"', '\\"')
    return f'{matcher["name"]}{matcher["matchType"]}"{value}"'


def _route(route: dict, prefix: str, namespace_matcher: str | None, top: bool) -> dict:
    """One AlertmanagerConfig route as the operator writes it into alertmanager.yaml
    (pkg/alertmanager/amcfg.go, convertRoute and the enforcers): receivers prefixed with
    <namespace>/<name>/, the top route `continue: true` and, under the strategy OnNamespace, a
    namespace matcher."""
    keys = {"groupBy": "group_by", "groupWait": "group_wait", "groupInterval": "group_interval"}
    keys |= {"repeatInterval": "repeat_interval", "continue": "continue"}
    out = {"receiver": prefix + route["receiver"]}
    out |= {keys[k]: v for k, v in route.items() if k in keys}
    matchers = [_matcher_text(m) for m in route.get("matchers", [])]
    if top:
        out["continue"] = True
        if namespace_matcher:
            matchers.append(namespace_matcher)
    if matchers:
        out["matchers"] = matchers
    if "routes" in route:
        out["routes"] = [_route(r, prefix, None, top=False) for r in route["routes"]]
    unknown = set(route) - set(keys) - {"receiver", "matchers", "routes"}
    assert not unknown, f"route fields not modelled: {unknown}"
    return out


def _operator_config(strategy: str) -> dict:
    """The Alertmanager configuration the operator generates from our AlertmanagerConfig on top
    of a root route like kube-prometheus-stack's default one (receiver "null", grouped by
    namespace)."""
    [amc] = _kind("AlertmanagerConfig")
    namespace, name = amc["metadata"]["namespace"], amc["metadata"]["name"]
    prefix = f"{namespace}/{name}/"
    alertmanager_namespace = MONITORING_NAMESPACE
    enforce = strategy == "OnNamespace" or (
        strategy == "OnNamespaceExceptForAlertmanagerNamespace"
        and namespace != alertmanager_namespace
    )
    namespace_matcher = f'namespace="{namespace}"' if enforce else None
    spec = amc["spec"]
    receivers = [
        {
            "name": prefix + r["name"],
            "webhook_configs": [
                {"url": h["url"], "send_resolved": h["sendResolved"], "max_alerts": h["maxAlerts"]}
                for h in r["webhookConfigs"]
            ],
        }
        for r in spec["receivers"]
    ]
    inhibit_rules = []
    for rule in spec["inhibitRules"]:
        source = [_matcher_text(m) for m in rule["sourceMatch"]]
        target = [_matcher_text(m) for m in rule["targetMatch"]]
        if namespace_matcher:
            source.append(namespace_matcher)
            target.append(namespace_matcher)
        inhibit_rules.append(
            {"source_matchers": source, "target_matchers": target, "equal": rule["equal"]}
        )
    return {
        "route": {
            "receiver": "null",
            "group_by": ["namespace"],
            "routes": [_route(spec["route"], prefix, namespace_matcher, top=True)],
        },
        "receivers": [{"name": "null"}, *receivers],
        "inhibit_rules": inhibit_rules,
    }


def _receivers(config: Path, labels: dict[str, str]) -> list[str]:
    amtool = require_tool("amtool")
    result = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={config}"]
        + [f"{k}={v}" for k, v in labels.items()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [name.strip() for name in result.stdout.strip().split(",")]


def _write(tmp_path: Path, name: str, config: dict) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    amtool = require_tool("amtool")
    check = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    return path


def _our_alerts() -> list[dict[str, str]]:
    """The labels each alert of the cluster's PrometheusRule fires with (for the first model)."""
    [rule] = _kind("PrometheusRule")
    return [
        {"alertname": r["alert"], "severity": r["labels"]["severity"], "model": SPEC.models[0].name}
        for group in rule["spec"]["groups"]
        for r in group["rules"]
        if "alert" in r
    ]


def test_every_alert_reaches_the_receiver_alertmanager_yml_gives_it(tmp_path):
    """Routed through what the operator makes of the AlertmanagerConfig (with the README's
    OnNamespaceExceptForAlertmanagerNamespace strategy), each alert reaches the receiver that
    alertmanager/alertmanager.yml picks; other teams' alerts do not reach ours."""
    merged = _write(
        tmp_path, "operator.yml", _operator_config("OnNamespaceExceptForAlertmanagerNamespace")
    )
    compose = tmp_path / "alertmanager.yml"
    compose.write_text(generated_text(ALERTMANAGER_YML))
    [amc] = _kind("AlertmanagerConfig")
    prefix = f"{amc['metadata']['namespace']}/{amc['metadata']['name']}/"
    for labels in _our_alerts():
        ours = [r.removeprefix(prefix) for r in _receivers(merged, labels) if r.startswith(prefix)]
        assert ours == _receivers(compose, labels), labels
    other = {"alertname": "KubePodCrashLooping", "severity": "critical", "namespace": "x"}
    assert _receivers(merged, other) == ["null"]


def test_with_the_operators_default_strategy_our_alerts_would_miss_the_route(tmp_path):
    """Why the README asks for alertmanagerConfigMatcherStrategy: the default adds
    namespace=<namespace> to the route, and our alerts aggregate by model, without namespace."""
    merged = _write(tmp_path, "default.yml", _operator_config("OnNamespace"))
    for labels in _our_alerts():
        assert _receivers(merged, labels) == ["null"], labels


def test_the_inhibit_rules_are_alertmanager_ymls():
    compose = generated_yaml(ALERTMANAGER_YML)
    converted = _operator_config("OnNamespaceExceptForAlertmanagerNamespace")["inhibit_rules"]
    assert converted == compose["inhibit_rules"]


def test_the_receivers_deliver_to_alert_sink_in_our_namespace():
    [amc] = _kind("AlertmanagerConfig")
    assert amc["metadata"]["namespace"] == MONITORING_NAMESPACE
    urls = {h["url"] for r in amc["spec"]["receivers"] for h in r["webhookConfigs"]}
    [service] = [s for s in _kind("Service") if s["metadata"]["name"] == "alert-sink"]
    port = service["spec"]["ports"][0]["port"]
    assert urls == {f"http://alert-sink.{service['metadata']['namespace']}.svc:{port}/alertmanager"}
