"""deploy/kubernetes/: every base renders, every object validates strictly, and the workloads are
the compose stack's images, run with least privilege and stopped as gracefully as the servers
drain.

The bases are the generator's output now, written to a temporary directory
(tests/support/kubernetes.py, deploy_dir); the expectations come from the files compose builds
and runs from (services/Dockerfile, docker-compose.yml, pyproject.toml), read here.
Kustomizations are resolved in Python; where kubectl is installed, `kubectl kustomize` must render
the same objects. Schemas: kubernetes-validate (core kinds) and
the CRDs of ../shared/schemas/kubernetes, unknown fields being errors in both.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import shutil
import tomllib

import pytest
import yaml

from mlobs.generate import __main__ as generate_main
from mlobs.generate import kibana_objects
from mlobs.generate.kubernetes import PARTS, metrics, render, sources
from mlobs.generate.kubernetes.__main__ import main
from mlobs.generate.kubernetes.cluster import KubernetesSetup
from mlobs.generate.kubernetes.model_servers import MODEL_COMPONENT
from mlobs.generate.kubernetes.sources import RepoSources, SourceError
from mlobs.serve import CLOSE_SECONDS
from mlobs.server import create_app
from mlobs.settings import Settings
from mlobs.spec import duration_seconds, load_spec
from services.alert_sink.app import app as alert_sink_app
from tests.conftest import REPO
from tests.support.kubernetes import (
    DEPLOY,
    FREE_FORM,
    REFINED,
    UnreviewedFreeForm,
    all_objects,
    build,
    containers,
    custom_resources,
    deploy_dir,
    describe,
    kubectl_build,
    kustomization_dirs,
    nodes,
    object_id,
    part,
    pod_specs,
    schema_dir,
    strict_schema,
    validate,
)

SPEC = load_spec(REPO / "observability.yaml")
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
# The tag of our images: the project's version.
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
DOCKERFILE = (REPO / "services/Dockerfile").read_text()
IMAGE_TARGETS = set(re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE, re.MULTILINE))
# The user the images run as.
[(UID, GID)] = [
    tuple(map(int, ids)) for ids in re.findall(r"useradd .*--uid (\d+) --gid (\d+)", DOCKERFILE)
]
# docker's memory units (mem_limit: 256m) and Kubernetes' binary quantities (256Mi).
_MEMORY_UNITS = {"k": 2**10, "m": 2**20, "g": 2**30, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def _by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def _memory_bytes(size: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([A-Za-z]+)", size).groups()
    return int(number) * _MEMORY_UNITS[unit]


def _pod_templates(objects: list[dict]) -> list[tuple[dict, dict]]:
    """(object, pod spec) of every Deployment and Job: the pods that run our images."""
    return [
        (obj, pod)
        for obj in objects
        if obj["kind"] in ("Deployment", "Job")
        for pod in pod_specs(obj)
    ]


# --- kustomize ---------------------------------------------------------------------------------


def test_each_part_is_a_kustomization_whose_resources_exist_and_render():
    assert [d.name for d in kustomization_dirs()] == sorted(PARTS)
    for directory in kustomization_dirs():
        objects = build(directory)
        assert objects, directory


def test_every_manifest_file_belongs_to_a_kustomization():
    """A file no kustomization lists is never applied: one the generator writes without listing
    it, or the manifests of a model removed from the spec, left behind in the checkout by `make
    generate` (which only writes files)."""
    rendered_root = deploy_dir()
    listed = set()
    for directory in kustomization_dirs():
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        base = directory.relative_to(rendered_root)
        listed |= {base / entry for entry in [*kustomization["resources"], "kustomization.yaml"]}
    for root in (rendered_root, REPO / DEPLOY):
        files = {path.relative_to(root) for path in root.rglob("*") if path.is_file()}
        assert files - listed == set(), root


def test_kubectl_kustomize_renders_what_the_tests_check():
    for directory in kustomization_dirs():
        ours = {object_id(obj): obj for obj in build(directory)}
        kubectl = {object_id(obj): obj for obj in kubectl_build(directory)}
        assert ours == kubectl, directory


def test_an_overlay_sets_registry_and_tag_by_the_images_compose_name(tmp_path):
    """README's advice: `images:` names an image as compose does; kustomize matches it whatever
    tag the base gives it."""
    images = {
        f"{COMPOSE['name']}-{m.name}": f"registry.example.com/mlobs/{m.name}" for m in SPEC.models
    }
    kustomization = {
        "resources": [os.path.relpath(deploy_dir() / "model-servers", tmp_path)],
        "images": [{"name": k, "newName": v, "newTag": "1.2.3"} for k, v in images.items()],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    rendered = [c["image"] for c in containers(kubectl_build(tmp_path))]
    assert sorted(rendered) == sorted(f"{name}:1.2.3" for name in images.values())


# --- schemas -----------------------------------------------------------------------------------


def test_every_object_validates_strictly():
    crds = schema_dir()
    errors = {describe(obj): validate(obj, crds) for obj in all_objects()}
    assert {name: e for name, e in errors.items() if e} == {}


def _planted(obj: dict) -> list[tuple[str, dict]]:
    """Copies of `obj` with one unknown field each: in its spec (or top), in its metadata, in
    its first container and in its first child route, where it has them."""
    plants = []
    for where in ("spec", "metadata", "container", "child route"):
        planted = copy.deepcopy(obj)
        if where == "spec":
            target = planted.get("spec", planted)
        elif where == "metadata":
            target = planted["metadata"]
        elif where == "container":
            target = next(iter(containers(planted)), None)
        else:
            target = next(iter(planted.get("spec", {}).get("route", {}).get("routes", [])), None)
        if target is not None:
            target["mlobsUnknownField"] = 1
            plants.append((where, planted))
    return plants


def test_the_validation_refuses_an_unknown_field_anywhere_in_every_kind():
    """Each kind is checked strictly: at its top, in metadata, inside pod templates (which ECK's
    CRDs leave unchecked) and inside an AlertmanagerConfig's child routes (which the operator
    decodes with DisallowUnknownFields, prometheus-operator v0.93.0
    pkg/apis/monitoring/v1alpha1/alertmanager_config_types.go, Route.ChildRoutes)."""
    crds = schema_dir()
    kinds_with_plants: dict[str, set[str]] = {}
    for obj in all_objects():
        for where, planted in _planted(obj):
            assert validate(planted, crds), f"{describe(obj)}: unknown field in {where} accepted"
            kinds_with_plants.setdefault(obj["kind"], set()).add(where)
    assert (
        "container" in kinds_with_plants["Beat"]
        and "child route" in kinds_with_plants["AlertmanagerConfig"]
    )


def test_every_field_a_crd_leaves_unchecked_was_reviewed():
    """A CRD field that keeps unknown fields is either checked against its real schema (pod
    templates, child routes) or listed as an application's own configuration, which the
    tests check by its effect; a new such field in a CRD upgrade fails here until reviewed."""
    crds = schema_dir()
    used = {(obj["apiVersion"], obj["kind"]) for obj in all_objects()}
    for key in used:
        resource = custom_resources(crds).get(key)
        if resource is not None:
            strict_schema(resource)  # raises UnreviewedFreeForm
    kinds = {kind for _, kind in used}
    assert {kind for kind, _ in FREE_FORM} | {kind for kind, _ in REFINED} <= kinds


def test_an_unreviewed_free_form_field_is_reported():
    crds = schema_dir()
    resource = custom_resources(crds)[("kibana.k8s.elastic.co/v1", "Kibana")]
    schema = copy.deepcopy(resource.schema)
    schema["properties"]["spec"]["properties"]["extra"] = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    with pytest.raises(UnreviewedFreeForm, match=r"spec\.extra"):
        strict_schema(type(resource)(resource.api_version, resource.kind, schema))


# --- namespaces --------------------------------------------------------------------------------


def test_other_namespaces_reach_every_url_path_and_label(tmp_path):
    """Namespaces end up inside URLs, Filebeat's paths and the release label, where an overlay's
    `namespace:` cannot reach: `python -m mlobs.generate.kubernetes` renders them all."""
    setup = KubernetesSetup(namespace="ml-prod", monitoring_namespace="obs", release="kps")
    assert (
        main(
            [
                *("--out", str(tmp_path), "--root", str(REPO)),
                *("--spec", str(REPO / "observability.yaml")),
                *("--namespace", "ml-prod", "--monitoring-namespace", "obs", "--release", "kps"),
            ]
        )
        == 0
    )
    objects = [obj for name in PARTS for obj in build(tmp_path / name)]
    assert {obj["metadata"]["namespace"] for obj in objects} == {"ml-prod", "obs"}
    # ConfigMap data (the datasources' YAML) is one string: searched as a whole.
    strings = [s for s in nodes(objects) if isinstance(s, str)]
    defaults = KubernetesSetup()
    leftovers = [
        s
        for s in strings
        for old in (
            f".{defaults.namespace}.svc",
            f"_{defaults.namespace}_",
            f".{defaults.monitoring_namespace}.svc",
        )
        if old in s
    ]
    assert leftovers == []
    for new in (".ml-prod.svc", "_ml-prod_", ".obs.svc"):
        assert any(new in s for s in strings), new
    releases = {
        obj["metadata"]["labels"].get("release")
        for obj in objects
        if obj["kind"] in ("ServiceMonitor", "PrometheusRule")
    }
    assert releases == {setup.release}


def _repo_with(tmp_path, edit_compose=None, edit_text=None):
    """A copy of every file the Kubernetes manifests read; edit_compose changes the parsed compose
    file, edit_text maps other files to a change of their text."""
    root = tmp_path / "repo"
    paths = (
        sources.DOCKERFILE,
        sources.PYPROJECT,
        sources.ENV_EXAMPLE,
        sources.COMPOSE_FILE,
        sources.FILEBEAT_FILE,
        sources.LOGSTASH_SETTINGS,
        sources.LOGSTASH_PIPELINES,
        sources.KIBANA_SETTINGS,
        sources.GRAFANA_DATASOURCES,
        kibana_objects.MAPPING_FILE,
    )
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / path, root / path)
    if edit_compose:
        compose = copy.deepcopy(COMPOSE)
        edit_compose(compose)
        (root / sources.COMPOSE_FILE).write_text(yaml.safe_dump(compose))
    for path, edit in (edit_text or {}).items():
        (root / path).write_text(edit((root / path).read_text()))
    return root


def _environment(service: str, name: str, value):
    def edit(compose: dict) -> None:
        environment = compose["services"][service]["environment"]
        if value is None:
            del environment[name]
        else:
            environment[name] = value

    return edit


def _replace(pattern: str, replacement: str):
    return lambda text: re.sub(pattern, replacement, text, flags=re.MULTILINE)


def _set(service: str, key: str, value: str):
    return lambda compose: compose["services"][service].update({key: value})


def _without_service(name: str):
    return lambda compose: compose["services"].pop(name)


def test_both_commands_report_a_source_that_no_longer_fits_without_a_traceback(tmp_path, capsys):
    """A compose file without the project `name` (which names the images): `make generate` and
    `python -m mlobs.generate.kubernetes` say so and write nothing."""
    root = _repo_with(tmp_path, edit_compose=lambda compose: compose.pop("name"))
    before = sorted(root.rglob("*"))
    spec = str(REPO / "observability.yaml")
    out = tmp_path / "out"
    for run, extra in ((generate_main.main, []), (main, ["--out", str(out)])):
        assert run(["--root", str(root), "--spec", spec, *extra]) == 2
        assert "docker-compose.yml: no project `name`" in capsys.readouterr().err
    assert sorted(root.rglob("*")) == before and not out.exists()


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        pytest.param(
            {"edit_text": {sources.ENV_EXAMPLE: _replace(r"^ELASTIC_VERSION=.*\n", "")}},
            ".env.example: ELASTIC_VERSION has no default",
            id="version-missing",
        ),
        pytest.param(
            {
                "edit_text": {
                    sources.ENV_EXAMPLE: _replace(r"^ELASTIC_VERSION=.*$", "ELASTIC_VERSION=")
                }
            },
            ".env.example: ELASTIC_VERSION has no default",
            id="version-empty",
        ),
        pytest.param(
            {"edit_compose": _without_service("setup")},
            "docker-compose.yml: no service setup",
            id="service-missing",
        ),
        pytest.param(
            {
                "edit_compose": lambda compose: compose["services"]["chatbot"].pop(
                    "stop_grace_period"
                )
            },
            "docker-compose.yml: chatbot sets no stop_grace_period",
            id="grace-missing",
        ),
        pytest.param(
            {"edit_text": {sources.DOCKERFILE: _replace(" AS chatbot$", " AS chat-bot")}},
            "services/Dockerfile: no build target chatbot",
            id="target-renamed",
        ),
        pytest.param(
            {"edit_text": {sources.LOGSTASH_PIPELINES: _replace("inference.conf", "other.conf")}},
            "pipelines.yml runs /usr/share/logstash/pipeline/other.conf, not the generated one",
            id="pipeline-not-generated",
        ),
        pytest.param(
            {"edit_text": {sources.DOCKERFILE: _replace(r"useradd\b", "adduser")}},
            "services/Dockerfile: no `useradd --uid N --gid N` to run as",
            id="user-missing",
        ),
        pytest.param(
            {"edit_compose": _set("chatbot", "mem_limit", "256MB")},
            "docker-compose.yml: chatbot mem_limit '256MB' is not like 256m or 2g",
            id="memory-unit",
        ),
        pytest.param(
            {"edit_compose": _set("chatbot", "stop_grace_period", "soon")},
            "docker-compose.yml: chatbot stop_grace_period: 'soon' is not a duration like 30s, "
            "5m or 1h",
            id="grace-not-a-duration",
        ),
        pytest.param(
            {"edit_compose": _environment("elasticsearch", "ES_JAVA_OPTS", "${ES_HEAP}")},
            "docker-compose.yml: elasticsearch sets no literal ES_JAVA_OPTS",
            id="heap-from-env-file",
        ),
        pytest.param(
            {"edit_compose": _environment("elasticsearch", "ES_JAVA_OPTS", None)},
            "docker-compose.yml: elasticsearch sets no literal ES_JAVA_OPTS",
            id="heap-missing",
        ),
    ],
)
def test_a_source_without_what_the_cluster_needs_is_named_and_nothing_written(
    tmp_path, capsys, edits, message
):
    """The cluster takes versions, sizes and JVM options from the compose stack's files; when one
    of them stops saying it, the generator names the file and the value instead of writing a
    manifest with a placeholder or an unexpanded ${...}."""
    out = tmp_path / "out"
    root = _repo_with(tmp_path, **edits)
    assert (
        main(["--root", str(root), "--spec", str(REPO / "observability.yaml"), "--out", str(out)])
        == 2
    )
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not out.exists()


def test_pods_run_as_the_dockerfiles_user_and_group_and_defaults_are_taken_whole(tmp_path):
    """A Dockerfile whose group id differs from its user id, and a default holding "=": our pods
    run as that user and group, and the setup Job gets everything after the first "="."""
    root = _repo_with(
        tmp_path,
        edit_text={
            sources.DOCKERFILE: _replace(r"(useradd --uid \d+ --gid )\d+", r"\g<1>20002"),
            sources.ENV_EXAMPLE: _replace(r"^LOGSTASH_WRITER_USER=.*$", "LOGSTASH_WRITER_USER=a=b"),
        },
    )
    rendered = render(SPEC, root, KubernetesSetup())
    objects = [
        doc
        for path, text in rendered.items()
        if path.suffix == ".yaml"
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    ours = [pod for _, pod in _pod_templates(objects)]
    assert ours
    for pod in ours:
        security = pod["securityContext"]
        assert (security["runAsUser"], security["runAsGroup"]) == (UID, 20002)
    writer_users = {
        env["value"]
        for obj in objects
        for container in containers(obj)
        for env in container.get("env", [])
        if env["name"] == "LOGSTASH_WRITER_USER"
    }
    assert writer_users == {"a=b"}


# --- workloads ---------------------------------------------------------------------------------


def test_each_model_of_the_spec_runs_the_image_compose_builds_for_it():
    objects = part("model-servers")
    deployments = {d["metadata"]["name"]: d for d in _by_kind(objects, "Deployment")}
    assert set(deployments) == {m.name for m in SPEC.models}
    for model in SPEC.models:
        [container] = deployments[model.name]["spec"]["template"]["spec"]["containers"]
        assert COMPOSE["services"][model.name]["build"]["target"] == model.name
        assert container["image"] == f"{COMPOSE['name']}-{model.name}:{VERSION}"
        assert model.name in IMAGE_TARGETS


def test_every_image_is_a_build_target_tagged_with_the_project_version():
    images = [c["image"] for _, pod in _pod_templates(all_objects()) for c in pod["containers"]]
    assert images
    for image in images:
        name, tag = image.rsplit(":", 1)
        target = name.removeprefix(f"{COMPOSE['name']}-")
        assert tag == VERSION and target in IMAGE_TARGETS, image


def test_each_model_has_a_service_and_a_disruption_budget_selecting_its_pods():
    objects = part("model-servers")
    for model in SPEC.models:
        [deployment] = [
            d for d in _by_kind(objects, "Deployment") if d["metadata"]["name"] == model.name
        ]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        [service] = [s for s in _by_kind(objects, "Service") if s["metadata"]["name"] == model.name]
        [budget] = [
            b
            for b in _by_kind(objects, "PodDisruptionBudget")
            if b["metadata"]["name"] == model.name
        ]
        for selector in (service["spec"]["selector"], budget["spec"]["selector"]["matchLabels"]):
            assert selector.items() <= pod_labels.items()
        # The selector picks this model's pods only.
        others = [d for d in _by_kind(objects, "Deployment") if d is not deployment]
        for other in others:
            assert (
                not service["spec"]["selector"].items()
                <= other["spec"]["template"]["metadata"]["labels"].items()
            )
        assert budget["spec"]["maxUnavailable"] == 1
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8080}
        assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_probes_and_scrapes_use_paths_the_servers_answer(anomaly_model):
    model_routes = {route.path for route in create_app(anomaly_model).routes}
    sink_routes = {route.path for route in alert_sink_app.routes}
    objects = all_objects()
    for obj, pod in _pod_templates(objects):
        routes = (
            model_routes
            if obj["metadata"]["labels"]["app.kubernetes.io/component"] == MODEL_COMPONENT
            else sink_routes
        )
        for container in pod["containers"]:
            probes = {k: v for k, v in container.items() if k.endswith("Probe")}
            if obj["kind"] == "Job":
                assert probes == {}
                continue
            assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert {p["httpGet"]["path"] for p in probes.values()} <= routes
    for monitor in _by_kind(objects, "ServiceMonitor"):
        assert {e["path"] for e in monitor["spec"]["endpoints"]} <= model_routes


def test_our_pods_run_as_the_images_user_with_nothing_writable_but_empty_dirs():
    """Pod Security Standard "restricted" for every pod of our images, as services/Dockerfile's
    user; the only writable mounts are emptyDirs (compose: read_only plus a /tmp tmpfs)."""
    pods = _pod_templates(all_objects())
    assert len(pods) >= len(SPEC.models) + 2  # models, alert-sink, the setup Jobs
    for obj, pod in pods:
        name = describe(obj)
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert (context["runAsUser"], context["runAsGroup"]) == (UID, GID), name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["enableServiceLinks"] is False, name
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            for mount in container["volumeMounts"]:
                volume = volumes[mount["name"]]
                assert mount.get("readOnly") or "emptyDir" in volume, (name, mount)
            assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"]), name


def _runs_as_root(obj: dict) -> bool:
    """Some security context of `obj` asks for uid 0 or a privileged container."""
    return any(
        isinstance(node, dict) and (node.get("runAsUser") == 0 or node.get("privileged") is True)
        for node in nodes(obj)
    )


def test_only_filebeat_runs_as_root_and_it_mounts_the_log_directories_read_only():
    objects = all_objects()
    root_pods = [obj for obj in objects if _runs_as_root(obj)]
    assert [obj["kind"] for obj in root_pods] == ["Beat"]
    pod = root_pods[0]["spec"]["daemonSet"]["podTemplate"]["spec"]
    [container] = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    # kubelet's /var/log/containers holds symlinks into /var/log/pods: both are mounted, at
    # the same paths so that the links resolve, and read-only.
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    mounted = {
        (host_paths[m["name"]], m["mountPath"], m.get("readOnly"))
        for m in container["volumeMounts"]
        if m["name"] in host_paths
    }
    assert mounted == {(path, path, True) for path in ("/var/log/containers", "/var/log/pods")}
    assert pod["automountServiceAccountToken"] is False


def test_every_container_has_memory_requested_and_limited_as_in_compose():
    objects = all_objects()
    found = [(describe(obj), c) for obj in objects for c in containers(obj)]
    assert len(found) >= len(SPEC.models) + 6
    for name, container in found:
        resources = container["resources"]
        assert resources["requests"]["memory"] == resources["limits"]["memory"], name
        assert "cpu" in resources["requests"], name
    for obj, pod in _pod_templates(objects):
        if obj["metadata"]["labels"]["app.kubernetes.io/component"] == MODEL_COMPONENT:
            [container] = pod["containers"]
            assert "cpu" in container["resources"]["limits"]
            compose = COMPOSE["services"][obj["metadata"]["name"]]
            limit = container["resources"]["limits"]["memory"]
            assert _memory_bytes(limit) == _memory_bytes(compose["mem_limit"]), describe(obj)


def test_a_terminating_pod_serves_until_routing_forgets_it_then_drains_as_under_compose():
    """Kubernetes takes a pod out of its Services while it sends SIGTERM, and proxies learn of
    it a moment later: a preStop sleep (an action of the kubelet, no binary in the image) keeps
    the server serving meanwhile instead of shedding those requests with 503. The grace period
    counts the sleep, then compose's stop_grace_period, which leaves time beyond
    MLOBS_SHUTDOWN_GRACE_SECONDS's drain to close connections and flush."""
    pods = _pod_templates(part("model-servers"))
    assert len(pods) == len(SPEC.models)
    for obj, pod in pods:
        [container] = pod["containers"]
        assert set(container["lifecycle"]) == {"preStop"}, describe(obj)
        [(action, sleep)] = container["lifecycle"]["preStop"].items()
        assert action == "sleep" and sleep["seconds"] >= 3, describe(obj)
        compose = COMPOSE["services"][obj["metadata"]["name"]]
        grace = duration_seconds(compose["stop_grace_period"])
        assert grace > Settings().shutdown_grace_seconds + CLOSE_SECONDS
        assert pod["terminationGracePeriodSeconds"] == sleep["seconds"] + grace, describe(obj)


def test_rolling_updates_never_go_below_the_replicas():
    for deployment in _by_kind(part("model-servers"), "Deployment"):
        strategy = deployment["spec"]["strategy"]
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0
        assert deployment["spec"]["replicas"] >= 2


def _sources_with_datasources(datasources: list[dict]) -> RepoSources:
    return dataclasses.replace(RepoSources.read(REPO), datasources={"datasources": datasources})


def test_grafanas_datasources_need_both_uids_of_the_compose_stack():
    """Renaming a datasource uid in grafana/provisioning breaks every dashboard: the Kubernetes
    generator refuses it, naming the uid, instead of writing a datasource nothing refers to."""
    prometheus_only = [
        ds for ds in RepoSources.read(REPO).datasources["datasources"] if ds["uid"] == "prometheus"
    ]
    with pytest.raises(SourceError, match=r"no datasource with uid \['elasticsearch'\]"):
        metrics.datasources(KubernetesSetup(), _sources_with_datasources(prometheus_only))


def test_an_elasticsearch_datasource_without_secrets_still_gets_the_clusters_ca():
    compose = RepoSources.read(REPO).datasources["datasources"]
    without_secrets = [{k: v for k, v in ds.items() if k != "secureJsonData"} for ds in compose]
    rendered = metrics.datasources(KubernetesSetup(), _sources_with_datasources(without_secrets))
    [es] = [ds for ds in rendered["datasources"] if ds["uid"] == "elasticsearch"]
    assert list(es["secureJsonData"]) == ["tlsCACert"]
