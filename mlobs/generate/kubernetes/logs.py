"""The inference log path on ECK (Elastic Cloud on Kubernetes v3.5.0): Filebeat -> Logstash ->
Elasticsearch -> Kibana, with this repository's pipeline, templates, roles and saved objects.

Filebeat reads the model servers' stdout, the usual source on Kubernetes: every mlobs line goes to
stdout, and the servers get no log file here (no shared volume between pods). A DaemonSet reads
/var/log/containers/<pod>_<namespace>_model-server-<id>.log on each node with compose's ndjson
parser behind a container parser, keeps only `message: inference` events (stdout also carries
server_ready, draining and anything a model prints) and drops the `stream` field that the container
parser adds, so the events are the compose stack's: same field names, same fingerprint. The
file's path (log.file.path) names the pod.

Elasticsearch and Kibana speak TLS with ECK's self-signed CAs: Logstash, the setup Jobs and Grafana
verify against them. setup/ (the `setup` image) installs templates, ILM, roles and users, then
imports the Kibana saved objects, as two Jobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlobs.generate import logstash_pipeline
from mlobs.generate.kubernetes import model_servers, pods
from mlobs.generate.kubernetes.cluster import (
    BEATS_PORT,
    CREDENTIALS_KEYS,
    CREDENTIALS_SECRET,
    ELASTIC_NAME,
    ELASTIC_PASSWORD_VARIABLE,
    ES_CA_SECRET,
    ES_ELASTIC_USER_SECRET,
    ES_PORT,
    ES_SERVICE,
    KIBANA_CA_SECRET,
    KIBANA_PORT,
    KIBANA_SERVICE,
    LOGSTASH_BEATS_SERVICE,
    LOGSTASH_BEATS_SERVICE_NAME,
    KubernetesSetup,
)
from mlobs.generate.kubernetes.sources import RepoSources, SourceError
from mlobs.logs import INFERENCE
from mlobs.spec import Spec

ES_DATA_SIZE = "20Gi"
LOGSTASH_DATA_SIZE = "2Gi"  # persisted queue (512mb) and dead letter queue (256mb) of logstash.yml
CA_DIR = "/etc/mlobs/ca"  # where our pods mount an ECK CA (<volume>/ca.crt)
ES_CA_VOLUME, KIBANA_CA_VOLUME = "elasticsearch-ca", "kibana-ca"
SETUP_TIMEOUT_SECONDS = "600"  # a first start of Elasticsearch or Kibana on a cluster takes minutes
# Filebeat's container parser adds `stream` (and, with Docker's json-file logs, docker.attrs)
# to each event (elastic/beats libbeat/reader/readjson/docker_json.go); neither is ours nor in the
# compose stack's events.
CONTAINER_PARSER_FIELDS = ("stream", "docker")
# Settings ECK owns: it sets them itself, from the resources' spec.
ECK_KIBANA_SETTINGS = (  # elastic/cloud-on-k8s v3.5.0 pkg/controller/kibana/config_settings.go
    "server.host",
    "server.name",
    "elasticsearch.hosts",
    "elasticsearch.username",
    "elasticsearch.password",
    "xpack.encryptedSavedObjects.encryptionKey",
)
# The API ECK configures and probes (pkg/controller/logstash/config.go, defaultConfig).
ECK_LOGSTASH_SETTING_PREFIX = "api."


def _resource(api: str, kind: str, spec: dict[str, Any], setup: KubernetesSetup) -> dict[str, Any]:
    metadata = pods.metadata(ELASTIC_NAME, setup.namespace)
    return {"apiVersion": api, "kind": kind, "metadata": metadata, "spec": spec}


def _container(name: str, sources: RepoSources, cpu: str, **fields: Any) -> dict[str, Any]:
    """An ECK container override: the memory limit of compose's service of the same name, the
    CPU it asks for, and `fields`."""
    resources = pods.Resources(sources.service(name).memory, cpu_request=cpu)
    return {"name": name, "resources": resources.as_dict(), **fields}


def _ca_mount(name: str) -> dict[str, Any]:
    return {"name": name, "mountPath": f"{CA_DIR}/{name}", "readOnly": True}


def _ca_file(name: str) -> str:
    return f"{CA_DIR}/{name}/ca.crt"


def elasticsearch(setup: KubernetesSetup, sources: RepoSources) -> dict[str, Any]:
    """One node, as compose (the index template asks for no replicas). Its heap is compose's."""
    java = sources.literal_env("elasticsearch", "ES_JAVA_OPTS")
    container = _container("elasticsearch", sources, "500m", env=[pods.env("ES_JAVA_OPTS", java)])
    node_set = {
        "name": "default",
        "count": 1,
        # Without it Elasticsearch needs vm.max_map_count >= 262144 on every node (a privileged
        # sysctl); mmap is faster, so set that on the nodes and remove this in production.
        "config": {"node.store.allow_mmap": False},
        "podTemplate": {"spec": {"containers": [container]}},
        # The claim name ECK mounts as the data directory.
        "volumeClaimTemplates": [pods.claim("elasticsearch-data", ES_DATA_SIZE)],
    }
    spec = {"version": sources.env("ELASTIC_VERSION"), "nodeSets": [node_set]}
    return _resource("elasticsearch.k8s.elastic.co/v1", "Elasticsearch", spec, setup)


def kibana(setup: KubernetesSetup, sources: RepoSources) -> dict[str, Any]:
    """kibana/kibana.yml without what ECK sets (hosts, login, encryption key, server)."""
    config = {k: v for k, v in sources.kibana_settings.items() if k not in ECK_KIBANA_SETTINGS}
    node = sources.literal_env("kibana", "NODE_OPTIONS")
    container = _container("kibana", sources, "250m", env=[pods.env("NODE_OPTIONS", node)])
    spec = {
        "version": sources.env("ELASTIC_VERSION"),
        "count": 1,
        "elasticsearchRef": {"name": ELASTIC_NAME},
        "config": config,
        "podTemplate": {"spec": {"containers": [container]}},
    }
    return _resource("kibana.k8s.elastic.co/v1", "Kibana", spec, setup)


def logstash(spec: Spec, setup: KubernetesSetup, sources: RepoSources) -> dict[str, Any]:
    """logstash.yml (without the API settings ECK owns) and pipelines.yml of the compose stack,
    the generated pipeline inline; a Service for the beats input; the queue on a volume."""
    config = {
        k: v
        for k, v in sources.logstash_settings.items()
        if not k.startswith(ECK_LOGSTASH_SETTING_PREFIX)
    }
    [pipeline] = sources.logstash_pipelines
    if Path(pipeline["path.config"]).name != logstash_pipeline.PIPELINE_FILE.name:
        raise SourceError(f"pipelines.yml runs {pipeline['path.config']}, not the generated one")
    # The generated pipeline, verifying ECK's Elasticsearch certificate (https here).
    [text] = logstash_pipeline.render(spec, ca_file=_ca_file(ES_CA_VOLUME)).values()
    pipelines = [
        {**{k: v for k, v in pipeline.items() if k != "path.config"}, "config.string": text}
    ]
    env = [
        pods.env("ELASTICSEARCH_URL", f"https://{ES_SERVICE}:{ES_PORT}"),
        pods.env("LOGSTASH_WRITER_USER", sources.env("LOGSTASH_WRITER_USER")),
        pods.secret_env("LOGSTASH_WRITER_PASSWORD", CREDENTIALS_SECRET, "LOGSTASH_WRITER_PASSWORD"),
        pods.env("LS_JAVA_OPTS", sources.literal_env("logstash", "LS_JAVA_OPTS")),
    ]
    mounts = [_ca_mount(ES_CA_VOLUME)]
    container = _container("logstash", sources, "250m", env=env, volumeMounts=mounts)
    beats = {"name": "beats", "port": BEATS_PORT, "targetPort": BEATS_PORT, "protocol": "TCP"}
    spec_ = {
        "version": sources.env("ELASTIC_VERSION"),
        "count": 1,
        "config": config,
        "pipelines": pipelines,
        "services": [
            {
                "name": LOGSTASH_BEATS_SERVICE_NAME,
                "service": {"spec": {"type": "ClusterIP", "ports": [beats]}},
            }
        ],
        "podTemplate": {
            "spec": {
                "containers": [container],
                "volumes": [pods.ca_volume(ES_CA_VOLUME, ES_CA_SECRET)],
            }
        },
        "volumeClaimTemplates": [pods.claim("logstash-data", LOGSTASH_DATA_SIZE)],  # on path.data
    }
    return _resource("logstash.k8s.elastic.co/v1alpha1", "Logstash", spec_, setup)


def model_log_glob(setup: KubernetesSetup) -> str:
    """The kubelet's links to the model servers' stdout logs: <pod>_<namespace>_<container>-<id>."""
    return f"/var/log/containers/*_{setup.namespace}_{model_servers.MODEL_CONTAINER}-*.log"


def filebeat_config(setup: KubernetesSetup, sources: RepoSources) -> dict[str, Any]:
    """filebeat/filebeat.yml with the containers' stdout as input instead of the shared files."""
    compose = sources.filebeat
    [compose_input] = compose["filebeat.inputs"]
    replaced = ("id", "paths", "file_identity.native", "parsers", "processors")
    stdout_input = {
        **{k: v for k, v in compose_input.items() if k not in replaced},
        "id": "mlobs-inference-stdout",
        "paths": [model_log_glob(setup)],
        # /var/log/containers holds symlinks into /var/log/pods. File identity: Filebeat 9's
        # default fingerprint (ECK's recipes too): container log files come and go, and inodes
        # are reused.
        "prospector.scanner.symlinks": True,
        # The container parser takes the line out of the CRI (or Docker json-file) record and
        # joins lines the runtime split at 16 KiB; then compose's ndjson parser, unchanged.
        "parsers": [
            {"container": {"stream": "stdout", "format": "auto"}},
            *compose_input["parsers"],
        ],
        # Only inference events: unlike compose's file, stdout also carries whatever a model
        # prints, which does not belong in the inference data stream even when it is not JSON.
        # Then away with what the container parser adds.
        "processors": [
            {"drop_event": {"when": {"not": {"equals": {"message": INFERENCE}}}}},
            {"drop_fields": {"fields": list(CONTAINER_PARSER_FIELDS), "ignore_missing": True}},
        ],
    }
    return {
        **compose,
        "filebeat.inputs": [stdout_input],
        "output.logstash": {"hosts": [f"{LOGSTASH_BEATS_SERVICE}:{BEATS_PORT}"]},
    }


def filebeat(setup: KubernetesSetup, sources: RepoSources) -> dict[str, Any]:
    """A DaemonSet: one Filebeat per node reads that node's container logs. It runs as root, the
    owner of the kubelet's log files, with no capability and no token; it mounts the log
    directories read-only, and ECK adds a writable hostPath for its registry
    (/var/lib/<namespace>/<name>/filebeat-data, pkg/controller/beat/common/pod.go)."""
    host_paths = {"varlogcontainers": "/var/log/containers", "varlogpods": "/var/log/pods"}
    security = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    container = _container(
        "filebeat",
        sources,
        "100m",  # ECK's default for Beats (pkg/controller/beat/common/pod.go)
        securityContext=security,
        volumeMounts=[
            {"name": name, "mountPath": path, "readOnly": True} for name, path in host_paths.items()
        ],
    )
    pod = {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [
            {"name": name, "hostPath": {"path": path, "type": "Directory"}}
            for name, path in host_paths.items()
        ],
    }
    spec = {
        "type": "filebeat",
        "version": sources.env("ELASTIC_VERSION"),
        "config": filebeat_config(setup, sources),
        "daemonSet": {"podTemplate": {"spec": pod}},
    }
    return _resource("beat.k8s.elastic.co/v1beta1", "Beat", spec, setup)


def _setup_job(
    step: str,
    env: list[dict[str, Any]],
    ca: tuple[str, str],
    setup: KubernetesSetup,
    sources: RepoSources,
) -> dict[str, Any]:
    """`python -m setup <step>` once; every call of a step is idempotent, so a retried or rerun
    Job changes nothing. Its pod waits until ECK has created the Secrets it mounts. Finished Jobs
    go after a day (a Job's pod template cannot be changed in place); applying again then reruns
    them."""
    ca_name, ca_secret = ca
    name = f"mlobs-setup-{step}"
    resources = pods.Resources(memory=sources.service("setup").memory, cpu_request="50m")
    container = {
        "name": "setup",
        "image": sources.image("setup"),
        "command": ["python", "-m", "setup", step],
        "env": [
            *env,
            # httpx verifies with this file instead of certifi's bundle (httpx _config.py).
            pods.env("SSL_CERT_FILE", _ca_file(ca_name)),
            pods.env("SETUP_TIMEOUT_SECONDS", SETUP_TIMEOUT_SECONDS),
        ],
        "resources": resources.as_dict(),
        "securityContext": pods.restricted_container_security(),
        "volumeMounts": [pods.tmp_mount(), _ca_mount(ca_name)],
    }
    pod = pods.restricted_pod([container], sources)
    pod["restartPolicy"] = "Never"
    pod["volumes"].append(pods.ca_volume(ca_name, ca_secret))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": pods.metadata(name, setup.namespace, pods.selector(name, "setup")),
        "spec": {
            "backoffLimit": 6,
            "ttlSecondsAfterFinished": 86400,
            "template": {"metadata": {"labels": pods.labels(name, "setup")}, "spec": pod},
        },
    }


def setup_jobs(setup: KubernetesSetup, sources: RepoSources) -> list[dict[str, Any]]:
    """setup/'s two steps, as compose runs them: Elasticsearch (templates, ILM, roles, users) and
    Kibana (saved objects). Both log in as ECK's `elastic` superuser."""
    elastic = pods.secret_env(ELASTIC_PASSWORD_VARIABLE, ES_ELASTIC_USER_SECRET, "elastic")
    credentials = [pods.secret_env(key, CREDENTIALS_SECRET, key) for key in CREDENTIALS_KEYS]
    defaults = [
        pods.env(name, sources.env(name))
        for name in (
            "LOGSTASH_WRITER_USER",
            "GRAFANA_ES_USER",
            "MLOBS_LOGS_ROLLOVER_AGE",
            "MLOBS_LOGS_DELETE_AGE",
        )
    ]
    es_env = [
        pods.env("ELASTICSEARCH_URL", f"https://{ES_SERVICE}:{ES_PORT}"),
        elastic,
        *credentials,
        *defaults,
    ]
    kibana_env = [pods.env("KIBANA_URL", f"https://{KIBANA_SERVICE}:{KIBANA_PORT}"), elastic]
    return [
        _setup_job("elasticsearch", es_env, (ES_CA_VOLUME, ES_CA_SECRET), setup, sources),
        _setup_job("kibana", kibana_env, (KIBANA_CA_VOLUME, KIBANA_CA_SECRET), setup, sources),
    ]


def logs_files(spec: Spec, setup: KubernetesSetup, sources: RepoSources) -> dict[Path, list[dict]]:
    """The logs part, by file name inside deploy/kubernetes/logs/."""
    return {
        Path("elasticsearch.yaml"): [elasticsearch(setup, sources)],
        Path("kibana.yaml"): [kibana(setup, sources)],
        Path("logstash.yaml"): [logstash(spec, setup, sources)],
        Path("filebeat.yaml"): [filebeat(setup, sources)],
        Path("setup-jobs.yaml"): setup_jobs(setup, sources),
    }
