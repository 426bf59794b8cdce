"""Model servers (and alert-sink): a Deployment, a Service and a PodDisruptionBudget per model.

Each model's Service and pods carry `app.kubernetes.io/name: <model>`, and its ServiceMonitor takes
the Prometheus `job` from that label, so `job` is the model name as with compose's scrape jobs
(ModelServerDown and ModelServerMissing select a model's targets by job). Every container listens
on 8080, as in compose, and runs the image's own command (services/Dockerfile).
"""

from __future__ import annotations

from typing import Any

from mlobs.generate.kubernetes import pods
from mlobs.generate.kubernetes.cluster import KubernetesSetup
from mlobs.generate.kubernetes.sources import RepoSources
from mlobs.generate.prometheus_config import COMPOSE_PORT
from mlobs.spec import ModelSpec

MODEL_COMPONENT = "model-server"
# The container's name: Filebeat selects the model servers' logs by it (/var/log/containers/
# <pod>_<namespace>_<container>-<id>.log), so it is the same for every model.
MODEL_CONTAINER = "model-server"
MODEL_REPLICAS = 2
# Kubernetes sends SIGTERM while it takes the pod out of its Services' EndpointSlices, and
# kube-proxy and ingress controllers learn of that a moment later: a server that began to drain
# at once would shed the requests still routed to it with 503. The preStop hook runs before
# SIGTERM, so the server keeps serving for these seconds; terminationGracePeriodSeconds counts
# them too. (kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination; the
# `sleep` action needs no binary in the image: KEP-3960, beta and on by default since 1.30.)
ROUTING_GRACE_SECONDS = 5
# A synchronous predict runs in up to MLOBS_PREDICT_CONCURRENCY threads and numpy releases the
# GIL, so a server can use more than one core; raise the limit for heavier models.
MODEL_CPU_REQUEST, MODEL_CPU_LIMIT = "250m", "2"


def http_container(name: str, image: str, resources: pods.Resources) -> dict[str, Any]:
    """A container of one of our HTTP services: /healthz (liveness), /readyz (readiness)."""
    return {
        "name": name,
        "image": image,
        "ports": [{"name": "http", "containerPort": COMPOSE_PORT, "protocol": "TCP"}],
        "resources": resources.as_dict(),
        # Model loading may take a while: liveness starts once /healthz answered (2 min budget).
        "startupProbe": pods.http_probe("/healthz", period=2, failures=60),
        "livenessProbe": pods.http_probe("/healthz", period=10, failures=3),
        # /readyz answers 503 from the start of a drain on; the Service stops routing here.
        "readinessProbe": pods.http_probe("/readyz", period=5, failures=2),
        "securityContext": pods.restricted_container_security(),
        "volumeMounts": [pods.tmp_mount()],
    }


def deployment(
    name: str,
    component: str,
    container: dict[str, Any],
    replicas: int,
    setup: KubernetesSetup,
    sources: RepoSources,
    grace_seconds: int | None = None,
) -> dict[str, Any]:
    """A Deployment that replaces pods one at a time, never below `replicas` ready ones."""
    match = pods.selector(name, component)
    pod = pods.restricted_pod([container], sources)
    if grace_seconds is not None:
        pod["terminationGracePeriodSeconds"] = grace_seconds
    if replicas > 1:  # spread replicas over nodes where possible
        pod["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": match},
            }
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": pods.metadata(name, setup.namespace, pods.selector(name, component)),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": match},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {"metadata": {"labels": pods.labels(name, component)}, "spec": pod},
        },
    }


def service(name: str, component: str, setup: KubernetesSetup) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": pods.metadata(name, setup.namespace, pods.selector(name, component)),
        "spec": {
            "type": "ClusterIP",
            "selector": pods.selector(name, component),
            "ports": [
                {"name": "http", "port": COMPOSE_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def disruption_budget(name: str, component: str, setup: KubernetesSetup) -> dict[str, Any]:
    """At most one pod of the model evicted at a time (node drains, upgrades). maxUnavailable,
    not minAvailable: with a single replica a drain still proceeds instead of blocking."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": pods.metadata(name, setup.namespace, pods.selector(name, component)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": pods.selector(name, component)}},
    }


def model_server(model: ModelSpec, setup: KubernetesSetup, sources: RepoSources) -> list[dict]:
    """Deployment, Service and PodDisruptionBudget of one model of the spec. A terminating pod
    keeps serving for ROUTING_GRACE_SECONDS, then Kubernetes waits as long as compose between
    SIGTERM and SIGKILL: the drain (MLOBS_SHUTDOWN_GRACE_SECONDS) plus the time to close
    connections and flush the log lines and drift counts."""
    resources = pods.Resources(
        memory=sources.service(model.name).memory,
        cpu_request=MODEL_CPU_REQUEST,
        cpu_limit=MODEL_CPU_LIMIT,
    )
    container = http_container(MODEL_CONTAINER, sources.image(model.name), resources)
    container["lifecycle"] = {"preStop": {"sleep": {"seconds": ROUTING_GRACE_SECONDS}}}
    return [
        deployment(
            model.name,
            MODEL_COMPONENT,
            container,
            MODEL_REPLICAS,
            setup,
            sources,
            grace_seconds=ROUTING_GRACE_SECONDS + sources.stop_grace_seconds(model.name),
        ),
        service(model.name, MODEL_COMPONENT, setup),
        disruption_budget(model.name, MODEL_COMPONENT, setup),
    ]
