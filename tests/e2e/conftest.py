"""Boots the Docker stack once per test run with testcontainers' DockerCompose.

Skips with a reason where there is no Docker daemon or no Compose v2. The stack runs with the
e2e override (docker/compose.e2e.yml): a spec with short windows and `for` durations is rendered
into a temporary E2E_DIR, and secrets come from a fresh env file, never from the user's .env.
The host ports of the stack must be free (`make down` first). On failure the compose logs are
printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.support.e2e_config import render_e2e_config

PROJECT = "mlobs-e2e"


def _docker_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command"
    for command, problem in (
        (["docker", "info"], "no Docker daemon (docker info failed)"),
        (["docker", "compose", "version"], "no Compose v2 (docker compose version failed)"),
    ):
        if subprocess.run(command, capture_output=True, timeout=30).returncode != 0:
            return problem
    return None


def pytest_collection_modifyitems(config, items):
    e2e = [item for item in items if "tests/e2e" in str(item.fspath)]
    problem = _docker_problem() if e2e else None
    if problem is None:
        return
    skip = pytest.mark.skip(reason=f"Docker end-to-end tests need Docker: {problem}")
    for item in e2e:
        item.add_marker(skip)


def _env_values(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


@dataclass
class Stack:
    """The running stack: its compose handle and the credentials it was started with."""

    compose: object
    env: dict[str, str]

    def logs(self, *services: str) -> str:
        stdout, stderr = self.compose.get_logs(*services)
        return stdout + stderr

    def compose_command(self, *args: str, timeout: float = 300) -> None:
        command = [*self.compose.compose_command_property, *args]
        subprocess.run(command, check=True, cwd=REPO, timeout=timeout, capture_output=True)


@pytest.fixture(scope="session")
def stack(tmp_path_factory, request) -> Iterator[Stack]:
    from testcontainers.compose import DockerCompose

    workdir = tmp_path_factory.mktemp("e2e")
    env_file = workdir / "e2e.env"
    subprocess.run(
        ["python3", str(REPO / "docker/make_env.py"), "--env", str(env_file)],
        check=True,
        cwd=REPO,
        timeout=30,
    )
    render_e2e_config(workdir / "config")
    os.environ["E2E_DIR"] = str(workdir / "config")
    os.environ["COMPOSE_PROJECT_NAME"] = PROJECT
    compose = DockerCompose(
        context=REPO,
        compose_file_name=["docker-compose.yml", "docker/compose.e2e.yml"],
        env_file=str(env_file),
        build=True,
        wait=True,
    )
    running = Stack(compose, _env_values(env_file))
    try:
        compose.start()
    except Exception:
        print(running.logs())
        compose.stop()
        raise
    try:
        yield running
    finally:
        if request.session.testsfailed:
            print(running.logs())
        compose.stop()
