"""alertmanager.yml: group by alert and model, route by severity, inhibit symptoms of a dead
server, deliver to alert-sink."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlobs.generate.yaml_output import dump
from mlobs.spec import Spec

COMPOSE_FILE = Path("alertmanager/alertmanager.yml")
# While a server is down or has no target at all, its latency, error and traffic alerts are
# symptoms, not news.
SERVER_GONE = ("ModelServerDown", "ModelServerMissing")
INHIBITED_BY_SERVER_GONE = ("ModelP99LatencyHigh", "ModelErrorRateHigh", "ModelNoTraffic")


@dataclass(frozen=True)
class AlertmanagerSetup:
    sink_url: str  # base URL of alert-sink as seen from Alertmanager
    group_wait: str = "30s"
    group_interval: str = "5m"
    repeat_interval: str = "4h"


def alertmanager_config(spec: Spec, setup: AlertmanagerSetup) -> dict[str, Any]:
    """One receiver per severity: all deliver to alert-sink here; in production each would page
    differently (critical to the on-call phone, warning to a channel)."""
    severities = spec.alerts.severities()
    receivers = [
        {
            "name": f"alert-sink-{name}",
            "webhook_configs": [
                {"url": f"{setup.sink_url}/alertmanager", "send_resolved": True, "max_alerts": 100}
            ],
        }
        for name in ("default", *severities)
    ]
    return {
        "route": {
            "receiver": "alert-sink-default",
            "group_by": ["alertname", "model"],
            "group_wait": setup.group_wait,
            "group_interval": setup.group_interval,
            "repeat_interval": setup.repeat_interval,
            "routes": [
                {"matchers": [f'severity="{s}"'], "receiver": f"alert-sink-{s}"} for s in severities
            ],
        },
        "inhibit_rules": [
            {
                "source_matchers": [f'alertname=~"{"|".join(SERVER_GONE)}"'],
                "target_matchers": [f'alertname=~"{"|".join(INHIBITED_BY_SERVER_GONE)}"'],
                "equal": ["model"],
            }
        ],
        "receivers": receivers,
    }


def render(spec: Spec) -> dict[Path, str]:
    """The compose configuration (alert-sink reached by its service name)."""
    config = alertmanager_config(spec, AlertmanagerSetup(sink_url="http://alert-sink:8080"))
    return {COMPOSE_FILE: dump(config)}
