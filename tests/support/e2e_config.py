"""The configuration the Docker end-to-end run mounts over the defaults (docker/compose.e2e.yml):
the committed spec with short windows, and everything rendered from it."""

from __future__ import annotations

from pathlib import Path

import yaml

from mlobs.generate import grafana_alerting, grafana_dashboards, prometheus_rules
from mlobs.generate.alertmanager_config import AlertmanagerSetup, alertmanager_config
from mlobs.generate.prometheus_config import compose_setup, prometheus_config
from tests.support.short_spec import short_spec

E2E_CHANGES = {  # short, but long enough for 5 s scrapes and Grafana's 10 s evaluations
    "latency": {"window": "30s", "for": "10s"},
    "error_rate": {"window": "30s", "for": "10s"},
    "drift": {"window": "60s", "for": "10s", "min_samples": 50},
    "low_confidence": {"window": "30s", "for": "10s"},
    "server_down": {"for": "10s"},  # ModelServerDown and ModelServerMissing (stopped container)
    "no_traffic": {"window": "30s", "for": "30s"},
}


def render_e2e_config(target: Path) -> None:
    """The short spec and everything rendered from it, where docker/compose.e2e.yml mounts it."""
    spec = short_spec(E2E_CHANGES)
    (target / "rules").mkdir(parents=True)
    (target / "grafana-alerting").mkdir()
    (target / "observability.yaml").write_text(
        yaml.safe_dump(spec.model_dump(by_alias=True), sort_keys=False)
    )
    for path, text in prometheus_rules.render(spec).items():
        (target / "rules" / path.name).write_text(text)
    setup = compose_setup(spec, scrape_interval="5s", evaluation_interval="5s")
    (target / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(spec, setup)))
    am = AlertmanagerSetup(
        "http://alert-sink:8080", group_wait="5s", group_interval="10s", repeat_interval="1h"
    )
    (target / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_config(spec, am)))
    dashboards = grafana_dashboards.render(spec)
    for path, text in grafana_alerting.render(spec, dashboards, group_interval="10s").items():
        (target / "grafana-alerting" / path.name).write_text(text)
