"""docker/preflight.py: each check against readings of hosts that pass and fail (injected), ports
against real sockets, the version floor against what the compose files use, and the script run
for real on this machine."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence

import pytest

from native.processes import free_port
from tests.conftest import REPO
from tests.support.preflight import load_preflight
from tests.support.stack_files import COMPOSE_FILES, GIB, bytes_of, compose

preflight = load_preflight()


def _port(published: int | str, target: int = 8080) -> dict:
    """A port as `docker compose config --format json` writes it (compose-go types/types.go,
    ServicePortConfig: `published` is a string)."""
    return {
        "mode": "ingress",
        "host_ip": "127.0.0.1",
        "target": target,
        "published": str(published),
        "protocol": "tcp",
    }


def _compose_config(ports: Sequence[int] = ()) -> dict:
    """What `docker compose config --format json` says about docker-compose.yml: every mem_limit
    as a string of bytes (compose-go's UnitBytes.MarshalJSON). The host ports are `ports`, not the
    stack's, which programs on this machine may hold."""
    services = {
        name: {"mem_limit": str(bytes_of(service["mem_limit"]))}
        for name, service in compose()["services"].items()
    }
    services["grafana"]["ports"] = [_port(port) for port in ports]
    return {"services": services}


def _healthy_host(**changes) -> preflight.HostReadings:
    readings = {
        "platform": "linux",
        "docker_problem": None,
        "engine": (28, 2, 2),
        "compose": (2, 39, 1),
        "max_map_count": 262144,
        "docker_memory": 16 * GIB,
        "compose_config": _compose_config([free_port()]),
    }
    return preflight.HostReadings(**{**readings, **changes})


def _findings(host: preflight.HostReadings, **kw) -> dict:
    checks = preflight.Preflight(host=host, **kw).findings()
    return {finding.check: finding for finding in checks}


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program listens on, on 127.0.0.1."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield listener.getsockname()[1]


def test_a_healthy_host_passes_every_check():
    findings = _findings(_healthy_host())
    assert {f.check: f.status for f in findings.values()} == dict.fromkeys(findings, "ok")


def test_the_compose_floor_stays_while_the_compose_files_use_merge_tags():
    """`!reset` and `!override` need Compose 2.24.4: when no compose file uses them any more, this
    fails so that COMPOSE_MINIMUM comes down with them."""
    tagged = [
        name
        for name in COMPOSE_FILES
        if re.search(r"!(reset|override)\b", (REPO / name).read_text())
    ]
    assert tagged, "no compose file uses !reset or !override: lower preflight.COMPOSE_MINIMUM"
    assert preflight.COMPOSE_MINIMUM[0] >= (2, 24, 4)


@pytest.mark.parametrize(
    ("changes", "check", "fix"),
    [
        ({"engine": (17, 3, 0)}, "Docker Engine", "upgrade Docker"),
        ({"compose": (2, 20, 0)}, "Docker Compose", "Compose plugin"),
        ({"compose": None, "compose_problem": "the Compose v2 plugin (`docker compose`) is "
          "missing", "compose_config": None}, "Docker Compose", "Compose plugin"),
        ({"docker_problem": "the `docker` command is not installed"}, "Docker Engine",
         "install Docker"),
        ({"docker_problem": "no permission to use the Docker daemon (permission denied)"},
         "Docker Engine", "usermod -aG docker"),
        ({"max_map_count": 65530}, "vm.max_map_count", "sudo sysctl -w vm.max_map_count=262144"),
        ({"docker_memory": 4 * GIB}, "memory for Docker", "give Docker at least 7 GiB"),
    ],
    ids=["old engine", "old compose", "no compose", "no docker", "no permission", "map count",
         "memory"],
)  # fmt: skip
def test_each_failure_says_what_and_the_one_line_fix(changes, check, fix):
    finding = _findings(_healthy_host(**changes))[check]
    assert finding.status == "FAIL"
    assert fix in finding.fix and "\n" not in finding.fix


def test_the_memory_check_counts_every_limit_and_refuses_unlimited_services():
    config = _compose_config()
    needed = sum(int(s["mem_limit"]) for s in config["services"].values())
    just_enough = _findings(_healthy_host(docker_memory=needed))["memory for Docker"]
    assert just_enough.status == "ok"
    short = _findings(_healthy_host(docker_memory=needed - 1))["memory for Docker"]
    assert short.status == "FAIL"
    config["services"]["extra"] = {"image": "x"}
    unlimited = _findings(_healthy_host(compose_config=config))["memory for Docker"]
    assert unlimited.status == "FAIL" and "extra" in unlimited.detail


def test_max_map_count_is_a_linux_host_setting_only():
    finding = _findings(_healthy_host(platform="darwin", max_map_count=None))["vm.max_map_count"]
    assert finding.status == "skip"


def test_the_ports_come_from_compose_and_wait_for_it():
    findings = _findings(_healthy_host(compose_config=None))
    assert findings["Docker Compose"].status == "FAIL"  # `docker compose config` refused the files
    assert findings["host ports"].status == "skip"


def test_a_port_another_program_holds_fails_and_a_free_one_passes(busy_port):
    host = _healthy_host(compose_config=_compose_config([busy_port, free_port()]))
    finding = _findings(host)["host ports"]
    assert finding.status == "FAIL"
    assert finding.detail == f"in use on 127.0.0.1: {busy_port}"
    assert str(busy_port) in finding.fix


def test_ports_this_stack_already_holds_are_fine(busy_port):
    host = _healthy_host(
        compose_config=_compose_config([busy_port]), own_ports=frozenset({busy_port})
    )
    assert _findings(host)["host ports"].status == "ok"


def test_the_ports_are_the_published_ones_of_every_service_ranges_included():
    config = {
        "services": {
            "a": {"ports": [_port(8001), _port("9000-9002", target=80)]},
            "b": {"ports": [{"mode": "ingress", "target": 5044, "protocol": "tcp"}]},  # no host
            "c": {},
        }
    }
    assert preflight.published_ports(config) == [8001, 9000, 9001, 9002]


def _runner(outputs: dict[str, tuple[int, str]]):
    def run(argv: Sequence[str]) -> subprocess.CompletedProcess:
        key = " ".join(argv[:3])
        code, text = outputs.get(key, (1, ""))
        return subprocess.CompletedProcess(
            argv, code, text if code == 0 else "", "" if code == 0 else text
        )

    return run


def test_read_host_parses_what_docker_prints():
    config = _compose_config([3000])
    ps_line = json.dumps(
        {
            "Service": "grafana",
            "Publishers": [
                {"URL": "127.0.0.1", "TargetPort": 3000, "PublishedPort": 3000, "Protocol": "tcp"}
            ],
        }
    )
    run = _runner(
        {
            "docker info --format": (
                0,
                json.dumps({"ServerVersion": "28.2.2", "MemTotal": 8 * GIB}),
            ),
            "docker compose version": (0, "v2.39.1-desktop.1\n"),
            "docker compose config": (0, json.dumps(config)),
            "docker compose ps": (0, ps_line + "\n"),
        }
    )
    host = preflight.read_host(run, platform="darwin")
    assert (host.engine, host.compose, host.docker_memory) == ((28, 2, 2), (2, 39, 1), 8 * GIB)
    assert host.compose_config == config and host.own_ports == {3000}
    assert host.max_map_count is None  # not read off Linux


def test_read_host_without_docker_or_its_daemon():
    missing = preflight.read_host(_runner({"docker info --format": (127, "")}), platform="linux")
    assert missing.docker_problem == "the `docker` command is not installed"
    down = preflight.read_host(
        _runner(
            {
                "docker info --format": (1, "Cannot connect to the Docker daemon at unix:///var/"
                                            "run/docker.sock. Is the docker daemon running?"),
                "docker compose version": (1, "docker: unknown command: docker compose"),
            }
        ),
        platform="linux",
    )  # fmt: skip
    assert down.docker_problem.startswith("the Docker daemon is not reachable (Cannot connect")
    assert down.compose is None
    assert down.compose_problem == "the Compose v2 plugin (`docker compose`) is missing"


def test_the_report_puts_a_fix_under_each_failure():
    lines: list[str] = []
    ok = preflight.report(
        list(_findings(_healthy_host(max_map_count=1, engine=(1, 0, 0))).values()), lines.append
    )
    assert not ok
    failures = [i for i, line in enumerate(lines) if line.lstrip().startswith("FAIL")]
    assert len(failures) == 2
    assert all(lines[i + 1].strip().startswith("fix: ") for i in failures)


def test_it_runs_on_this_machine_and_says_what_it_found():
    result = subprocess.run(
        [sys.executable, str(REPO / "docker/preflight.py")],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    found = re.findall(r"^  (ok|FAIL|skip) +([^:]+): ", result.stdout, re.MULTILINE)
    checks = ["Docker Engine", "Docker Compose", "host ports", "vm.max_map_count"]
    assert [check for _, check in found] == [*checks, "memory for Docker"], result.stderr
    failed = any(status == "FAIL" for status, _ in found)
    assert result.returncode == (1 if failed else 0), result.stderr


def test_docker_only_checks_docker_and_compose_and_prints_only_failures():
    """`make check-docker` (before `make down`, `ps`, `logs`, `scale`): silent when both pass."""
    result = subprocess.run(
        [sys.executable, str(REPO / "docker/preflight.py"), "--docker-only"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    checks = [line.split(":")[0].split() for line in result.stdout.splitlines()[1:]]
    failed = [words[1:] for words in checks if words[0] == "FAIL"]
    assert all(check in (["Docker", "Engine"], ["Docker", "Compose"]) for check in failed), checks
    assert all(words[0] in ("FAIL", "fix") for words in checks), result.stdout
    assert result.returncode == (1 if failed else 0), result.stderr
    assert bool(result.stdout) == bool(failed)


def test_a_closed_output_fails_with_its_own_error(monkeypatch):
    """`python3 docker/preflight.py | head -1`: the write error surfaces as itself."""

    class ClosedPipe(io.TextIOBase):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(preflight, "read_host", _healthy_host)
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    with pytest.raises(BrokenPipeError):
        preflight.main([])
