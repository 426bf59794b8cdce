"""Files of one kustomize base: its manifests (several objects per file) and kustomization.yaml.

Every namespace is set in the objects themselves (the metrics part spans two), never with
kustomize's `namespace:` field. `images:` pins our images to the project's version; an overlay
sets the registry and tag it pushed them with (same `name`, its own newName and newTag).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlobs.generate.yaml_output import HEADER, dump

KUSTOMIZATION = "kustomization.yaml"


def unshared(obj: Any) -> Any:
    """A copy without shared parts, which YAML would print as anchors and aliases."""
    return json.loads(json.dumps(obj))


def dump_objects(objects: Iterable[dict[str, Any]], comment: str = "") -> str:
    """Several objects as one multi-document YAML file, after the generated-file header."""
    documents = (dump(unshared(obj)).removeprefix(HEADER) for obj in objects)
    return HEADER + comment + "---\n".join(documents)


def pod_images(objects: Iterable[dict[str, Any]]) -> list[str]:
    """The images of the pod templates of Deployments and Jobs (ECK picks its own by version)."""
    images = []
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            pod = obj["spec"]["template"]["spec"]
            images += [c["image"] for c in pod.get("initContainers", []) + pod["containers"]]
    return sorted(set(images))


def kustomization(resources: Iterable[Path], images: Iterable[str], tag: str, comment: str) -> str:
    body: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [str(path) for path in resources],
    }
    images = list(images)
    if images:
        body["images"] = [{"name": image, "newTag": tag} for image in images]
    return dump(body, comment)


def base(
    directory: Path, files: Mapping[Path, list[dict[str, Any]]], tag: str, comment: str
) -> dict[Path, str]:
    """The files of one base below `directory`."""
    out = {directory / name: dump_objects(objects) for name, objects in files.items()}
    images = pod_images(obj for objects in files.values() for obj in objects)
    out[directory / KUSTOMIZATION] = kustomization(files, images, tag, comment)
    return out
