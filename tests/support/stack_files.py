"""The Docker stack's files as the tests read them, each parsed in one place and once: the
compose files, Filebeat's config, .env.example, and Compose's sizes and durations.

The parsed documents are shared between tests: read them, never change them."""

from __future__ import annotations

import re
from functools import cache

import yaml

from tests.conftest import REPO
from tests.support.preflight import load_script

COMPOSE_FILES = ("docker-compose.yml", "docker/compose.e2e.yml", "docker/compose.scale.yml")
MIB = 1024**2
GIB = 1024**3
_SIZE = re.compile(r"^(\d+)([kmg])(?:i?b)?$", re.IGNORECASE)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


class _ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's `!reset` tag (it clears a value in an override file)."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: [])


@cache
def load_compose(name: str) -> dict:
    """One of COMPOSE_FILES, parsed."""
    return yaml.load((REPO / name).read_text(), Loader=_ComposeLoader)


def compose() -> dict:
    """docker-compose.yml, parsed."""
    return load_compose("docker-compose.yml")


def published_ports(service: str | None = None) -> dict[int, int]:
    """Host port -> container port of what docker-compose.yml publishes, for one service or all
    (each is written "127.0.0.1:<host>:<container>": tests/unit/test_compose.py checks that)."""
    services = compose()["services"]
    return {
        int(host): int(container)
        for name in ([service] if service else services)
        for _, host, container in (port.split(":") for port in services[name].get("ports", []))
    }


@cache
def filebeat_config() -> dict:
    """filebeat/filebeat.yml, parsed."""
    return yaml.safe_load((REPO / "filebeat/filebeat.yml").read_text())


def filebeat_input() -> dict:
    """The one input of filebeat.yml."""
    [source] = filebeat_config()["filebeat.inputs"]
    return source


@cache
def env_example() -> dict[str, str]:
    """The variables of .env.example and their values, read as `make .env` reads them."""
    return load_script("make_env").parse((REPO / ".env.example").read_text())


def bytes_of(size: str) -> int:
    """A Compose or Go size ("512m", "1g", "300MiB") in bytes."""
    number, unit = _SIZE.match(size).groups()
    return int(number) * {"k": 1024, "m": MIB, "g": GIB}[unit.lower()]


def seconds(duration: str) -> float:
    """A Compose duration ("1m30s", "750s") in seconds."""
    assert re.fullmatch(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h))+", duration), duration
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[unit] for n, unit in _DURATION.findall(duration))
