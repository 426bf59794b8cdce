"""The stack without Docker: both model servers, alert-sink, the real Prometheus and Alertmanager
binaries and (optionally) steady load, all on 127.0.0.1, configuration rendered under one folder.

`make local` runs it with the spec's ports; the integration tests run it on free ports with a
spec whose windows and `for` durations are shortened.
"""

from __future__ import annotations

import secrets
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from mlobs.generate import prometheus_rules
from mlobs.generate.alertmanager_config import AlertmanagerSetup, alertmanager_config
from mlobs.generate.prometheus_config import PrometheusSetup, prometheus_config
from mlobs.spec import Spec
from native.processes import Service, ServiceSpec, model_server_spec, start_all, stop_all

APPS = {
    "anomaly-detector": "services.anomaly_detector.app:app",
    "chatbot": "services.chatbot.app:app",
}
# Debian names the Alertmanager binary prometheus-alertmanager; upstream tarballs alertmanager.
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")
INSTALL_HINT = (
    "install them with `apt-get install prometheus prometheus-alertmanager` (Debian/Ubuntu) or "
    "put the upstream binaries on PATH"
)


class MissingBinary(RuntimeError):
    """A binary the native stack needs is not installed."""


def find_binary(*names: str) -> str:
    """Path of the first of `names` on PATH; MissingBinary with an install hint otherwise."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise MissingBinary(f"{' or '.join(names)} not found: {INSTALL_HINT}")


@dataclass(frozen=True)
class Ports:
    models: dict[str, int]
    alert_sink: int = 8003
    prometheus: int = 9090
    alertmanager: int = 9093

    @classmethod
    def from_spec(cls, spec: Spec) -> Ports:
        return cls(models={m.name: m.port for m in spec.models})


@dataclass
class StackOptions:
    """What differs between `make local` and a test run."""

    spec: Spec
    ports: Ports
    data_dir: Path
    scrape_interval: str = "15s"
    evaluation_interval: str = "15s"
    alertmanager: AlertmanagerSetup | None = None  # sink URL is filled in from the ports
    load_rate: float | None = 2.0  # steady loadgen requests per second per server; None: no load
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


class NativeStack:
    """Renders the configuration into `data_dir`, starts every process, stops them all."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.services: list[Service] = []
        self.prometheus_binary = find_binary("prometheus")
        self.alertmanager_binary = find_binary(*ALERTMANAGER_BINARIES)

    @property
    def urls(self) -> dict[str, str]:
        ports = self.options.ports
        return {
            **{name: _url(port) for name, port in ports.models.items()},
            "alert-sink": _url(ports.alert_sink),
            "prometheus": _url(ports.prometheus),
            "alertmanager": _url(ports.alertmanager),
        }

    def render(self) -> None:
        """Write spec, rules, prometheus.yml and alertmanager.yml under data_dir/config."""
        o, config = self.options, self.options.data_dir / "config"
        (config / "rules").mkdir(parents=True, exist_ok=True)
        (config / "observability.yaml").write_text(
            yaml.safe_dump(o.spec.model_dump(by_alias=True), sort_keys=False)
        )
        for path, text in prometheus_rules.render(o.spec).items():
            (config / "rules" / path.name).write_text(text)
        setup = PrometheusSetup(
            model_targets={name: f"127.0.0.1:{port}" for name, port in o.ports.models.items()},
            other_targets={
                "prometheus": f"127.0.0.1:{o.ports.prometheus}",
                "alertmanager": f"127.0.0.1:{o.ports.alertmanager}",
                "alert-sink": f"127.0.0.1:{o.ports.alert_sink}",
            },
            alertmanager=f"127.0.0.1:{o.ports.alertmanager}",
            rule_files=[str(config / "rules" / "*.yml")],
            scrape_interval=o.scrape_interval,
            evaluation_interval=o.evaluation_interval,
        )
        (config / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(o.spec, setup)))
        am = replace(o.alertmanager or AlertmanagerSetup(""), sink_url=_url(o.ports.alert_sink))
        (config / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_config(o.spec, am)))

    def model_server(self, name: str) -> ServiceSpec:
        """How the stack runs one model server (fault injection on, token-protected)."""
        o = self.options
        env = {
            "MLOBS_FAULTS": "1",
            "MLOBS_ADMIN_TOKEN": o.admin_token,
            "MLOBS_SPEC": str(o.data_dir / "config" / "observability.yaml"),
            "MLOBS_LOG_FILE": str(o.data_dir / "logs" / f"{name}.log"),
        }
        return model_server_spec(name, APPS[name], o.ports.models[name], env)

    def process_specs(self) -> list[ServiceSpec]:
        o, config, data = self.options, self.options.data_dir / "config", self.options.data_dir
        sink = ServiceSpec(
            "alert-sink",
            [
                sys.executable,
                "-m",
                "mlobs.serve",
                "services.alert_sink.app:app",
                "--port",
                str(o.ports.alert_sink),
            ],
            f"{_url(o.ports.alert_sink)}/readyz",
            {"MLOBS_LOG_FILE": str(data / "logs" / "alert-sink.log")},
        )
        alertmanager = ServiceSpec(
            "alertmanager",
            [
                self.alertmanager_binary,
                f"--config.file={config / 'alertmanager.yml'}",
                f"--storage.path={data / 'alertmanager'}",
                f"--web.listen-address=127.0.0.1:{o.ports.alertmanager}",
                "--cluster.listen-address=",
            ],  # no gossip port: a single local instance
            f"{_url(o.ports.alertmanager)}/-/ready",
        )
        prometheus = ServiceSpec(
            "prometheus",
            [
                self.prometheus_binary,
                f"--config.file={config / 'prometheus.yml'}",
                f"--storage.tsdb.path={data / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{o.ports.prometheus}",
                # Keep the latency exemplars (request ids) the model servers expose to an
                # OpenMetrics scrape; Prometheus 2.x and 3.x alike need the flag.
                "--enable-feature=exemplar-storage",
            ],
            f"{_url(o.ports.prometheus)}/-/ready",
        )
        specs = [
            sink,
            *(self.model_server(name) for name in o.ports.models),
            alertmanager,
            prometheus,
        ]
        if o.load_rate:
            specs.append(self.loadgen("steady", o.load_rate, name="loadgen"))
        return specs

    def loadgen(
        self,
        scenario: str,
        rate: float,
        duration: float = 0,
        name: str | None = None,
        extra: Sequence[str] = (),
    ) -> ServiceSpec:
        """A loadgen process against this stack's model servers."""
        o = self.options
        argv = [
            sys.executable,
            "-m",
            "services.loadgen",
            "--scenario",
            scenario,
            "--rate",
            str(rate),
            "--duration",
            str(duration),
            "--anomaly-url",
            _url(o.ports.models["anomaly-detector"]),
            "--chatbot-url",
            _url(o.ports.models["chatbot"]),
            *extra,
        ]
        return ServiceSpec(
            name or f"loadgen-{scenario}", argv, None, {"MLOBS_ADMIN_TOKEN": o.admin_token}
        )

    @property
    def token_file(self) -> Path:
        """Where the fault-injection token is kept for `make chaos-*` (owner-readable only)."""
        return self.options.data_dir / "admin-token"

    def start(
        self, timeout: float = 60.0, on_ready: Callable[[Service], None] | None = None
    ) -> None:
        """Render, start everything, wait until each process is ready (or raise StartupError)."""
        self.render()
        self.token_file.write_text(self.options.admin_token)
        self.token_file.chmod(0o600)
        self.services = start_all(
            self.process_specs(), self.options.data_dir / "out", timeout, on_ready
        )

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.spec.name == name)

    def stop(self) -> None:
        stop_all(self.services)
        self.services = []
