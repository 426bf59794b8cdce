"""deploy/kubernetes/logs/: the compose stack's log path on ECK, with the same documents.

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

from mlobs.generate.kubernetes.cluster import (
    BEATS_PORT,
    CREDENTIALS_KEYS,
    CREDENTIALS_SECRET,
    ES_CA_SECRET,
    ES_ELASTIC_USER_SECRET,
    ES_SERVICE,
    KIBANA_CA_SECRET,
    KIBANA_SERVICE,
    LOGSTASH_BEATS_SERVICE,
)
from mlobs.generate.kubernetes.logs import CONTAINER_PARSER_FIELDS, ECK_KIBANA_SETTINGS
from mlobs.logs import INFERENCE
from mlobs.server import create_app
from mlobs.settings import Settings
from setup.elastic_setup import REQUIRED
from tests.conftest import REPO
from tests.support.inference_lines import inference_lines
from tests.support.kubernetes import DEPLOY, build
from tests.support.log_chain import FILEBEAT_FIELDS, filebeat, filebeat_processors, logstash
from tests.unit.test_log_rotation_globs import go_glob_regex

LOGS = build(DEPLOY / "logs")
MODELS = build(DEPLOY / "model-servers")
COMPOSE_PIPELINE = (REPO / "logstash/pipeline/inference.conf").read_text()
# What the container parser puts into an event besides the line: the stream always, Docker's
# log attributes when the runtime's json-file driver has some.
CONTAINER_FIELDS = {"stream": "stdout", "docker": {"attrs": {"tag": "x"}}}


def _one(kind: str) -> dict:
    [obj] = [obj for obj in LOGS if obj["kind"] == kind]
    return obj


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
    processors."""
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


def test_the_input_parses_like_compose_behind_a_container_parser():
    compose = yaml.safe_load((REPO / "filebeat/filebeat.yml").read_text())
    [compose_input] = compose["filebeat.inputs"]
    stdout_input = _input()
    assert stdout_input["parsers"] == [
        {"container": {"stream": "stdout", "format": "auto"}},
        *compose_input["parsers"],
    ]
    assert stdout_input["id"] != compose_input["id"]
    assert stdout_input["prospector.scanner.symlinks"] is True


def test_what_the_container_parser_adds_is_dropped_and_never_one_of_our_keys(server_lines):
    keys = {key for line in server_lines for key in json.loads(line)}
    assert set(CONTAINER_FIELDS) == set(CONTAINER_PARSER_FIELDS)
    assert not keys & set(CONTAINER_FIELDS)
    assert not set(CONTAINER_FIELDS) & set(FILEBEAT_FIELDS)


def _pod_spec(obj: dict) -> dict:
    spec = obj.get("spec", {})
    if "template" in spec:
        return spec["template"]["spec"]
    return spec.get("daemonSet", spec).get("podTemplate", {}).get("spec", {})


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
    models = [obj for obj in MODELS if obj["kind"] == "Deployment"]
    others = [obj for obj in LOGS + build(DEPLOY / "metrics") if _pod_spec(obj)]
    model_logs = [_log_file(o, c["name"]) for o in models for c in _pod_spec(o)["containers"]]
    other_logs = [_log_file(o, c["name"]) for o in others for c in _pod_spec(o)["containers"]]
    other_logs += [
        _log_file(o, c["name"], "other-team") for o in models for c in _pod_spec(o)["containers"]
    ]
    assert len(model_logs) == len(models) and len(other_logs) > len(models)
    assert [path for path in model_logs if not matches(path)] == []
    assert [path for path in other_logs if matches(path)] == []


def test_filebeat_ships_to_logstashs_beats_service():
    config = _one("Beat")["spec"]["config"]
    assert config["output.logstash"]["hosts"] == [f"{LOGSTASH_BEATS_SERVICE}:{BEATS_PORT}"]
    [service] = _one("Logstash")["spec"]["services"]
    assert [p["port"] for p in service["service"]["spec"]["ports"]] == [BEATS_PORT]
    tree = dict(logstash_pipeline_parser.Pipeline(_k8s_pipeline()).parse())
    [(plugin, options)] = tree["input"]
    assert plugin == "beats" and dict(options)["port"] == [BEATS_PORT]


# --- Logstash ----------------------------------------------------------------------------------

_CA_LINES = re.compile(r"\n *# Kubernetes: [^\n]*\n *ssl_certificate_authorities => [^\n]*")


def test_logstash_runs_the_generated_pipeline_plus_only_ecks_ca():
    text = _k8s_pipeline()
    assert _CA_LINES.sub("", text) == COMPOSE_PIPELINE
    assert text != COMPOSE_PIPELINE


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
    assert _mounted_ca(template, container, ca_file) == ES_CA_SECRET
    env = {e["name"]: e for e in container["env"]}
    needed = set(re.findall(r"\$\{(\w+)(?::[^}]*)?\}", _k8s_pipeline()))
    assert needed <= set(env)
    assert env["ELASTICSEARCH_URL"]["value"] == f"https://{ES_SERVICE}:9200"


def test_logstash_settings_are_the_compose_stacks_but_the_api_eck_manages():
    compose = yaml.safe_load((REPO / "logstash/config/logstash.yml").read_text())
    ours = _one("Logstash")["spec"]["config"]
    assert ours == {k: v for k, v in compose.items() if not k.startswith("api.")}
    assert ours["queue.type"] == "persisted" and ours["queue.checkpoint.writes"] == 1
    claims = {c["metadata"]["name"] for c in _one("Logstash")["spec"]["volumeClaimTemplates"]}
    assert claims == {"logstash-data"}  # the data path the queue lives on (ECK volume/names.go)


# --- Elasticsearch, Kibana, setup --------------------------------------------------------------


def test_kibana_settings_are_kibana_yml_without_what_eck_sets():
    compose = yaml.safe_load((REPO / "kibana/kibana.yml").read_text())
    ours = _one("Kibana")["spec"]["config"]
    assert ours == {k: v for k, v in compose.items() if k not in ECK_KIBANA_SETTINGS}
    assert "${" not in json.dumps(ours)  # compose's .env variables do not exist here


def test_the_elastic_stack_runs_the_compose_version():
    env = dict(
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    versions = {obj["spec"]["version"] for obj in LOGS if "version" in obj.get("spec", {})}
    assert versions == {env["ELASTIC_VERSION"]}


def _jobs() -> dict[str, dict]:
    return {
        job["spec"]["template"]["spec"]["containers"][0]["command"][-1]: job
        for job in LOGS
        if job["kind"] == "Job"
    }


def test_the_setup_jobs_run_both_steps_with_what_each_requires():
    jobs = _jobs()
    assert set(jobs) == {"elasticsearch", "kibana"}
    for step, job in jobs.items():
        template = job["spec"]["template"]
        [container] = template["spec"]["containers"]
        assert container["command"] == ["python", "-m", "setup", step]
        env = {e["name"]: e for e in container["env"]}
        assert set(REQUIRED[step].values()) <= set(env), step
        expected_ca = {"elasticsearch": ES_CA_SECRET, "kibana": KIBANA_CA_SECRET}[step]
        assert _mounted_ca(template, container, env["SSL_CERT_FILE"]["value"]) == expected_ca
        assert template["spec"]["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] > 0
    es_env = {
        e["name"]: e
        for e in jobs["elasticsearch"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    kb_env = {
        e["name"]: e for e in jobs["kibana"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert es_env["ELASTICSEARCH_URL"]["value"] == f"https://{ES_SERVICE}:9200"
    assert kb_env["KIBANA_URL"]["value"] == f"https://{KIBANA_SERVICE}:5601"


def test_logstash_logs_in_as_the_writer_the_setup_creates():
    [es_job] = [j for step, j in _jobs().items() if step == "elasticsearch"]
    setup_env = {e["name"]: e for e in es_job["spec"]["template"]["spec"]["containers"][0]["env"]}
    logstash_env = {
        e["name"]: e for e in _container(_one("Logstash")["spec"]["podTemplate"], "logstash")["env"]
    }
    for name in ("LOGSTASH_WRITER_USER", "LOGSTASH_WRITER_PASSWORD"):
        assert logstash_env[name] == setup_env[name], name


def test_every_secret_is_one_eck_creates_or_one_the_readme_asks_for():
    refs = set()

    def walk(value):
        if isinstance(value, dict):
            if "secretKeyRef" in value:
                refs.add((value["secretKeyRef"]["name"], value["secretKeyRef"]["key"]))
            for child in value.values():
                walk(child)
        elif isinstance(value, list):
            for child in value:
                walk(child)

    walk(LOGS)
    user_keys = {key for name, key in refs if name == CREDENTIALS_SECRET}
    assert refs - {(CREDENTIALS_SECRET, key) for key in user_keys} == {
        (ES_ELASTIC_USER_SECRET, "elastic")
    }
    assert user_keys == set(CREDENTIALS_KEYS)


def test_no_password_is_written_into_a_manifest():
    def env_vars(value):
        if isinstance(value, dict):
            if "env" in value and isinstance(value["env"], list):
                yield from value["env"]
            for child in value.values():
                yield from env_vars(child)
        elif isinstance(value, list):
            for child in value:
                yield from env_vars(child)

    secrets = [e for e in env_vars(LOGS) if re.search("PASSWORD|TOKEN|KEY", e["name"])]
    assert secrets and all("valueFrom" in e and "value" not in e for e in secrets)
