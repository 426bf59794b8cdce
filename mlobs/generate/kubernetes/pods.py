"""Pieces every pod of ours shares: least privilege, resources, probes, labels, secrets, volumes.

Our own images (services/Dockerfile) run as its non-root user with a read-only root filesystem, no
capabilities, no privilege escalation and the runtime's default seccomp profile: the Pod Security
Standard "restricted". The only writable place is an emptyDir on /tmp, as compose's `tmpfs: [/tmp]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlobs.generate.kubernetes.sources import RepoSources

PART_OF = {"app.kubernetes.io/part-of": "mlobs"}
TMP_VOLUME = "tmp"
TMP_SIZE = "64Mi"


@dataclass(frozen=True)
class Resources:
    """Requests and limits of one container. Memory requests equal limits (the pod is never
    evicted for using what it asked for); CPU is requested, and limited only where given."""

    memory: str
    cpu_request: str
    cpu_limit: str | None = None

    def as_dict(self) -> dict[str, Any]:
        limits = {"memory": self.memory}
        if self.cpu_limit is not None:
            limits["cpu"] = self.cpu_limit
        return {"requests": {"cpu": self.cpu_request, "memory": self.memory}, "limits": limits}


def selector(name: str, component: str) -> dict[str, str]:
    """The labels that select the pods of one workload (never changed after creation)."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component}


def labels(name: str, component: str) -> dict[str, str]:
    """The recommended labels (app.kubernetes.io/*) of one workload and its pods."""
    return {**selector(name, component), **PART_OF}


def metadata(name: str, namespace: str, extra: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The metadata of one of our objects: labelled part-of mlobs, plus `extra` labels."""
    return {"name": name, "namespace": namespace, "labels": {**(extra or {}), **PART_OF}}


def claim(name: str, size: str) -> dict[str, Any]:
    """A volumeClaimTemplate: one ReadWriteOnce volume of `size` from the default StorageClass."""
    return {
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    }


def restricted_pod_security(sources: RepoSources) -> dict[str, Any]:
    """The pod securityContext of our images: the Dockerfile's user, never root."""
    return {
        "runAsNonRoot": True,
        "runAsUser": sources.uid,
        "runAsGroup": sources.gid,
        "fsGroup": sources.gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def tmp_volume() -> dict[str, Any]:
    return {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": TMP_SIZE}}


def tmp_mount() -> dict[str, Any]:
    return {"name": TMP_VOLUME, "mountPath": "/tmp"}


def restricted_pod(containers: list[dict[str, Any]], sources: RepoSources) -> dict[str, Any]:
    """A pod spec for our images. No service account token (nothing here calls the Kubernetes
    API), and no service links: Kubernetes would otherwise set <SERVICE>_PORT variables for every
    Service in the namespace, and a Service named `mlobs` would set MLOBS_PORT=tcp://..., which
    `python -m mlobs.serve` reads as its port."""
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security(sources),
        "containers": containers,
        "volumes": [tmp_volume()],
    }


def http_probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def env(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def ca_volume(name: str, secret: str) -> dict[str, Any]:
    """The CA certificate (ca.crt) of a Secret such as ECK's <name>-es-http-certs-public."""
    return {
        "name": name,
        "secret": {"secretName": secret, "items": [{"key": "ca.crt", "path": "ca.crt"}]},
    }
