"""Boots the Docker stack once per test run.

Skips with a reason where there is no Docker daemon or no Compose v2. The stack runs with the
e2e override (docker/compose.e2e.yml): a spec with short windows and `for` durations is rendered
into a temporary E2E_DIR, and secrets come from a fresh env file, never from the user's .env.
The host ports of the stack must be free (`make down` first): that is checked before anything
starts. Every compose command has a timeout; `up` reports its progress on the terminal, and so
does every long wait (tests.support.waiting); on failure the compose logs are printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import REPO
from tests.support.e2e_config import render_e2e_config
from tests.support.preflight import load_preflight, load_script
from tests.support.stack_files import published_ports
from tests.support.waiting import set_progress_reporter

PROJECT = "mlobs-e2e"
COMPOSE_FILES = ["docker-compose.yml", "docker/compose.e2e.yml"]
UP_TIMEOUT = 1800  # seconds: a first run builds the images and pulls about 3 GB
WAIT_TIMEOUT = 900  # seconds compose waits for every service to be healthy, as `make up` does


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


@dataclass
class Stack:
    """The running stack: its compose command, and the credentials it was started with."""

    compose: object  # testcontainers' DockerCompose: ps, logs
    env: dict[str, str]
    report: Callable[[str], None]

    def logs(self, *services: str) -> str:
        stdout, stderr = self.compose.get_logs(*services)
        return stdout + stderr

    def compose_command(self, *args: str, timeout: float = 300) -> str:
        """Run `docker compose <args>` for this project; fails the test with its output."""
        command = [*self.compose.compose_command_property, *args]
        try:
            result = subprocess.run(
                command, cwd=REPO, timeout=timeout, capture_output=True, text=True
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"`docker compose {' '.join(args)}` did not finish in {timeout:.0f}s")
        if result.returncode != 0:
            pytest.fail(
                f"`docker compose {' '.join(args)}` failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result.stdout

    def up(self) -> None:
        """`up --build --wait`, bounded, with compose's progress lines on the terminal."""
        command = [
            *self.compose.compose_command_property,
            "up", "--build", "--detach", "--wait", "--wait-timeout", str(WAIT_TIMEOUT),
        ]  # fmt: skip
        process = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "BUILDKIT_PROGRESS": "plain"},
        )  # fmt: skip
        watchdog = threading.Timer(UP_TIMEOUT, process.kill)  # bounds the build and pulls too
        watchdog.start()
        tail: list[str] = []
        try:
            for line in process.stdout:
                tail = [*tail[-200:], line.rstrip()]
                self.report(f"compose up: {line.rstrip()}")
            process.wait(timeout=60)
        finally:
            timed_out = not watchdog.is_alive()
            watchdog.cancel()
        if timed_out:
            pytest.fail(f"`docker compose up` did not finish in {UP_TIMEOUT}s")
        if process.returncode != 0:
            raise RuntimeError("docker compose up failed:\n" + "\n".join(tail))


@pytest.fixture(scope="session")
def terminal_progress(request) -> Iterator[Callable[[str], None]]:
    """Long waits and compose output shown as they happen, past pytest's output capture."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    terminal = request.config.pluginmanager.getplugin("terminalreporter")

    def report(line: str) -> None:
        if capture is None or terminal is None:
            print(line, file=sys.stderr, flush=True)
            return
        with capture.global_and_fixture_disabled():
            terminal.write_line(f"[e2e] {line}")

    previous = set_progress_reporter(report)
    yield report
    set_progress_reporter(previous)


@pytest.fixture(scope="session")
def stack(tmp_path_factory, request, terminal_progress) -> Iterator[Stack]:
    from testcontainers.compose import DockerCompose

    preflight = load_preflight()  # the port check of `make up`
    busy = [port for port in sorted(published_ports()) if not preflight.port_is_free(port)]
    if busy:
        pytest.fail(
            f"host ports in use: {busy}; the e2e stack publishes the same ports as `make up` "
            "(`make down` first, or stop `make local`)"
        )
    workdir = tmp_path_factory.mktemp("e2e")
    env_file = workdir / "e2e.env"
    subprocess.run(
        [sys.executable, str(REPO / "docker/make_env.py"), "--env", str(env_file)],
        check=True,
        cwd=REPO,
        timeout=30,
    )
    render_e2e_config(workdir / "config")
    os.environ["E2E_DIR"] = str(workdir / "config")
    os.environ["COMPOSE_PROJECT_NAME"] = PROJECT
    compose = DockerCompose(context=REPO, compose_file_name=COMPOSE_FILES, env_file=str(env_file))
    running = Stack(compose, load_script("make_env").parse(env_file.read_text()), terminal_progress)
    try:
        try:
            running.up()
        except BaseException:
            print(running.logs())
            raise
        yield running
        if request.session.testsfailed:
            print(running.logs())
    finally:
        terminal_progress("stopping the stack (compose down --volumes)")
        running.compose_command("down", "--volumes", "--remove-orphans", timeout=300)
