"""Start, wait for and stop local server processes; used by `make local` and integration tests.

Every wait has a timeout, every process is bound to 127.0.0.1, and stopping escalates from SIGTERM
to SIGKILL so no process outlives its owner.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

REPO = Path(__file__).resolve().parent.parent


class StartupError(RuntimeError):
    """A process exited or did not become ready in time; the message has its last output."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServiceSpec:
    """How to run one process and how to tell that it is ready."""

    name: str
    argv: Sequence[str]
    ready_url: str | None  # None: ready as soon as it runs (e.g. a load generator)
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path = REPO


def model_server_spec(
    name: str, app: str, port: int, env: Mapping[str, str] | None = None, workers: int = 1
) -> ServiceSpec:
    """A model server run through `python -m mlobs.serve` on 127.0.0.1:port."""
    argv = [
        sys.executable,
        "-m",
        "mlobs.serve",
        app,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    return ServiceSpec(name, argv, f"http://127.0.0.1:{port}/readyz", env or {})


class Service:
    """A running process started from a ServiceSpec, with its output in a log file."""

    def __init__(self, spec: ServiceSpec, log_dir: Path) -> None:
        self.spec = spec
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{spec.name}.out"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.process = subprocess.Popen(
            list(spec.argv),
            cwd=spec.cwd,
            env={**os.environ, **spec.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches uvicorn's workers too
        )

    def output(self, lines: int = 30) -> str:
        """The last lines the process printed."""
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll the ready URL until it answers 2xx; StartupError on exit or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StartupError(
                    f"{self.spec.name} exited with code {self.process.returncode}:\n{self.output()}"
                )
            if self.spec.ready_url is None:
                return
            try:
                if httpx.get(self.spec.ready_url, timeout=1.0).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise StartupError(f"{self.spec.name} not ready after {timeout:.0f}s:\n{self.output()}")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the process group, SIGKILL after `timeout`; returns the exit code."""
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(timeout)
        self._log.close()
        return self.process.returncode

    def kill(self) -> None:
        """Die at once, as a crashed server would."""
        self._signal(signal.SIGKILL)
        self.process.wait(10)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)


def start_all(
    specs: Sequence[ServiceSpec],
    log_dir: Path,
    timeout: float = 30.0,
    on_ready: Callable[[Service], None] | None = None,
) -> list[Service]:
    """Start every process, then wait for each; on any failure stop all of them and re-raise."""
    services: list[Service] = []
    try:
        for spec in specs:
            services.append(Service(spec, log_dir))
        for service in services:
            service.wait_ready(timeout)
            if on_ready is not None:
                on_ready(service)
    except BaseException:
        stop_all(services)
        raise
    return services


def stop_all(services: Sequence[Service]) -> None:
    """Stop in reverse start order."""
    for service in reversed(services):
        service.stop()
