"""prometheus/rules/*.yml: recording rules and alerting rules rendered from the spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlobs.generate.expressions import Alert, alerts, recording_rules
from mlobs.generate.links import dashboard_url
from mlobs.generate.yaml_output import dump
from mlobs.spec import Spec

RULES_DIR = Path("prometheus/rules")
RECORDING_FILE = RULES_DIR / "recording.yml"
ALERTS_FILE = RULES_DIR / "alerts.yml"


def _alert_rule(alert: Alert, spec: Spec) -> dict[str, Any]:
    return {
        "alert": alert.name,
        "expr": alert.expr,
        "for": alert.for_,
        "labels": {"severity": alert.severity},
        "annotations": {
            "summary": alert.summary,
            "description": alert.description,
            "dashboard": dashboard_url(spec.grafana_url, alert.name),
        },
    }


def render(spec: Spec) -> dict[Path, str]:
    """The rule files, by path relative to the repository root."""
    a = spec.alerts
    windows = (
        f"# Windows: traffic and errors {a.error_rate.window}, latency {a.latency.window}, "
        f"confidence {a.low_confidence.window}, drift {a.drift.window}.\n"
    )
    recording = {
        "groups": [
            {
                "name": "mlobs.recording",
                "rules": [{"record": r.record, "expr": r.expr} for r in recording_rules(spec)],
            }
        ]
    }
    alerting = {
        "groups": [{"name": "mlobs.alerts", "rules": [_alert_rule(x, spec) for x in alerts(spec)]}]
    }
    return {RECORDING_FILE: dump(recording, windows), ALERTS_FILE: dump(alerting)}
