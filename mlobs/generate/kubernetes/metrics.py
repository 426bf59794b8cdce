"""Metrics on the Prometheus Operator and kube-prometheus-stack's Grafana.

- One ServiceMonitor per model: `job` is the model name (jobLabel), `instance` the pod's name.
- One PrometheusRule holding exactly the groups of prometheus/rules/*.yml, as prometheus_rules
  renders them, each evaluated at compose's evaluation interval.
- One AlertmanagerConfig with alertmanager.yml's routing, converted to the CRD's shape. It lives in
  the monitoring namespace: the operator adds a `namespace=<its namespace>` matcher to the routes
  and inhibit rules of every AlertmanagerConfig (prometheus-operator v0.93.0
  pkg/alertmanager/amcfg.go, namespaceEnforcer), and our alerts carry no `namespace` label (the
  rules aggregate by model). With the Alertmanager's alertmanagerConfigMatcherStrategy
  OnNamespaceExceptForAlertmanagerNamespace, configs in its own namespace are left alone; the top
  route then selects our alerts by name.
- alert-sink, the receiver the routing delivers to (replace it with your pager).
- ConfigMaps for the Grafana sidecar: the dashboards as grafana_dashboards renders them, and the
  Prometheus and Elasticsearch datasources of grafana/provisioning/datasources/datasources.yml with
  cluster URLs. The labels grafana_dashboard: "1" and grafana_datasource: "1" are
  kube-prometheus-stack's defaults (prometheus-community/helm-charts kube-prometheus-stack-88.0.0
  values.yaml, grafana.sidecar.dashboards.label/labelValue and
  grafana.sidecar.datasources.label/labelValue). The dashboards' sidecar searches every namespace
  there (searchNamespace: ALL), the datasources' only Grafana's (grafana chart 12.10.0 default), so
  both go to the monitoring namespace.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from mlobs.generate import (
    alertmanager_config,
    grafana_dashboards,
    prometheus_config,
    prometheus_rules,
)
from mlobs.generate.expressions import alerts
from mlobs.generate.kubernetes import model_servers, pods
from mlobs.generate.kubernetes.cluster import (
    ES_PORT,
    ES_SERVICE,
    GRAFANA_CA_VARIABLE,
    PROMETHEUS_PORT,
    PROMETHEUS_SERVICE,
    KubernetesSetup,
)
from mlobs.generate.kubernetes.sources import RepoSources, SourceError
from mlobs.generate.prometheus_config import COMPOSE_PORT, PrometheusSetup
from mlobs.generate.yaml_output import dump
from mlobs.spec import Spec

ALERT_SINK = "alert-sink"
ALERT_SINK_COMPONENT = "alert-receiver"
OPERATOR_GROUP = "monitoring.coreos.com"
DASHBOARD_LABEL = {"grafana_dashboard": "1"}
DATASOURCE_LABEL = {"grafana_datasource": "1"}
DATASOURCES_KEY = "mlobs-datasources.yaml"
DATASOURCE_UIDS = ("prometheus", "elasticsearch")  # the ones dashboards and alert links use


def service_monitor(
    model: str, prometheus: PrometheusSetup, setup: KubernetesSetup
) -> dict[str, Any]:
    """Scrapes every pod of one model through its Service, as often as compose's Prometheus."""
    return {
        "apiVersion": f"{OPERATOR_GROUP}/v1",
        "kind": "ServiceMonitor",
        "metadata": pods.metadata(model, setup.namespace, {"release": setup.release}),
        "spec": {
            # job = the Service's app.kubernetes.io/name label = the model name, whatever the
            # Service is called (by default the operator takes the Service's name).
            "jobLabel": "app.kubernetes.io/name",
            "selector": {"matchLabels": pods.selector(model, model_servers.MODEL_COMPONENT)},
            "endpoints": [
                {
                    "port": "http",
                    "path": "/metrics",
                    "interval": prometheus.scrape_interval,
                    # instance = the pod's name instead of <pod IP>:8080: readable in alerts
                    # ("chatbot target chatbot-5d8f9-x2x7q is down") and unique per replica.
                    "relabelings": [
                        {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "instance"}
                    ],
                }
            ],
        },
    }


def rule_groups(spec: Spec, prometheus: PrometheusSetup) -> list[dict[str, Any]]:
    """The groups of prometheus/rules/*.yml, in file order, as prometheus_rules renders them,
    evaluated as often as compose's Prometheus evaluates them. Without an interval of their own
    the Prometheus resource's would apply: 30s unless set (prometheus-operator v0.93.0
    pkg/apis/monitoring/v1/prometheus_types.go, evaluationInterval), and alerts would fire later
    and recorded series be coarser than with compose."""
    rendered = prometheus_rules.render(spec)
    return [
        {"name": group["name"], "interval": prometheus.evaluation_interval, **group}
        for path in sorted(rendered)
        for group in yaml.safe_load(rendered[path])["groups"]
    ]


def prometheus_rule(spec: Spec, prometheus: PrometheusSetup, setup: KubernetesSetup) -> dict:
    return {
        "apiVersion": f"{OPERATOR_GROUP}/v1",
        "kind": "PrometheusRule",
        "metadata": pods.metadata("mlobs", setup.namespace, {"release": setup.release}),
        "spec": {"groups": rule_groups(spec, prometheus)},
    }


# --- alertmanager.yml -> AlertmanagerConfig (monitoring.coreos.com/v1alpha1) -------------------


def _matcher(name: str, match_type: str, value: str) -> dict[str, str]:
    return {"name": name, "matchType": match_type, "value": value}


def _alertname_in(names: Iterable[str]) -> dict[str, str]:
    return _matcher("alertname", "=~", "|".join(names))


def alertmanager_config_spec(spec: Spec, setup: KubernetesSetup) -> dict[str, Any]:
    """alertmanager_config's routing, receivers and inhibition in the CRD's shape, delivering to
    alert-sink in our namespace; the top route keeps only our alerts. Plain values are renamed
    from alertmanager_config's output; matchers are built from what it formats them from."""
    sink = setup.service_url(ALERT_SINK, COMPOSE_PORT)
    compose = alertmanager_config.alertmanager_config(
        spec, alertmanager_config.AlertmanagerSetup(sink_url=sink)
    )
    route = compose["route"]
    severity_routes = zip(spec.alerts.severities(), route["routes"], strict=True)
    return {
        "route": {
            "receiver": route["receiver"],
            "groupBy": route["group_by"],
            "groupWait": route["group_wait"],
            "groupInterval": route["group_interval"],
            "repeatInterval": route["repeat_interval"],
            "matchers": [_alertname_in(alert.name for alert in alerts(spec))],
            "routes": [
                {"receiver": child["receiver"], "matchers": [_matcher("severity", "=", severity)]}
                for severity, child in severity_routes
            ],
        },
        "receivers": [
            {
                "name": receiver["name"],
                "webhookConfigs": [
                    {
                        "url": h["url"],
                        "sendResolved": h["send_resolved"],
                        "maxAlerts": h["max_alerts"],
                    }
                    for h in receiver["webhook_configs"]
                ],
            }
            for receiver in compose["receivers"]
        ],
        "inhibitRules": [
            {
                "sourceMatch": [_alertname_in(alertmanager_config.SERVER_GONE)],
                "targetMatch": [_alertname_in(alertmanager_config.INHIBITED_BY_SERVER_GONE)],
                "equal": ["model"],
            }
        ],
    }


def alertmanager_config_resource(spec: Spec, setup: KubernetesSetup) -> dict[str, Any]:
    return {
        "apiVersion": f"{OPERATOR_GROUP}/v1alpha1",
        "kind": "AlertmanagerConfig",
        "metadata": pods.metadata("mlobs", setup.monitoring_namespace),
        "spec": alertmanager_config_spec(spec, setup),
    }


def alert_sink(setup: KubernetesSetup, sources: RepoSources) -> list[dict[str, Any]]:
    """One replica: it keeps the notifications it received in memory (GET /alerts)."""
    resources = pods.Resources(memory=sources.service(ALERT_SINK).memory, cpu_request="50m")
    container = model_servers.http_container(ALERT_SINK, sources.image(ALERT_SINK), resources)
    return [
        model_servers.deployment(ALERT_SINK, ALERT_SINK_COMPONENT, container, 1, setup, sources),
        model_servers.service(ALERT_SINK, ALERT_SINK_COMPONENT, setup),
    ]


# --- Grafana -----------------------------------------------------------------------------------


def dashboard_config_maps(spec: Spec, setup: KubernetesSetup) -> list[dict[str, Any]]:
    """One ConfigMap per dashboard, its JSON exactly as grafana/dashboards/ holds it."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": pods.metadata(
                f"mlobs-dashboard-{path.stem}", setup.monitoring_namespace, DASHBOARD_LABEL
            ),
            "data": {path.name: text},
        }
        for path, text in sorted(grafana_dashboards.render(spec).items())
    ]


def datasources(setup: KubernetesSetup, sources: RepoSources) -> dict[str, Any]:
    """The compose stack's Prometheus and Elasticsearch datasources with the cluster's URLs.
    Elasticsearch (ECK) speaks TLS with its own CA, which Grafana gets from the environment."""
    by_uid = {ds["uid"]: ds for ds in sources.datasources["datasources"]}
    missing = set(DATASOURCE_UIDS) - set(by_uid)
    if missing:
        raise SourceError(f"datasources.yml has no datasource with uid {sorted(missing)}")
    prometheus = {
        **by_uid["prometheus"],
        "url": f"http://{PROMETHEUS_SERVICE}.{setup.monitoring_namespace}.svc:{PROMETHEUS_PORT}",
    }
    compose_es = by_uid["elasticsearch"]
    elasticsearch = {
        **compose_es,
        "url": setup.service_url(ES_SERVICE, ES_PORT, scheme="https"),
        "jsonData": {**compose_es["jsonData"], "tlsAuthWithCACert": True},
        "secureJsonData": {
            **compose_es.get("secureJsonData", {}),
            "tlsCACert": f"${{{GRAFANA_CA_VARIABLE}}}",
        },
    }
    return {"apiVersion": 1, "datasources": [prometheus, elasticsearch]}


def datasource_config_map(setup: KubernetesSetup, sources: RepoSources) -> dict[str, Any]:
    comment = (
        "# Grafana datasources for kube-prometheus-stack's sidecar: those of\n"
        "# grafana/provisioning/datasources/datasources.yml with the cluster's URLs.\n"
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": pods.metadata(
            "mlobs-grafana-datasources", setup.monitoring_namespace, DATASOURCE_LABEL
        ),
        "data": {DATASOURCES_KEY: dump(datasources(setup, sources), comment)},
    }


def metrics_files(
    spec: Spec, setup: KubernetesSetup, sources: RepoSources
) -> dict[Path, list[dict]]:
    """The metrics part, by file name inside deploy/kubernetes/metrics/."""
    prometheus = prometheus_config.compose_setup(spec)  # compose's scrape and rule intervals
    return {
        Path("service-monitors.yaml"): [
            service_monitor(m.name, prometheus, setup) for m in spec.models
        ],
        Path("prometheus-rule.yaml"): [prometheus_rule(spec, prometheus, setup)],
        Path("alertmanager-config.yaml"): [alertmanager_config_resource(spec, setup)],
        Path("alert-sink.yaml"): alert_sink(setup, sources),
        Path("grafana-dashboards.yaml"): dashboard_config_maps(spec, setup),
        Path("grafana-datasources.yaml"): [datasource_config_map(setup, sources)],
    }
