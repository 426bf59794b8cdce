"""Which dashboard panel explains which alert, rendered into both kinds of alert link: the
`dashboard` annotation of a Prometheus alert opens the panel's dashboard with the alert's labels as
its variables (the whole dashboard, not the panel alone); a Grafana alert rule names the
panel itself (`__dashboardUid__`, `__panelId__`). tests/unit/test_alert_links.py checks that each
panel named here reads its alert's series.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

HEALTH_UID = "ml-model-health"
DRIFT_UID = "ml-drift"

# Panel titles the links point at (grafana_dashboards uses the same constants).
LATENCY_PANEL = "Latency p50 / p90 / p99"
ERROR_RATIO_PANEL = "5xx ratio (server errors + shed)"
LOW_CONFIDENCE_PANEL = "Low-confidence share"
TARGETS_PANEL = "Targets up"
REQUEST_RATE_PANEL = "Request rate by outcome"
PSI_PANEL = "PSI per feature"


@dataclass(frozen=True)
class PanelLink:
    """A dashboard panel, and the alert labels passed to it as dashboard variables."""

    uid: str
    panel: str
    variables: tuple[str, ...] = ("model",)


ALERT_PANELS: dict[str, PanelLink] = {
    "ModelP99LatencyHigh": PanelLink(HEALTH_UID, LATENCY_PANEL),
    "ModelErrorRateHigh": PanelLink(HEALTH_UID, ERROR_RATIO_PANEL),
    "ModelFeatureDriftHigh": PanelLink(DRIFT_UID, PSI_PANEL, ("model", "feature")),
    "ModelLowConfidence": PanelLink(HEALTH_UID, LOW_CONFIDENCE_PANEL),
    "ModelServerDown": PanelLink(HEALTH_UID, TARGETS_PANEL),
    "ModelServerMissing": PanelLink(HEALTH_UID, TARGETS_PANEL),
    "ModelNoTraffic": PanelLink(HEALTH_UID, REQUEST_RATE_PANEL),
}


def dashboard_url(grafana_url: str, alert_name: str) -> str:
    """The alert's dashboard link as a Prometheus annotation template, e.g.
    `http://localhost:3000/d/ml-drift?var-model={{ $labels.model }}&var-feature=...`."""
    link = ALERT_PANELS[alert_name]
    query = "&".join(f"var-{name}={{{{ $labels.{name} }}}}" for name in link.variables)
    return f"{grafana_url}/d/{quote(link.uid)}?{query}"
