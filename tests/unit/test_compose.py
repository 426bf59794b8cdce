"""Static checks of the Docker stack: the Compose specification's schema, pinned images,
healthchecks with start periods, memory limits that hold each runtime's heap, loopback ports,
files that exist, variables that are declared, a start order that `up --wait` accepts and in
which Kibana never holds back the log pipeline, and model servers given time to drain."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from mlobs.settings import Settings
from setup.elastic_setup import SetupConfig
from tests.conftest import REPO, REQUIRE_TOOLS
from tests.support.stack_files import (
    COMPOSE_FILES,
    GIB,
    MIB,
    bytes_of,
    compose,
    env_example,
    load_compose,
    published_ports,
    seconds,
)

SERVICES = compose()["services"]
# What `make up` asks of Docker (README, "Quick start"); the preflight checks the real sum.
STACK_MEMORY = 7 * GIB


def _one_shot(service: dict) -> bool:
    return service.get("restart") == "no"


def _dockerfile() -> str:
    """services/Dockerfile with its continuation lines joined."""
    return (REPO / "services/Dockerfile").read_text().replace("\\\n", " ")


def _in_effect(instruction: str) -> dict[str, str | None]:
    """The last `instruction` (its arguments) in effect for each build target of
    services/Dockerfile: a target without its own inherits the base stage's."""
    stages = re.split(r"^FROM \S+ AS (\S+)$", _dockerfile(), flags=re.MULTILINE)[1:]
    own = {
        name: (re.findall(rf"^{instruction} (.*)$", body, re.MULTILINE) or [None])[-1]
        for name, body in zip(stages[::2], stages[1::2], strict=True)
    }
    return {name: value or own["base"] for name, value in own.items()}


def _dockerfile_healthchecks() -> dict[str, str | None]:
    return _in_effect("HEALTHCHECK")


def _user_gid(user: str) -> int:
    """The group id services/Dockerfile's `useradd` gives `user`."""
    for arguments in re.findall(r"useradd ([^&;\n]*)", _dockerfile()):
        words = arguments.split()
        if words[-1] == user:
            return int(words[words.index("--gid") + 1])
    raise AssertionError(f"services/Dockerfile creates no user {user}")


def _healthcheck(name: str) -> str | dict | None:
    """The healthcheck a service runs: compose's, else its image target's (NONE counts as none)."""
    service = SERVICES[name]
    if "healthcheck" in service:
        return None if service["healthcheck"].get("disable") else service["healthcheck"]
    if "build" in service:
        check = _dockerfile_healthchecks()[service["build"]["target"]]
        return None if check is None or check.strip() == "NONE" else check
    return None  # an image's own HEALTHCHECK is invisible here: say it in compose


def _start_period(check: str | dict) -> float | None:
    if isinstance(check, dict):
        return seconds(check["start_period"]) if "start_period" in check else None
    match = re.search(r"--start-period=(\S+)", check)
    return seconds(match.group(1)) if match else None


def _depends_on(name: str) -> set[str]:
    """Every service `name` waits for, directly or through others."""
    found, todo = set(), list(SERVICES[name].get("depends_on", {}))
    while todo:
        dependency = todo.pop()
        if dependency not in found:
            found.add(dependency)
            todo.extend(SERVICES[dependency].get("depends_on", {}))
    return found


def _schema() -> dict:
    path = Path(
        os.environ.get("MLOBS_COMPOSE_SCHEMA", REPO.parent / "shared/schemas/compose-spec.json")
    )
    if not path.is_file():
        message = f"Compose specification schema not found at {path} (set MLOBS_COMPOSE_SCHEMA)"
        if REQUIRE_TOOLS:
            pytest.fail(f"MLOBS_REQUIRE_TOOLS=1 but {message}")
        pytest.skip(message)
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_files_validate_against_the_compose_specification(name):
    validator = jsonschema.Draft7Validator(_schema())
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(load_compose(name))
    ]
    assert errors == []


def test_every_service_has_a_pinned_image_or_a_build():
    for name, service in SERVICES.items():
        if "build" in service:  # its target: test_build_targets_exist_and_copy_files_that_exist
            continue
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), name
        assert re.search(r":\$\{\w+_VERSION\}$", image), f"{name}: version must come from .env"


def test_every_long_running_service_has_a_healthcheck_with_a_start_period():
    """`up --wait` fails on the first unhealthy verdict: a slow first start (migrations, JVM
    warm-up, WAL replay) must fall inside the start period, where failures do not count."""
    for name, service in SERVICES.items():
        if _one_shot(service):
            continue
        check = _healthcheck(name)
        assert check is not None, f"{name}: no healthcheck"
        assert _start_period(check), f"{name}: healthcheck without start_period"


def test_every_service_has_a_memory_limit_and_the_stack_fits_the_documented_budget():
    limits = {name: bytes_of(service["mem_limit"]) for name, service in SERVICES.items()}
    assert set(limits) == set(SERVICES)
    assert sum(limits.values()) <= STACK_MEMORY, {k: v // MIB for k, v in limits.items()}


# Documented needs: Grafana's minimum (grafana.com/docs/grafana/latest/setup-grafana/installation,
# "Hardware recommendations": 512 MB); what ECK gives Kibana and Elasticsearch by default
# (elastic/cloud-on-k8s pkg/controller/kibana/pod.go: 1Gi; Elasticsearch: 2Gi).
DOCUMENTED_MINIMUM = {"grafana": 512 * MIB, "kibana": GIB, "elasticsearch": 2 * GIB}
# What a JVM takes besides heap and direct memory: metaspace, code cache, thread stacks, GC
# structures. Logstash's JRuby compiles the pipeline and its Ruby plugins into far more classes
# and code: docker-compose.yml counts ~500 MiB for it.
ELASTICSEARCH_OVERHEAD = 256 * MIB
LOGSTASH_OVERHEAD = 512 * MIB
NODE_OVERHEAD = 256 * MIB  # V8's young generation and code, native buffers
JVM_IMAGES = ("docker.elastic.co/elasticsearch/", "docker.elastic.co/logstash/")
NODE_IMAGES = ("docker.elastic.co/kibana/",)


def _image(name: str) -> str:
    return SERVICES[name].get("image", "")


def _jvm_budget(name: str, options: str, direct_default: float, overhead: int) -> tuple[int, str]:
    heaps = re.findall(r"-Xm([sx])(\d+[kmg])", options)
    assert {kind for kind, _ in heaps} == {"s", "x"}, f"{name}: set -Xms and -Xmx"
    assert len({size for _, size in heaps}) == 1, f"{name}: -Xms must equal -Xmx"
    heap = bytes_of(heaps[0][1])
    direct = re.search(r"-XX:MaxDirectMemorySize=(\d+[kmg])", options)
    direct_bytes = bytes_of(direct.group(1)) if direct else int(heap * direct_default)
    how = f"heap {heap // MIB} + direct {direct_bytes // MIB} + {overhead // MIB} MiB"
    return heap + direct_bytes + overhead, how


def _heap_budget(name: str) -> tuple[int, str] | None:
    """Memory the service's runtime may take by its own settings, and how it was worked out;
    None for runtimes without a heap setting (Python; Go without GOMEMLIMIT)."""
    environment = SERVICES[name].get("environment", {})
    image = _image(name)
    if image.startswith("docker.elastic.co/elasticsearch/"):
        # JvmErgonomics.java (elastic/elasticsearch): MaxDirectMemorySize = heap / 2 unless set.
        return _jvm_budget(name, environment["ES_JAVA_OPTS"], 0.5, ELASTICSEARCH_OVERHEAD)
    if image.startswith("docker.elastic.co/logstash/"):
        # The JVM's default: as much direct memory as heap (Logstash docs, "JVM settings").
        return _jvm_budget(name, environment["LS_JAVA_OPTS"], 1.0, LOGSTASH_OVERHEAD)
    if image.startswith(NODE_IMAGES):
        old_space = re.search(r"--max-old-space-size=(\d+)", environment.get("NODE_OPTIONS", ""))
        assert old_space, f"{name}: set NODE_OPTIONS=--max-old-space-size, not Node's guess"
        heap = int(old_space.group(1)) * MIB
        return heap + NODE_OVERHEAD, f"old space {heap // MIB} + {NODE_OVERHEAD // MIB} MiB"
    limit = environment.get("GOMEMLIMIT")
    return (bytes_of(limit), f"GOMEMLIMIT {limit}") if limit else None


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_runtime_heap_fits_its_memory_limit_with_headroom(name):
    limit = bytes_of(SERVICES[name]["mem_limit"])
    assert limit >= DOCUMENTED_MINIMUM.get(name, 0), f"{name}: below its documented need"
    if _image(name).startswith((*JVM_IMAGES, *NODE_IMAGES)):
        assert _heap_budget(name) is not None, f"{name}: a JVM or Node service without heap size"
    budget = _heap_budget(name)
    if budget is not None:
        needed, how = budget
        assert needed <= limit, f"{name}: {how} = {needed // MIB} MiB > limit {limit // MIB} MiB"
    if _image(name).startswith("docker.elastic.co/elasticsearch/"):
        heap = re.search(r"-Xmx(\d+[kmg])", SERVICES[name]["environment"]["ES_JAVA_OPTS"])[1]
        assert bytes_of(heap) <= limit // 2, "Elasticsearch's heap: at most half of its memory"


def test_every_host_port_is_bound_to_loopback():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port}"


def test_design_ports():
    published = {name: host for name in SERVICES for host in published_ports(name)}
    assert published == {
        "anomaly-detector": 8001,
        "chatbot": 8002,
        "alert-sink": 8003,
        "prometheus": 9090,
        "alertmanager": 9093,
        "grafana": 3000,
        "elasticsearch": 9200,
        "kibana": 5601,
        "logstash": 9600,
    }


def test_every_bind_mounted_file_exists():
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), source


def test_every_variable_the_compose_files_use_is_declared():
    declared = set(env_example()) | {"E2E_DIR"}  # set by the e2e tests for their override
    for name in COMPOSE_FILES:
        text = (REPO / name).read_text()
        used = set(re.findall(r"(?<!\$)\$\{(\w+)", text))
        assert used <= declared, f"{name}: {sorted(used - declared)}"


def test_build_targets_exist_and_copy_files_that_exist():
    dockerfile = (REPO / "services/Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.MULTILINE))
    for name, service in SERVICES.items():
        if "build" in service:
            assert service["build"]["target"] in targets, name
            assert service["build"]["dockerfile"] == "services/Dockerfile"
    for source in re.findall(r"^COPY (\S+) ", dockerfile, re.MULTILINE):
        assert (REPO / source).exists(), source


def test_every_image_we_build_runs_as_a_user_that_is_not_root():
    users = _in_effect("USER")
    for name, service in SERVICES.items():
        if "build" in service:
            user = users[service["build"]["target"]]
            assert user not in (None, "root", "0") and "user" not in service, (name, user)


def test_every_one_shot_service_is_awaited_by_a_long_running_one():
    """`up --wait` fails when a one-shot container exits, unless a long-running service depends
    on it with service_completed_successfully (docker/compose#9572)."""
    for name, service in SERVICES.items():
        if not _one_shot(service):
            continue
        adopters = [
            other
            for other, s in SERVICES.items()
            if not _one_shot(s)
            and s.get("depends_on", {}).get(name, {}).get("condition")
            == "service_completed_successfully"
        ]
        assert adopters, f"{name} exits, and no long-running service waits for its success"


def test_dependencies_exist_and_use_known_conditions():
    conditions = {"service_healthy", "service_completed_successfully", "service_started"}
    for name, service in SERVICES.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in SERVICES, name
            assert rule["condition"] in conditions, name


def test_the_log_pipeline_never_waits_for_kibana():
    """A slow or degraded Kibana, or a saved object that fails to import, must not keep
    Logstash and Filebeat (and so every inference log) from starting."""
    kibana_side = {"kibana", "kibana-setup"}
    for name in ("anomaly-detector", "chatbot", "logstash", "filebeat"):
        assert not _depends_on(name) & kibana_side, f"{name} waits for {_depends_on(name)}"
    gate = SERVICES["logstash"]["depends_on"]["setup"]
    assert gate["condition"] == "service_completed_successfully"
    assert SERVICES["setup"]["command"][-1] == "elasticsearch"
    assert "KIBANA_URL" not in SERVICES["setup"]["environment"]  # it cannot wait for Kibana
    assert not any("kibana-setup" in s.get("depends_on", {}) for s in SERVICES.values())


def test_the_kibana_step_retries_on_its_own_within_kibanas_budget():
    kibana_setup = SERVICES["kibana-setup"]
    assert kibana_setup["command"][3:] == ["kibana", "--ready-file", "/tmp/kibana-objects-imported"]
    assert kibana_setup["restart"] == "unless-stopped"
    assert kibana_setup["healthcheck"]["test"][-1] == "/tmp/kibana-objects-imported"
    # Not called unhealthy while Kibana itself may still become healthy, plus one pause of the
    # step's back-off.
    kibana = SERVICES["kibana"]["healthcheck"]
    budget = seconds(kibana["start_period"]) + seconds(kibana["interval"]) * kibana["retries"]
    start_period = seconds(kibana_setup["healthcheck"]["start_period"])
    assert start_period >= budget + SetupConfig.max_retry_interval


def test_model_servers_get_longer_to_stop_than_they_drain():
    """compose sends SIGTERM, then SIGKILL after stop_grace_period (10 s unless set): the server
    drains for MLOBS_SHUTDOWN_GRACE_SECONDS, then needs a few seconds to flush logs and counts."""
    flush_margin = 5.0
    models = [
        name
        for name, service in SERVICES.items()
        if service.get("build", {}).get("target") in {"anomaly-detector", "chatbot"}
    ]
    assert len(models) == 2
    for name in models:
        environment = SERVICES[name]["environment"]
        grace = float(
            environment.get("MLOBS_SHUTDOWN_GRACE_SECONDS", Settings().shutdown_grace_seconds)
        )
        stop = seconds(SERVICES[name].get("stop_grace_period", "10s"))
        assert stop >= grace + flush_margin, f"{name}: stops after {stop}s, drains for {grace}s"


MODELS = ("anomaly-detector", "chatbot")


def test_model_logs_reach_filebeat_through_the_shared_volume():
    for model in MODELS:
        assert SERVICES[model]["environment"]["MLOBS_LOG_FILE"].startswith("/var/log/mlobs/")
        assert "mlobs-logs:/var/log/mlobs" in SERVICES[model]["volumes"]
    assert "mlobs-logs:/var/log/mlobs:ro" in SERVICES["filebeat"]["volumes"]
    # Filebeat joins the group of the user the model servers run as (their files are 0640).
    users = {_in_effect("USER")[SERVICES[model]["build"]["target"]] for model in MODELS}
    [user] = users
    assert SERVICES["filebeat"]["group_add"] == [str(_user_gid(user))]


def test_secure_defaults():
    grafana = SERVICES["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD}"
    assert SERVICES["elasticsearch"]["environment"]["xpack.security.enabled"] == "true"
    for model in ("anomaly-detector", "chatbot"):
        assert SERVICES[model]["environment"]["MLOBS_ADMIN_TOKEN"] == "${MLOBS_ADMIN_TOKEN}"
    kibana = yaml.safe_load((REPO / "kibana/kibana.yml").read_text())
    assert kibana["elasticsearch.username"] == "kibana_system"
    text = (REPO / "docker-compose.yml").read_text()
    assert not re.search(r"(PASSWORD|TOKEN|KEY)\w*:\s*[^$\s{]", text)  # no literal secrets
