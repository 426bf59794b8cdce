"""deploy/kubernetes/: the stack on a cluster with the Prometheus Operator (kube-prometheus-stack)
and ECK, rendered from observability.yaml and the same generators as the compose stack, as three
kustomize bases (`kubectl apply -k deploy/kubernetes/<part>`):

- model-servers/: a Deployment, Service and PodDisruptionBudget per model of the spec;
- metrics/: ServiceMonitors, the PrometheusRule, the AlertmanagerConfig, alert-sink, and the
  Grafana dashboards and datasources as ConfigMaps for kube-prometheus-stack's sidecar;
- logs/: Elasticsearch, Kibana, Logstash and Filebeat (ECK resources) and the setup Jobs.
"""

from __future__ import annotations

from pathlib import Path

from mlobs.generate.kubernetes import kustomize, logs, metrics, model_servers
from mlobs.generate.kubernetes.cluster import KubernetesSetup
from mlobs.generate.kubernetes.sources import RepoSources
from mlobs.spec import Spec

OUT_DIR = Path("deploy/kubernetes")
PARTS = ("model-servers", "metrics", "logs")

_COMMENTS = {
    "model-servers": (
        "# Model servers: kubectl apply -k deploy/kubernetes/model-servers\n"
        "# Set your registry and tag in an overlay's `images:` (same name, newName and newTag).\n"
    ),
    "metrics": (
        "# Metrics: kubectl apply -k deploy/kubernetes/metrics (needs kube-prometheus-stack; see\n"
        '# README "Production on Kubernetes" for the chart values it relies on).\n'
    ),
    "logs": (
        "# Logs: kubectl apply -k deploy/kubernetes/logs (needs ECK and the Secret\n"
        '# mlobs-elastic-credentials; see README "Production on Kubernetes").\n'
    ),
}


def render(
    spec: Spec, root: Path = Path("."), setup: KubernetesSetup | None = None, out: Path = OUT_DIR
) -> dict[Path, str]:
    """Every file of the three bases, by path (below `out`)."""
    setup = setup or KubernetesSetup()
    sources = RepoSources.read(root)
    parts = {
        "model-servers": {
            Path(f"{m.name}.yaml"): model_servers.model_server(m, setup, sources)
            for m in spec.models
        },
        "metrics": metrics.metrics_files(spec, setup, sources),
        "logs": logs.logs_files(spec, setup, sources),
    }
    rendered: dict[Path, str] = {}
    for part in PARTS:
        rendered |= kustomize.base(out / part, parts[part], _COMMENTS[part])
    return rendered
