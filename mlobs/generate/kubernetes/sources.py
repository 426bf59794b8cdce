"""What the Kubernetes manifests take from the rest of the repository, read where it is decided.

The image targets and the non-root uid/gid come from services/Dockerfile; the images' names, memory
limits, stop grace periods and JVM or Node options from docker-compose.yml; versions and default
user names from .env.example and pyproject.toml; and the Filebeat, Logstash, Kibana and Grafana
settings from the compose stack's own files, so that a change there reaches the cluster too (or
fails `make generate` loudly when it no longer fits).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlobs.spec import duration_seconds

DOCKERFILE = Path("services/Dockerfile")
COMPOSE_FILE = Path("docker-compose.yml")
ENV_EXAMPLE = Path(".env.example")
PYPROJECT = Path("pyproject.toml")
FILEBEAT_FILE = Path("filebeat/filebeat.yml")
LOGSTASH_SETTINGS = Path("logstash/config/logstash.yml")
LOGSTASH_PIPELINES = Path("logstash/config/pipelines.yml")
KIBANA_SETTINGS = Path("kibana/kibana.yml")
GRAFANA_DATASOURCES = Path("grafana/provisioning/datasources/datasources.yml")

_USER = re.compile(r"useradd\b[^\n]*--uid (\d+) --gid (\d+)")
_TARGET = re.compile(r"^FROM \S+ AS (\S+)\s*$", re.MULTILINE | re.IGNORECASE)
# Docker's memory units (b, k, m, g: powers of 1024) as Kubernetes binary quantities.
_MEMORY = re.compile(r"^(\d+)([kmg])$")
_UNITS = {"k": "Ki", "m": "Mi", "g": "Gi"}


class SourceError(ValueError):
    """A file the manifests are derived from no longer says what the generator reads."""


@dataclass(frozen=True)
class ComposeService:
    """What a compose service says about its container's size."""

    memory: str  # mem_limit as a Kubernetes quantity ("256m" -> "256Mi")
    environment: Mapping[str, Any]
    stop_grace_seconds: int | None  # stop_grace_period, where set


@dataclass(frozen=True)
class RepoSources:
    """Everything the manifests read from the checkout."""

    version: str  # pyproject.toml project.version: the tag of our images
    uid: int
    gid: int
    image_targets: frozenset[str]  # build targets of services/Dockerfile
    env_defaults: Mapping[str, str]  # .env.example
    compose_project: str  # docker-compose.yml's `name`, the prefix of the images it builds
    compose: Mapping[str, ComposeService]
    filebeat: dict[str, Any]
    logstash_settings: dict[str, Any]
    logstash_pipelines: list[dict[str, Any]]
    kibana_settings: dict[str, Any]
    datasources: dict[str, Any]

    @classmethod
    def read(cls, root: Path) -> RepoSources:
        """Read every source below `root` (the repository)."""
        dockerfile = (root / DOCKERFILE).read_text()
        user = _USER.search(dockerfile)
        if user is None:
            raise SourceError(f"{DOCKERFILE}: no `useradd --uid N --gid N` to run as")
        compose = _yaml(root / COMPOSE_FILE)
        if not compose.get("name"):
            raise SourceError(f"{COMPOSE_FILE}: no project `name`, which names the images")
        return cls(
            version=tomllib.loads((root / PYPROJECT).read_text())["project"]["version"],
            uid=int(user.group(1)),
            gid=int(user.group(2)),
            image_targets=frozenset(_TARGET.findall(dockerfile)),
            env_defaults=_env_file((root / ENV_EXAMPLE).read_text()),
            compose_project=compose["name"],
            compose=_compose_services(compose),
            filebeat=_yaml(root / FILEBEAT_FILE),
            logstash_settings=_yaml(root / LOGSTASH_SETTINGS),
            logstash_pipelines=_yaml(root / LOGSTASH_PIPELINES),
            kibana_settings=_yaml(root / KIBANA_SETTINGS),
            datasources=_yaml(root / GRAFANA_DATASOURCES),
        )

    def env(self, name: str) -> str:
        """A default of .env.example that is a value, not a secret left empty."""
        value = self.env_defaults.get(name, "")
        if not value:
            raise SourceError(f"{ENV_EXAMPLE}: {name} has no default")
        return value

    def service(self, name: str) -> ComposeService:
        if name not in self.compose:
            raise SourceError(f"{COMPOSE_FILE}: no service {name}")
        return self.compose[name]

    def literal_env(self, service: str, name: str) -> str:
        """An environment value that compose sets literally (no ${...} from .env)."""
        value = self.service(service).environment.get(name)
        if not isinstance(value, str) or "${" in value:
            raise SourceError(f"{COMPOSE_FILE}: {service} sets no literal {name}")
        return value

    def stop_grace_seconds(self, service: str) -> int:
        """How long compose waits between SIGTERM and SIGKILL (stop_grace_period)."""
        seconds = self.service(service).stop_grace_seconds
        if seconds is None:
            raise SourceError(f"{COMPOSE_FILE}: {service} sets no stop_grace_period")
        return seconds

    def image(self, target: str) -> str:
        """The image docker compose builds for one services/Dockerfile target (compose names it
        <project>-<service>), tagged with the project's version."""
        if target not in self.image_targets:
            raise SourceError(f"{DOCKERFILE}: no build target {target}")
        return f"{self.compose_project}-{target}:{self.version}"


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _env_file(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.startswith("#")}


def _memory(service: str, value: Any) -> str:
    match = _MEMORY.match(str(value).lower())
    if match is None:
        raise SourceError(f"{COMPOSE_FILE}: {service} mem_limit {value!r} is not like 256m or 2g")
    return f"{match.group(1)}{_UNITS[match.group(2)]}"


def _grace(service: str, value: Any) -> int | None:
    if value is None:
        return None
    try:
        return math.ceil(duration_seconds(str(value)))
    except ValueError as exc:
        raise SourceError(f"{COMPOSE_FILE}: {service} stop_grace_period: {exc}") from None


def _compose_services(compose: dict[str, Any]) -> dict[str, ComposeService]:
    return {
        name: ComposeService(
            _memory(name, body["mem_limit"]),
            body.get("environment") or {},
            _grace(name, body.get("stop_grace_period")),
        )
        for name, body in compose["services"].items()
        if "mem_limit" in body
    }
