"""Checks before `make up`: `python3 docker/preflight.py` (also `make preflight`).

Docker Engine and Compose new enough for the compose files, every host port of the stack free,
`vm.max_map_count` high enough for Elasticsearch on Linux, and memory available to Docker against
the sum of the services' memory limits. Each failure prints the one-line fix; the exit status is
1 when anything failed. `--docker-only` checks Docker Engine and Compose alone and prints only
failures (`make check-docker`, before `make down`, `ps`, `logs`, `scale`). Standard library only:
it runs before any virtual environment exists.

The readings (versions, sysctl, Docker's memory, the compose files as `docker compose config`
renders them) are gathered in one place, `read_host`, so that the checks can be tested with
readings of any host; ports are checked by binding them for real.
"""

from __future__ import annotations

import argparse
import errno
import json
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_MAP_COUNT = 262144  # Elasticsearch's bootstrap check (docs: "Virtual memory", vm.max_map_count)
GIB = 1024**3

Version = tuple[int, int, int]

# The oldest releases this stack runs on, and why (tests/unit/test_preflight.py fails when the
# compose files stop using the merge tags, so that the floor can come down).
# docs.docker.com/reference/compose-file/merge/ documents `!override` as "Requires: Docker Compose
# 2.24.4 and later"; `!reset`, which docker/compose.scale.yml uses, came with it in practice.
COMPOSE_MINIMUM: tuple[Version, str] = ((2, 24, 4), "the `!reset` merge tag (make scale)")
# Healthchecks with start_period: Engine API 1.29, Docker 17.05.
ENGINE_MINIMUM: tuple[Version, str] = ((17, 5, 0), "healthcheck start_period")


def parse_version(text: str) -> Version | None:
    """'v2.29.1-desktop.1' -> (2, 29, 1); None when there is no version in it."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def shown(version: Version) -> str:
    return ".".join(map(str, version))


@dataclass(frozen=True)
class HostReadings:
    """What the checks need to know about this machine; `None` where it could not be read."""

    platform: str
    docker_problem: str | None  # why Docker cannot be used, or None
    engine: Version | None = None
    compose: Version | None = None
    compose_problem: str | None = None
    max_map_count: int | None = None
    docker_memory: int | None = None  # bytes the Docker daemon can hand out (docker info)
    compose_config: dict | None = None  # `docker compose config --format json`
    own_ports: frozenset[int] = frozenset()  # published by this stack's running containers


@dataclass(frozen=True)
class Finding:
    check: str
    status: str  # "ok", "FAIL" or "skip"
    detail: str
    fix: str = ""


Runner = Callable[[Sequence[str]], subprocess.CompletedProcess]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO)
    except FileNotFoundError:
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"{' '.join(argv)} timed out")


def _docker_problem(result: subprocess.CompletedProcess) -> str:
    message = (result.stderr or result.stdout).strip().splitlines()
    first = message[-1] if message else f"exit status {result.returncode}"
    if result.returncode == 127:
        return "the `docker` command is not installed"
    if "permission denied" in first.lower():
        return f"no permission to use the Docker daemon ({first})"
    return f"the Docker daemon is not reachable ({first})"


def read_max_map_count(path: Path = Path("/proc/sys/vm/max_map_count")) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def read_host(run: Runner = _run, platform: str = sys.platform) -> HostReadings:
    """Ask this machine: the docker CLI, the Compose plugin (which works without the daemon),
    the daemon, the kernel."""
    max_map_count = read_max_map_count() if platform.startswith("linux") else None
    info = run(["docker", "info", "--format", "{{json .}}"])
    if info.returncode == 127:
        return HostReadings(platform, _docker_problem(info), max_map_count=max_map_count)
    compose, compose_problem, config = None, None, None
    version = run(["docker", "compose", "version", "--short"])
    if version.returncode != 0:
        compose_problem = "the Compose v2 plugin (`docker compose`) is missing"
    else:
        compose = parse_version(version.stdout)
        rendered = run(["docker", "compose", "config", "--format", "json"])
        if rendered.returncode == 0:
            config = json.loads(rendered.stdout)
        else:
            compose_problem = rendered.stderr.strip()[-300:]
    if info.returncode != 0:
        return HostReadings(
            platform,
            _docker_problem(info),
            compose=compose,
            compose_problem=compose_problem,
            max_map_count=max_map_count,
            compose_config=config,
        )
    details = json.loads(info.stdout)
    running = run(["docker", "compose", "ps", "--format", "json"]) if compose else None
    return HostReadings(
        platform,
        None,
        engine=parse_version(details.get("ServerVersion", "")),
        compose=compose,
        compose_problem=compose_problem,
        max_map_count=max_map_count,
        docker_memory=details.get("MemTotal"),
        compose_config=config,
        own_ports=frozenset(
            published_by_running(running.stdout) if running and running.returncode == 0 else ()
        ),
    )


def published_by_running(ps_output: str) -> set[int]:
    """Host ports of this project's running containers (`docker compose ps --format json`: one
    JSON object per line, or one array in older releases)."""
    text = ps_output.strip()
    if not text:
        return set()
    rows = json.loads(text) if text.startswith("[") else [json.loads(x) for x in text.splitlines()]
    return {
        int(p["PublishedPort"])
        for row in rows
        for p in row.get("Publishers") or []
        if p.get("PublishedPort")
    }


def published_ports(config: dict) -> list[int]:
    """The host ports of `docker compose config --format json`: each port an object whose
    `published` is a string, a port or a range "8000-8001" (compose-go types/types.go,
    ServicePortConfig)."""
    ports: set[int] = set()
    for service in config.get("services", {}).values():
        for port in service.get("ports") or []:
            if port.get("published"):
                first, _, last = str(port["published"]).partition("-")
                ports.update(range(int(first), int(last or first) + 1))
    return sorted(ports)


def memory_limits(config: dict) -> dict[str, int]:
    """Each service's memory limit in bytes (0: none), from `docker compose config --format
    json`, which writes mem_limit as a string of bytes (compose-go types/bytes.go,
    UnitBytes.MarshalJSON)."""
    return {
        name: int(service.get("mem_limit") or 0)
        for name, service in config.get("services", {}).items()
    }


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Bind the port as Docker's proxy would (SO_REUSEADDR on Unix, like Go's net.Listen)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if sys.platform != "win32":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(1)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES, getattr(errno, "WSAEADDRINUSE", -1)):
                return False
            raise
    return True


@dataclass
class Preflight:
    """The checks, from readings of the host."""

    host: HostReadings
    port_free: Callable[[int], bool] = port_is_free

    def findings(self) -> list[Finding]:
        return [
            self.docker(),
            self.compose(),
            self.ports_free(),
            self.map_count(),
            self.memory(),
        ]

    @staticmethod
    def _version(
        have: Version | None, minimum: tuple[Version, str], label: str, fix: str
    ) -> Finding:
        need, because = minimum
        if have is None:
            return Finding(label, "FAIL", "version unknown", fix)
        if have < need:
            return Finding(
                label,
                "FAIL",
                f"{shown(have)} is older than {shown(need)}, which this stack needs for {because}",
                fix,
            )
        return Finding(label, "ok", f"{shown(have)} (needs {shown(need)}+: {because})")

    def docker(self) -> Finding:
        problem = self.host.docker_problem
        if problem is not None:
            return Finding("Docker Engine", "FAIL", problem, _docker_fix(problem))
        return self._version(
            self.host.engine,
            ENGINE_MINIMUM,
            "Docker Engine",
            "upgrade Docker: https://docs.docker.com/engine/install/ (Docker Desktop: update it)",
        )

    def compose(self) -> Finding:
        fix = "install or upgrade the Compose plugin: https://docs.docker.com/compose/install/"
        if self.host.docker_problem is not None and "not installed" in self.host.docker_problem:
            return Finding("Docker Compose", "skip", "needs the docker command first")
        if self.host.compose is None:
            return Finding("Docker Compose", "FAIL", self.host.compose_problem or "not found", fix)
        finding = self._version(self.host.compose, COMPOSE_MINIMUM, "Docker Compose", fix)
        if finding.status == "ok" and self.host.compose_config is None:
            return Finding(
                "Docker Compose",
                "FAIL",
                f"`docker compose config` refused the files: {self.host.compose_problem}",
                "run `docker compose config` to see the error (is .env complete? `make .env`)",
            )
        return finding

    def ports_free(self) -> Finding:
        if self.host.compose_config is None:
            return Finding("host ports", "skip", "needs a working Docker Compose")
        ports = published_ports(self.host.compose_config)
        busy = [p for p in ports if p not in self.host.own_ports and not self.port_free(p)]
        if busy:
            listed = " ".join(map(str, busy))
            return Finding(
                "host ports",
                "FAIL",
                f"in use on 127.0.0.1: {listed}",
                f"stop what holds them (`make down`, a `make local` run, or see `lsof -nP "
                f"-iTCP:{busy[0]} -sTCP:LISTEN`)",
            )
        mine = sorted(set(ports) & self.host.own_ports)
        note = f" ({len(mine)} held by this stack, already running)" if mine else ""
        return Finding("host ports", "ok", f"free: {' '.join(map(str, ports))}{note}")

    def map_count(self) -> Finding:
        if not self.host.platform.startswith("linux"):
            return Finding("vm.max_map_count", "skip", "Docker Desktop's VM sets it (not Linux)")
        if self.host.max_map_count is None:
            return Finding("vm.max_map_count", "skip", "could not read /proc/sys/vm/max_map_count")
        if self.host.max_map_count < MAX_MAP_COUNT:
            return Finding(
                "vm.max_map_count",
                "FAIL",
                f"{self.host.max_map_count}, Elasticsearch needs at least {MAX_MAP_COUNT}",
                f"sudo sysctl -w vm.max_map_count={MAX_MAP_COUNT} (to keep it, add that setting "
                "to /etc/sysctl.d/99-elasticsearch.conf)",
            )
        return Finding("vm.max_map_count", "ok", str(self.host.max_map_count))

    def memory(self) -> Finding:
        if self.host.docker_memory is None or self.host.compose_config is None:
            return Finding("memory for Docker", "skip", "needs a working Docker and Compose")
        limits = memory_limits(self.host.compose_config)
        needed = sum(limits.values())
        unlimited = sorted(name for name, limit in limits.items() if limit == 0)
        if unlimited:
            return Finding(
                "memory for Docker",
                "FAIL",
                f"no memory limit on: {', '.join(unlimited)}",
                "give each of them a mem_limit in docker-compose.yml",
            )
        have = self.host.docker_memory
        if have < needed:
            return Finding(
                "memory for Docker",
                "FAIL",
                f"Docker has {have / GIB:.1f} GiB, the services' limits add up to "
                f"{needed / GIB:.1f} GiB",
                f"give Docker at least {-(-needed // GIB)} GiB (Docker Desktop: Settings > "
                "Resources > Memory; Linux: free memory on the host)",
            )
        return Finding(
            "memory for Docker", "ok", f"{have / GIB:.1f} GiB for {needed / GIB:.1f} GiB of limits"
        )


def _docker_fix(problem: str) -> str:
    if "not installed" in problem:
        return (
            "install Docker: https://docs.docker.com/get-docker/ (without Docker, `make local` "
            "runs the model servers, Prometheus and Alertmanager natively)"
        )
    if "permission" in problem:
        return "sudo usermod -aG docker $USER, then log in again"
    return "start Docker (Linux: sudo systemctl start docker; Docker Desktop: open it)"


def report(findings: Sequence[Finding], write: Callable[[str], None] = print) -> bool:
    """Print one line per check and the fix under each failure; True when nothing failed."""
    write("preflight:")
    for finding in findings:
        write(f"  {finding.status:<4}  {finding.check}: {finding.detail}")
        if finding.status == "FAIL":
            write(f"        fix: {finding.fix}")
    return all(finding.status != "FAIL" for finding in findings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--docker-only",
        action="store_true",
        help="check Docker Engine and Compose only, and print only failures",
    )
    args = parser.parse_args(argv)
    preflight = Preflight(read_host())
    if not args.docker_only:
        return 0 if report(preflight.findings()) else 1
    failed = [f for f in (preflight.docker(), preflight.compose()) if f.status == "FAIL"]
    if failed:
        report(failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
