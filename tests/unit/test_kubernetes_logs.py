"""deploy/kubernetes/logs/: the compose stack's log path on ECK, with the same documents.

The manifests are the generator's output now (tests/support/kubernetes.py, part); the names ECK
gives what it creates are derived here from our resources' names, the way ECK does.

Filebeat reads the model servers' stdout on each node instead of a shared file. Its events then
differ from compose's only in what the container parser adds (`stream`, Docker's attrs), which
the input drops, and in the file's path; so Logstash, running the same pipeline plus ECK's CA,
makes the same documents with the same ids (tests/support/log_chain.py follows both). Filebeat,
Logstash and Elasticsearch cannot run here; the container parser's fields are read from
elastic/beats libbeat/reader/readjson/docker_json.go (parseCRILog, parseDockerJSONLog).
"""

from __future__ import annotations

import copy
import json
import re
from contextlib import contextmanager

import logstash_pipeline_parser
import pytest
import yaml
from fastapi.testclient import TestClient

from mlobs.generate.kubernetes.logs import CONTAINER_PARSER_FIELDS
from mlobs.logs import INFERENCE
from mlobs.server import create_app
from mlobs.settings import Settings
from setup.elastic_setup import REQUIRED
from tests.conftest import REPO
from tests.support.generated import generated_text
from tests.support.inference_lines import inference_lines
from tests.support.kubernetes import containers, nodes, part, pod_specs, readme_secrets
from tests.support.log_chain import FILEBEAT_FIELDS, filebeat, filebeat_processors, logstash
from tests.support.stack_files import env_example
from tests.unit.test_log_rotation_globs import go_glob_regex

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
COMPOSE_FILEBEAT = yaml.safe_load((REPO / "filebeat/filebeat.yml").read_text())
[COMPOSE_INPUT] = COMPOSE_FILEBEAT["filebeat.inputs"]
# Logstash's beats port: where compose's Filebeat ships (logstash:5044).
[BEATS_PORT] = [
    int(host.rsplit(":", 1)[1]) for host in COMPOSE_FILEBEAT["output.logstash"]["hosts"]
]
# What the container parser puts into an event besides the line: the stream always, Docker's
# log attributes when the runtime's json-file driver has some.
CONTAINER_FIELDS = {"stream": "stdout", "docker": {"attrs": {"tag": "x"}}}


def _logs() -> list[dict]:
    return part("logs")


def _one(kind: str) -> dict:
    [obj] = [obj for obj in _logs() if obj["kind"] == kind]
    return obj


def _eck(kind: str, suffix: str) -> str:
    """A name ECK gives something it creates for our resource of `kind`: the resource's name and
    a suffix (elastic/cloud-on-k8s v3.5.0, pkg/apis/*/name.go and
    pkg/controller/common/certificates/secret.go)."""
    return f"{_one(kind)['metadata']['name']}-{suffix}"


def _compose_pipeline() -> str:
    return generated_text("logstash/pipeline/inference.conf")


def _input() -> dict:
    [stdout_input] = _one("Beat")["spec"]["config"]["filebeat.inputs"]
    return stdout_input


def _k8s_pipeline() -> str:
    [pipeline] = _one("Logstash")["spec"]["pipelines"]
    return pipeline["config.string"]


# --- Filebeat ----------------------------------------------------------------------------------


def k8s_filebeat(line: str) -> dict | None:
    """The event the cluster's Filebeat sends for one stdout line, or None if it drops it: the
    compose event (same ndjson parser) plus the container parser's fields, through the input's
    processors. Models an input whose parsers are a container parser, then compose's."""
    container_parser, *parsers = _input()["parsers"]
    assert "container" in container_parser and parsers == COMPOSE_INPUT["parsers"], "not modelled"
    event = filebeat(line)
    event.update(copy.deepcopy(CONTAINER_FIELDS))
    return filebeat_processors(event, _input()["processors"])


@pytest.fixture(scope="module")
def server_lines(tmp_path_factory, anomaly_model, chatbot_model) -> list[str]:
    """Every line real servers write (to stdout and the file alike): inference events of every
    kind, and server_ready, draining, faults_set and the like. (conftest's `serve`, once for the
    module.)"""
    log_file = tmp_path_factory.mktemp("k8s-logs") / "inference.log"

    @contextmanager
    def serve(model, **overrides):
        settings = Settings(**{"log_file": log_file, **overrides})
        with TestClient(create_app(model, settings), raise_server_exceptions=False) as client:
            yield client

    inference_lines(serve, anomaly_model, chatbot_model, log_file)
    return [line for line in log_file.read_text().splitlines() if line.strip()]


def test_the_cluster_makes_the_compose_stacks_documents_with_the_same_ids(server_lines):
    tree = logstash_pipeline_parser.Pipeline(_k8s_pipeline()).parse()
    inference = [line for line in server_lines if json.loads(line)["message"] == INFERENCE]
    assert inference
    for line in inference:
        compose = logstash(filebeat(line))
        event = k8s_filebeat(line)
        assert event is not None, line
        cluster = logstash(event, tree)
        assert cluster.document_id == compose.document_id
        assert cluster.document == compose.document


def test_only_inference_events_are_shipped(server_lines):
    others = [line for line in server_lines if json.loads(line)["message"] != INFERENCE]
    assert {json.loads(line)["message"] for line in others} >= {"server_ready", "faults_set"}
    assert [line for line in others if k8s_filebeat(line) is not None] == []
    assert k8s_filebeat("Traceback (most recent call last):") is None


def test_what_the_container_parser_adds_is_dropped_and_never_one_of_our_keys(server_lines):
    keys = {key for line in server_lines for key in json.loads(line)}
    assert set(CONTAINER_FIELDS) == set(CONTAINER_PARSER_FIELDS)
    assert not keys & set(CONTAINER_FIELDS)
    assert not set(CONTAINER_FIELDS) & set(FILEBEAT_FIELDS)


def _log_file(obj: dict, container: str, namespace: str | None = None) -> str:
    """kubelet's link to a container's log: <pod>_<namespace>_<container>-<container id>.log."""
    pod = f"{obj['metadata']['name']}-6d4cf56db6-x2x7q"
    namespace = namespace or obj["metadata"]["namespace"]
    return f"/var/log/containers/{pod}_{namespace}_{container}-{'0123456789abcdef' * 4}.log"


def test_filebeat_reads_the_model_servers_stdout_and_nothing_else():
    """Every container of a model Deployment, and no other container of ours or of another
    namespace. Filebeat expands paths with Go's filepath.Glob."""
    [pattern] = _input()["paths"]
    matches = go_glob_regex(pattern).fullmatch
    models = [obj for obj in part("model-servers") if obj["kind"] == "Deployment"]
    others = [obj for obj in _logs() + part("metrics") if pod_specs(obj)]
    model_logs = [_log_file(o, c["name"]) for o in models for c in containers(o)]
    other_logs = [_log_file(o, c["name"]) for o in others for c in containers(o)]
    other_logs += [_log_file(o, c["name"], "other-team") for o in models for c in containers(o)]
    assert len(model_logs) == len(models) and len(other_logs) > len(models)
    assert [path for path in model_logs if not matches(path)] == []
    assert [path for path in other_logs if matches(path)] == []


def test_filebeat_ships_to_logstashs_beats_service():
    config = _one("Beat")["spec"]["config"]
    [service] = _one("Logstash")["spec"]["services"]
    beats_service = _eck("Logstash", f"ls-{service['name']}")
    assert config["output.logstash"]["hosts"] == [f"{beats_service}:{BEATS_PORT}"]
    assert [p["port"] for p in service["service"]["spec"]["ports"]] == [BEATS_PORT]
    tree = dict(logstash_pipeline_parser.Pipeline(_k8s_pipeline()).parse())
    [(plugin, options)] = tree["input"]
    assert plugin == "beats" and dict(options)["port"] == [BEATS_PORT]


# --- Logstash ----------------------------------------------------------------------------------


def _without_option(tree: list, option: str) -> list:
    """A pipeline's parse tree without `option` in any plugin."""
    return [
        _without_option(node, option) if isinstance(node, list) else node
        for node in tree
        if not (isinstance(node, list) and node and node[0] == option)
    ]


def test_logstash_runs_the_generated_pipeline_plus_only_ecks_ca():
    ca = "ssl_certificate_authorities"
    cluster = logstash_pipeline_parser.Pipeline(_k8s_pipeline()).parse()
    compose = logstash_pipeline_parser.Pipeline(_compose_pipeline()).parse()
    assert _without_option(cluster, ca) == compose != cluster


def _container(pod_template: dict, name: str) -> dict:
    [container] = [c for c in pod_template["spec"]["containers"] if c["name"] == name]
    return container


def _mounted_ca(pod_template: dict, container: dict, path: str) -> str:
    """The Secret whose ca.crt is at `path` in the container."""
    volumes = {v["name"]: v for v in pod_template["spec"]["volumes"]}
    for mount in container["volumeMounts"]:
        if path == f"{mount['mountPath']}/ca.crt":
            secret = volumes[mount["name"]]["secret"]
            assert {"key": "ca.crt", "path": "ca.crt"} in secret["items"]
            return secret["secretName"]
    raise AssertionError(f"{path} is not mounted")


def test_logstash_verifies_elasticsearch_with_the_mounted_ca_and_has_every_variable():
    logstash_resource = _one("Logstash")
    template = logstash_resource["spec"]["podTemplate"]
    container = _container(template, "logstash")
    tree = dict(logstash_pipeline_parser.Pipeline(_k8s_pipeline()).parse())
    [(_, options)] = tree["output"]
    options = dict(options)
    [[ca_file]] = options["ssl_certificate_authorities"]
    es_service = _eck("Elasticsearch", "es-http")
    assert _mounted_ca(template, container, ca_file) == f"{es_service}-certs-public"
    env = {e["name"]: e for e in container["env"]}
    needed = set(re.findall(r"\$\{(\w+)(?::[^}]*)?\}", _k8s_pipeline()))
    assert needed <= set(env)
    assert env["ELASTICSEARCH_URL"]["value"] == f"https://{es_service}:9200"


# Logstash's byte units (logstash.yml) and Kubernetes' binary quantities.
_UNITS = {"kb": 2**10, "mb": 2**20, "gb": 2**30, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def _bytes(size: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([A-Za-z]+)", size).groups()
    return int(number) * _UNITS[unit]


def test_the_queues_fit_on_the_volume_eck_mounts_on_path_data():
    """logstash.yml bounds the persisted queue and the dead letter queue, both below path.data,
    which ECK mounts from the claim named logstash-data: ours under that name, else its own 1Gi
    (elastic/cloud-on-k8s v3.5.0 pkg/controller/logstash/volume/defaults.go and names.go)."""
    logstash_resource = _one("Logstash")["spec"]
    config = logstash_resource["config"]
    assert config["queue.type"] == "persisted"
    [claim] = [
        c
        for c in logstash_resource["volumeClaimTemplates"]
        if c["metadata"]["name"] == "logstash-data"
    ]
    needed = _bytes(config["queue.max_bytes"]) + _bytes(config["dead_letter_queue.max_bytes"])
    assert needed < _bytes(claim["spec"]["resources"]["requests"]["storage"])


# --- Elasticsearch, Kibana, setup --------------------------------------------------------------


def test_no_compose_only_value_reaches_an_eck_configuration():
    """compose's files name its .env variables (${...}), its hosts (http://elasticsearch:9200,
    logstash:5044) and Kibana's kibana_system login, where ECK logs Kibana in itself: none of it
    exists on the cluster, so none may survive into the configuration ECK hands the Elastic
    Stack (elasticsearch.yml, kibana.yml, logstash.yml, filebeat.yml)."""
    hosts = "|".join(re.escape(service) for service in COMPOSE["services"])
    compose_only = re.compile(rf"\$\{{|kibana_system|(?<![\w.-])(?:{hosts}):\d+")
    configs = [
        node["config"]
        for node in nodes(_logs())
        if isinstance(node, dict) and isinstance(node.get("config"), dict)
    ]
    assert len(configs) == 4, configs  # Elasticsearch's node set, Kibana, Logstash, Filebeat
    found = [s for s in nodes(configs) if isinstance(s, str) and compose_only.search(s)]
    assert found == []


def test_the_elastic_stack_runs_the_compose_version():
    versions = {obj["spec"]["version"] for obj in _logs() if "version" in obj.get("spec", {})}
    assert versions == {env_example()["ELASTIC_VERSION"]}


def _jobs() -> dict[str, dict]:
    return {
        job["spec"]["template"]["spec"]["containers"][0]["command"][-1]: job
        for job in _logs()
        if job["kind"] == "Job"
    }


def test_the_setup_jobs_run_both_steps_with_what_each_requires():
    jobs = _jobs()
    assert set(jobs) == {"elasticsearch", "kibana"}
    es_service, kb_service = _eck("Elasticsearch", "es-http"), _eck("Kibana", "kb-http")
    for step, job in jobs.items():
        template = job["spec"]["template"]
        [container] = template["spec"]["containers"]
        assert container["command"] == ["python", "-m", "setup", step]
        env = {e["name"]: e for e in container["env"]}
        assert set(REQUIRED[step].values()) <= set(env), step
        service = {"elasticsearch": es_service, "kibana": kb_service}[step]
        expected_ca = f"{service}-certs-public"
        assert _mounted_ca(template, container, env["SSL_CERT_FILE"]["value"]) == expected_ca
        assert template["spec"]["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] > 0
    es_env = {
        e["name"]: e
        for e in jobs["elasticsearch"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    kb_env = {
        e["name"]: e for e in jobs["kibana"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert es_env["ELASTICSEARCH_URL"]["value"] == f"https://{es_service}:9200"
    assert kb_env["KIBANA_URL"]["value"] == f"https://{kb_service}:5601"


def test_logstash_logs_in_as_the_writer_the_setup_creates():
    [es_job] = [j for step, j in _jobs().items() if step == "elasticsearch"]
    setup_env = {e["name"]: e for e in es_job["spec"]["template"]["spec"]["containers"][0]["env"]}
    logstash_env = {
        e["name"]: e for e in _container(_one("Logstash")["spec"]["podTemplate"], "logstash")["env"]
    }
    for name in ("LOGSTASH_WRITER_USER", "LOGSTASH_WRITER_PASSWORD"):
        assert logstash_env[name] == setup_env[name], name


def test_every_secret_is_one_eck_creates_or_one_the_readme_asks_for():
    """Our pods read the superuser's password from ECK's Secret and every other secret from the
    one the README's `kubectl create secret` command creates in their namespace: each key that
    command sets and no other."""
    refs = {
        (node["secretKeyRef"]["name"], node["secretKeyRef"]["key"])
        for node in nodes(_logs())
        if isinstance(node, dict) and "secretKeyRef" in node
    }
    [namespace] = {obj["metadata"]["namespace"] for obj in _logs()}
    [(user_secret, keys)] = [
        (name, keys) for (ns, name), keys in readme_secrets().items() if ns == namespace
    ]
    eck = (_eck("Elasticsearch", "es-elastic-user"), "elastic")
    assert refs == {eck} | {(user_secret, key) for key in keys}


def test_no_password_is_written_into_a_manifest():
    env = [e for c in containers(_logs()) for e in c.get("env", [])]
    secrets = [e for e in env if re.search("PASSWORD|TOKEN|KEY", e["name"])]
    assert secrets and all("valueFrom" in e and "value" not in e for e in secrets)
