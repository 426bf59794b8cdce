"""grafana/provisioning/alerting/*.yml: Grafana alert rules, contact point and notification policy.

The rules run the same queries as the Prometheus alerts (mlobs.generate.expressions) and apply the
same comparison as a threshold expression. The file format follows Grafana's provisioning rules,
which differ from the HTTP API shape that SDK builders emit: relativeTimeRange in integer
seconds, a group interval that is a multiple of 10 s, `for` always set, folder given by title.
An invalid file makes Grafana exit at start, so tests check each of these rules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlobs.generate import expressions as x
from mlobs.generate.links import ALERT_PANELS
from mlobs.generate.yaml_output import dump
from mlobs.spec import Spec, duration_seconds

ALERTING_DIR = Path("grafana/provisioning/alerting")
RULES_FILE = ALERTING_DIR / "alert-rules.yml"
CONTACT_POINTS_FILE = ALERTING_DIR / "contact-points.yml"
POLICIES_FILE = ALERTING_DIR / "policies.yml"
PROMETHEUS_UID = "prometheus"  # provisioned in grafana/provisioning/datasources/
EXPRESSION_UID = "__expr__"  # Grafana's server-side expressions
FOLDER = "ML alerts"  # distinct from the dashboards' folder: both are created at start
GROUP_INTERVAL = "1m"  # a multiple of Grafana's 10 s scheduler tick
CONTACT_POINT = "alert-sink"
SINK_URL = "http://alert-sink:8080/grafana"
# The alerts Grafana evaluates too; each links to the panel of mlobs.generate.links.
GRAFANA_ALERTS = ("ModelP99LatencyHigh", "ModelErrorRateHigh", "ModelFeatureDriftHigh")
_THRESHOLD_TYPES = {">": "gt"}


def panel_id(dashboard_json: str, title: str) -> int:
    """The id of the panel with this title in a rendered dashboard."""
    for panel in json.loads(dashboard_json)["panels"]:
        if panel.get("title") == title:
            return panel["id"]
    raise KeyError(f"no panel titled {title!r}")


def rule_uid(alert_name: str) -> str:
    """Stable uid within Grafana's limits (at most 40 characters of [A-Za-z0-9_-])."""
    return f"mlobs-{alert_name.lower()}"[:40]


def _rule(alert: x.Alert, link: tuple[str, int]) -> dict[str, Any]:
    # The query looks back over the alert's window; expressions have no time range of their own.
    assert alert.window is not None, f"{alert.name} has no window to look back over"
    lookback = int(duration_seconds(alert.window))
    dashboard_uid, panel = link
    return {
        "uid": rule_uid(alert.name),
        "title": alert.name,
        "condition": "C",
        "data": [
            {
                "refId": "A",
                "relativeTimeRange": {"from": lookback, "to": 0},
                "datasourceUid": PROMETHEUS_UID,
                "model": {
                    "refId": "A",
                    "expr": alert.query,
                    "instant": True,
                    "range": False,
                    "intervalMs": 1000,
                    "maxDataPoints": 43200,
                },
            },
            {
                "refId": "B",
                "relativeTimeRange": {"from": 0, "to": 0},
                "datasourceUid": EXPRESSION_UID,
                "model": {
                    "refId": "B",
                    "type": "reduce",
                    "expression": "A",
                    "reducer": "last",
                    "settings": {"mode": "dropNN"},
                },
            },
            {
                "refId": "C",
                "relativeTimeRange": {"from": 0, "to": 0},
                "datasourceUid": EXPRESSION_UID,
                "model": {
                    "refId": "C",
                    "type": "threshold",
                    "expression": "B",
                    "conditions": [
                        {
                            "evaluator": {
                                "type": _THRESHOLD_TYPES[alert.op],
                                "params": [alert.threshold],
                            }
                        }
                    ],
                },
            },
        ],
        # No data means no traffic or too few values for PSI: other alerts cover that.
        "noDataState": "OK",
        "execErrState": "Error",
        "for": alert.for_,
        "labels": {"severity": alert.severity},
        "annotations": {
            "summary": alert.summary,
            "description": alert.description,
            "__dashboardUid__": dashboard_uid,
            "__panelId__": str(panel),
        },
        "isPaused": False,
    }


def render(
    spec: Spec, dashboards: dict[Path, str], group_interval: str = GROUP_INTERVAL
) -> dict[Path, str]:
    """The three alerting files, by path relative to the repository root."""

    def link(name: str) -> tuple[str, int]:
        target = ALERT_PANELS[name]
        board = dashboards[Path(f"grafana/dashboards/{target.uid}.json")]
        return target.uid, panel_id(board, target.panel)

    rules = [_rule(a, link(a.name)) for a in x.alerts(spec) if a.name in GRAFANA_ALERTS]
    groups = {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": "ml-models",
                "folder": FOLDER,
                "interval": group_interval,
                "rules": rules,
            }
        ],
    }
    contact_points = {
        "apiVersion": 1,
        "contactPoints": [
            {
                "orgId": 1,
                "name": CONTACT_POINT,
                "receivers": [
                    {
                        "uid": "alert-sink-webhook",
                        "type": "webhook",
                        "disableResolveMessage": False,
                        "settings": {"url": SINK_URL, "httpMethod": "POST"},
                    }
                ],
            }
        ],
    }
    # A provisioned policy replaces the whole notification tree: this is all of it.
    policies = {
        "apiVersion": 1,
        "policies": [
            {
                "orgId": 1,
                "receiver": CONTACT_POINT,
                "group_by": ["grafana_folder", "alertname", "model"],
                "group_wait": "30s",
                "group_interval": "5m",
                "repeat_interval": "4h",
            }
        ],
    }
    return {
        RULES_FILE: dump(groups),
        CONTACT_POINTS_FILE: dump(contact_points),
        POLICIES_FILE: dump(policies),
    }
