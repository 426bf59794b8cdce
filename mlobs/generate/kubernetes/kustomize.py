"""Files of one kustomize base: its manifests (several objects per file) and kustomization.yaml.

Every namespace is set in the objects themselves (the metrics part spans two), never with
kustomize's `namespace:` field. Our images are tagged with the project's version in the pod
templates; an overlay's `images:` sets the registry and tag it pushed them with (kustomize matches
an image by name, whatever its tag).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlobs.generate.yaml_output import dump, dump_all

KUSTOMIZATION = "kustomization.yaml"


def kustomization(resources: Iterable[Path], comment: str) -> str:
    body = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [str(path) for path in resources],
    }
    return dump(body, comment)


def base(
    directory: Path, files: Mapping[Path, list[dict[str, Any]]], comment: str
) -> dict[Path, str]:
    """The files of one base below `directory`: each of `files` as a multi-document YAML file."""
    out = {directory / name: dump_all(objects) for name, objects in files.items()}
    out[directory / KUSTOMIZATION] = kustomization(files, comment)
    return out
