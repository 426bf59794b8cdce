"""prometheus.yml: scrape jobs (one per model, named after it), rules and Alertmanager.

The compose file discovers model replicas through Docker's DNS, so `docker compose up --scale
chatbot=3` is scraped without a config change; the native stack scrapes static 127.0.0.1 ports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlobs.generate.yaml_output import dump
from mlobs.spec import Spec

COMPOSE_FILE = Path("prometheus/prometheus.yml")
COMPOSE_PORT = 8080  # every service of ours listens on 8080 inside compose


@dataclass(frozen=True)
class PrometheusSetup:
    """Where things are, as seen from Prometheus."""

    model_targets: Mapping[str, str]  # model -> "host:port" (compose: DNS name, native: address)
    other_targets: Mapping[str, str]  # job -> "host:port"
    alertmanager: str
    rule_files: Sequence[str]
    scrape_interval: str = "15s"
    evaluation_interval: str = "15s"
    dns_discovery: bool = False


def _model_job(name: str, target: str, setup: PrometheusSetup) -> dict[str, Any]:
    if not setup.dns_discovery:
        return {"job_name": name, "static_configs": [{"targets": [target]}]}
    host, port = target.rsplit(":", 1)
    return {
        "job_name": name,
        # One A record per replica: scaling needs no config change.
        "dns_sd_configs": [
            {"names": [host], "type": "A", "port": int(port), "refresh_interval": "15s"}
        ],
        # instance="chatbot/172.18.0.5" instead of a bare IP: readable, and unique per replica.
        "relabel_configs": [
            {
                "source_labels": ["__meta_dns_name", "__address__"],
                "regex": "([^;]+);([^:]+):.*",
                "target_label": "instance",
                "replacement": "$1/$2",
            }
        ],
    }


def prometheus_config(spec: Spec, setup: PrometheusSetup) -> dict[str, Any]:
    """The configuration as data; the model jobs follow the spec's model list."""
    jobs = [_model_job(m.name, setup.model_targets[m.name], setup) for m in spec.models]
    jobs += [
        {"job_name": job, "static_configs": [{"targets": [target]}]}
        for job, target in setup.other_targets.items()
    ]
    return {
        "global": {
            "scrape_interval": setup.scrape_interval,
            "evaluation_interval": setup.evaluation_interval,
        },
        "rule_files": list(setup.rule_files),
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [setup.alertmanager]}]}]},
        "scrape_configs": jobs,
    }


def compose_setup(
    spec: Spec, scrape_interval: str = "15s", evaluation_interval: str = "15s"
) -> PrometheusSetup:
    """Prometheus inside compose: service names resolve through Docker's DNS."""
    return PrometheusSetup(
        model_targets={m.name: f"{m.name}:{COMPOSE_PORT}" for m in spec.models},
        other_targets={
            "prometheus": "localhost:9090",
            "alertmanager": "alertmanager:9093",
            "alert-sink": f"alert-sink:{COMPOSE_PORT}",
        },
        alertmanager="alertmanager:9093",
        rule_files=["/etc/prometheus/rules/*.yml"],
        scrape_interval=scrape_interval,
        evaluation_interval=evaluation_interval,
        dns_discovery=True,
    )


def render(spec: Spec) -> dict[Path, str]:
    """The compose configuration."""
    return {COMPOSE_FILE: dump(prometheus_config(spec, compose_setup(spec)))}
