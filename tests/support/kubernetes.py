"""Checking Kubernetes manifests where no cluster runs: kustomize, and strict schema validation.

- The bases: deploy/kubernetes/ as the generator renders it now (tests.support.generated), written
  to a temporary directory for kustomize, so that a change of mlobs/generate/kubernetes/ (or a
  mutant of it) meets the tests without `make generate`; the committed files equal it
  (tests/unit/test_generated_files.py).
- Kustomize: the bases list manifest files in `resources` and use no other field; `build` loads
  them and raises on anything else. Where kubectl is installed, `kubectl kustomize` renders them
  too and the two must agree.
- Core kinds validate against kubernetes-validate's strict schemas (unknown fields are errors).
- Custom resources validate against the openAPIV3Schema of their CRD (MLOBS_KUBERNETES_SCHEMAS,
  default ../shared/schemas/kubernetes: Prometheus Operator v0.93.0 and ECK v3.5.0), made strict
  the way the API server treats them: a field the schema does not declare is pruned, so every
  object without `x-kubernetes-preserve-unknown-fields` refuses unknown fields here. Where a CRD
  preserves unknown fields for something with a known schema (a pod template, metadata, an
  AlertmanagerConfig's child routes), that schema is checked instead; the rest is application
  configuration (FREE_FORM), which the tests check by what it does.
"""

from __future__ import annotations

import atexit
import copy
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource

from tests.conftest import REPO, REQUIRE_TOOLS
from tests.support.generated import rendered

DEPLOY = Path("deploy/kubernetes")  # the bases, relative to the repository root
README = REPO / "README.md"
KUBERNETES_VERSION = "1.32"
DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = f"{DEFINITIONS_ID}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
POD_TEMPLATE = f"{DEFINITIONS_ID}#/$defs/io.k8s.api.core.v1.PodTemplateSpec"
# Fields a CRD keeps as they are, holding the configuration of the application itself.
FREE_FORM = {
    ("Beat", "spec.config"): "filebeat.yml",
    ("Elasticsearch", "spec.nodeSets[].config"): "elasticsearch.yml",
    ("Elasticsearch", "spec.remoteClusters[].apiKey.access.search.query"): "a query DSL",
    ("Kibana", "spec.config"): "kibana.yml",
    ("Logstash", "spec.config"): "logstash.yml",
    ("Logstash", "spec.pipelines"): "pipelines.yml",
}
# Fields a CRD keeps as they are although they have a schema: checked against it instead.
REFINED = {
    ("AlertmanagerConfig", "spec.route.routes[]"): "#/properties/spec/properties/route",
}
KUSTOMIZE_FIELDS = {"apiVersion", "kind", "resources"}


# --- YAML and kustomize ------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """The safe loader plus `=` (a bare `=` is YAML's `value` tag, in some CRDs' enums), without
    changing yaml.SafeLoader for everyone else."""


_Loader.add_constructor(
    "tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node)
)


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.load_all(path.read_text(), Loader=_Loader) if doc]


def deploy_dir() -> Path:
    """deploy/kubernetes/ as rendered now, on disk: written once per distinct rendering (a
    mutant's differs from the code's) and removed when the tests end."""
    files = sorted((path, text) for path, text in rendered().items() if path.is_relative_to(DEPLOY))
    return _written(tuple(files)) / DEPLOY


@cache
def _written(files: tuple[tuple[Path, str], ...]) -> Path:
    root = Path(tempfile.mkdtemp(prefix="mlobs-deploy-"))
    atexit.register(_remove, root, os.getpid())
    for path, text in files:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def _remove(root: Path, pid: int) -> None:
    # A forked child (mutmut runs each mutant in one) inherits the handler: the tree is its
    # parent's, still in use.
    if os.getpid() == pid:
        shutil.rmtree(root, ignore_errors=True)


@cache
def _objects(directory: Path) -> list[dict[str, Any]]:
    return build(directory)


def part(name: str) -> list[dict[str, Any]]:
    """The objects of one base of deploy/kubernetes/ as rendered now. Shared between callers:
    copy before changing them."""
    return _objects(deploy_dir() / name)


def kustomization_dirs() -> list[Path]:
    """The bases of deploy/kubernetes/ as rendered now."""
    return sorted(path.parent for path in deploy_dir().rglob("kustomization.yaml"))


def object_id(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def nodes(obj: Any) -> Iterator[Any]:
    """`obj` and everything inside it, depth first: each dict, list and scalar (not dict keys)."""
    yield obj
    children = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else ()
    for child in children:
        yield from nodes(child)


def pod_specs(obj: Any) -> list[dict[str, Any]]:
    """Every pod spec in an object, wherever it is (a Deployment's template, an ECK podTemplate)."""
    return [node for node in nodes(obj) if isinstance(node, dict) and "containers" in node]


def containers(obj: Any) -> list[dict[str, Any]]:
    """Every container, init containers too, of every pod spec in an object."""
    return [
        container
        for pod in pod_specs(obj)
        for container in pod["containers"] + pod.get("initContainers", [])
    ]


def build(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize directory` renders, for the fields our bases use."""
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no kustomization.yaml")
    kustomization = yaml.safe_load(path.read_text())
    unknown = set(kustomization) - KUSTOMIZE_FIELDS
    if unknown:
        raise NotImplementedError(f"{path}: kustomize fields {sorted(unknown)} not modelled")
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        resource = directory / entry
        if not resource.is_file():
            raise FileNotFoundError(f"{path}: {entry} is no file (other bases are not modelled)")
        objects += load_documents(resource)
    ids = [object_id(obj) for obj in objects]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise ValueError(f"{path}: objects defined twice: {sorted(duplicates)}")
    return objects


def readme_secrets() -> dict[tuple[str, str], set[str]]:
    """The Secrets README.md's "Production on Kubernetes" has the user create, by (namespace,
    name): the keys of each `kubectl -n NS create secret generic NAME --from-literal=KEY=...`
    (or --from-file=KEY=...) command."""
    text = README.read_text()
    section = text.split("\n## Production on Kubernetes\n", 1)[1].split("\n## ", 1)[0]
    secrets = {}
    for command in section.replace("\\\n", " ").splitlines():
        match = re.search(r"kubectl -n (\S+) create secret generic (\S+)", command)
        if match:
            keys = re.findall(r"--from-(?:literal|file)=(\w+)=", command)
            secrets[(match.group(1), match.group(2))] = set(keys)
    assert secrets, "README: no `kubectl -n NS create secret generic` command"
    return secrets


def kubectl_build(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize directory`; skips without kubectl. kubectl is not among the tools CI
    installs (.ci/run: Prometheus and Alertmanager), so MLOBS_REQUIRE_TOOLS does not demand it;
    the resolver above covers the fields we use either way."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomizations are resolved in Python only")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}:\n{result.stderr}"
    return [doc for doc in yaml.load_all(result.stdout, Loader=_Loader) if doc]


def all_objects() -> list[dict[str, Any]]:
    """Every object of every base as rendered now (shared: copy before changing them)."""
    return [obj for directory in kustomization_dirs() for obj in _objects(directory)]


# --- schemas -----------------------------------------------------------------------------------


def schema_dir() -> Path:
    """The CRDs: MLOBS_KUBERNETES_SCHEMAS, or ../shared/schemas/kubernetes beside the checkout.
    Skips without them (fails instead under MLOBS_REQUIRE_TOOLS=1)."""
    default = REPO.parent / "shared/schemas/kubernetes"
    path = Path(os.environ.get("MLOBS_KUBERNETES_SCHEMAS", default))
    if not any(path.rglob("*.yaml")):
        message = f"CRD schemas not found in {path} (set MLOBS_KUBERNETES_SCHEMAS)"
        if REQUIRE_TOOLS:
            pytest.fail(f"MLOBS_REQUIRE_TOOLS=1 but {message}")
        pytest.skip(message)
    return path


@dataclass(frozen=True)
class CustomResource:
    """One served version of a CRD."""

    api_version: str
    kind: str
    schema: dict[str, Any]  # openAPIV3Schema as the CRD has it


@cache
def custom_resources(directory: Path) -> dict[tuple[str, str], CustomResource]:
    found = {}
    for path in sorted(directory.rglob("*.yaml")):
        for doc in load_documents(path):
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                if version.get("served"):
                    api = f"{group}/{version['name']}"
                    schema = version["schema"]["openAPIV3Schema"]
                    found[(api, kind)] = CustomResource(api, kind, schema)
    return found


@cache
def _definitions() -> dict[str, Any]:
    folder = f"v{KUBERNETES_VERSION}.0-local-strict"
    path = resources.files("kubernetes_validate") / "kubernetes-json-schema" / folder
    return yaml.safe_load((path / "_definitions.json").read_text())


class UnreviewedFreeForm(Exception):
    """A CRD field keeps unknown fields and is neither refined nor listed in FREE_FORM."""


def strict_schema(resource: CustomResource) -> dict[str, Any]:
    """The CRD's schema with unknown fields refused (what the API server would prune)."""

    def walk(node: dict[str, Any], path: str) -> dict[str, Any]:
        node = copy.copy(node)
        is_object = node.get("type") == "object"
        if path == "metadata":
            return {"$ref": OBJECT_META}
        if node.get("x-kubernetes-preserve-unknown-fields"):
            if (resource.kind, path) in REFINED:
                return {"$ref": REFINED[(resource.kind, path)]}
            if path.rsplit(".", 1)[-1] == "podTemplate":
                return {"$ref": POD_TEMPLATE}
            if (resource.kind, path) not in FREE_FORM:
                raise UnreviewedFreeForm(f"{resource.kind} {path}")
            return node
        if node.get("nullable"):
            kinds = node.get("type")
            node["type"] = [*([kinds] if isinstance(kinds, str) else kinds or []), "null"]
        if "properties" in node:
            node["properties"] = {
                key: walk(value, f"{path}.{key}".lstrip("."))
                for key, value in node["properties"].items()
            }
        if isinstance(node.get("items"), dict):
            node["items"] = walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            node["additionalProperties"] = walk(node["additionalProperties"], f"{path}{{}}")
        elif is_object and "additionalProperties" not in node:
            node["additionalProperties"] = False
        return node

    return walk(resource.schema, "")


@cache
def _validator(directory: Path, api_version: str, kind: str) -> jsonschema.Validator:
    resource = custom_resources(directory)[(api_version, kind)]
    definitions = Resource.from_contents(_definitions())
    registry = Registry().with_resource(DEFINITIONS_ID, definitions)
    return jsonschema.Draft202012Validator(strict_schema(resource), registry=registry)


def validate(obj: dict[str, Any], crds: Path) -> list[str]:
    """Every reason the API server (or the CRD's schema) would refuse or prune `obj`."""
    key = (obj["apiVersion"], obj["kind"])
    if key in custom_resources(crds):
        errors = _validator(crds, *key).iter_errors(obj)
        return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"no schema: {exc.message}"]
    return []


def describe(obj: dict[str, Any]) -> str:
    api, kind, namespace, name = object_id(obj)
    return f"{kind} {namespace}/{name} ({api})"
