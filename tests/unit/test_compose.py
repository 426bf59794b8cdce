"""Static checks of the Docker stack: the Compose specification's schema, pinned images,
healthchecks, memory limits, loopback ports, files that exist, variables that are declared."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import REPO, REQUIRE_TOOLS

COMPOSE_FILES = ["docker-compose.yml", "docker/compose.e2e.yml", "docker/compose.scale.yml"]
ONE_SHOT = {"setup"}
GIB = 1024**3
_SIZE = re.compile(r"^(\d+)([kmg])$")


class _ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's `!reset` tag (it clears a value in an override file)."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: [])


def _load(name: str) -> dict:
    return yaml.load((REPO / name).read_text(), Loader=_ComposeLoader)


COMPOSE = _load("docker-compose.yml")
SERVICES = COMPOSE["services"]


def _env_example() -> set[str]:
    return {
        line.split("=", 1)[0]
        for line in (REPO / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }


def _bytes(size: str) -> int:
    number, unit = _SIZE.match(size).groups()
    return int(number) * {"k": 1024, "m": 1024**2, "g": GIB}[unit]


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
        for e in validator.iter_errors(_load(name))
    ]
    assert errors == []


def test_every_service_has_a_pinned_image_or_a_build():
    for name, service in SERVICES.items():
        if "build" in service:
            assert service["build"]["target"], name
            continue
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), name
        assert re.search(r":\$\{\w+_VERSION\}$", image), f"{name}: version must come from .env"


def test_every_long_running_service_has_a_healthcheck():
    dockerfile = (REPO / "services/Dockerfile").read_text()
    for name, service in SERVICES.items():
        if name in ONE_SHOT:
            assert service["restart"] == "no"
            continue
        if "build" in service:  # the image's HEALTHCHECK (targets inherit the base's)
            assert "HEALTHCHECK --interval" in dockerfile
        else:
            assert service["healthcheck"]["test"], name


def test_every_service_has_a_memory_limit_and_the_stack_fits_in_6_gib():
    limits = {name: _bytes(service["mem_limit"]) for name, service in SERVICES.items()}
    assert set(limits) == set(SERVICES)
    assert sum(limits.values()) <= 6 * GIB, {k: v // 1024**2 for k, v in limits.items()}


def test_jvm_heaps_are_set_and_fit_their_containers():
    for name, variable in (("elasticsearch", "ES_JAVA_OPTS"), ("logstash", "LS_JAVA_OPTS")):
        options = SERVICES[name]["environment"][variable]
        heap = re.search(r"-Xmx(\d+[mg])", options).group(1)
        assert f"-Xms{heap}" in options
        assert _bytes(heap) <= _bytes(SERVICES[name]["mem_limit"]) // 2


def test_every_host_port_is_bound_to_loopback():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port}"


def test_design_ports():
    published = {
        name: int(port.split(":")[1]) for name, s in SERVICES.items() for port in s.get("ports", [])
    }
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
    for name in ("docker-compose.yml",):
        for service in _load(name)["services"].values():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith("./"):
                    assert (REPO / source).exists(), source


def test_every_variable_the_compose_files_use_is_declared():
    declared = _env_example() | {"E2E_DIR"}  # set by the e2e tests for their override
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
    assert "USER mlobs" in dockerfile  # non-root


def test_start_order_lets_up_wait_succeed():
    assert (
        SERVICES["logstash"]["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    )
    assert SERVICES["setup"]["depends_on"]["elasticsearch"]["condition"] == "service_healthy"
    # Kibana must not wait for setup: setup waits for Kibana to import the saved objects.
    assert "setup" not in SERVICES["kibana"].get("depends_on", {})
    for name, service in SERVICES.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert rule["condition"] in {"service_healthy", "service_completed_successfully"}, name
            assert dependency in SERVICES


def test_model_logs_reach_filebeat_through_the_shared_volume():
    for model in ("anomaly-detector", "chatbot"):
        assert SERVICES[model]["environment"]["MLOBS_LOG_FILE"].startswith("/var/log/mlobs/")
        assert "mlobs-logs:/var/log/mlobs" in SERVICES[model]["volumes"]
    assert "mlobs-logs:/var/log/mlobs:ro" in SERVICES["filebeat"]["volumes"]
    dockerfile = (REPO / "services/Dockerfile").read_text()
    assert "--gid 10001" in dockerfile and SERVICES["filebeat"]["group_add"] == ["10001"]


def test_secure_defaults():
    grafana = SERVICES["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD}"
    assert SERVICES["elasticsearch"]["environment"]["xpack.security.enabled"] == "true"
    for model in ("anomaly-detector", "chatbot"):
        assert SERVICES[model]["environment"]["MLOBS_ADMIN_TOKEN"] == "${MLOBS_ADMIN_TOKEN}"
    kibana = (REPO / "kibana/kibana.yml").read_text()
    assert "elasticsearch.username: kibana_system" in kibana
    text = (REPO / "docker-compose.yml").read_text()
    assert not re.search(r"(PASSWORD|TOKEN|KEY)\w*:\s*[^$\s{]", text)  # no literal secrets
