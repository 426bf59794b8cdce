"""alert-sink: receives Alertmanager and Grafana webhook notifications, logs each alert as a JSON
line, lists them at GET /alerts and counts them in alert_sink_notifications_total.

`python -m mlobs.serve services.alert_sink.app:app --port 8003`. It stands in for a pager in the
demo and proves delivery in the tests.
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import FastAPI, Query
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from mlobs.logs import configure_logging, get_logger
from mlobs.settings import Settings

Source = Literal["alertmanager", "grafana"]
SEVERITIES = ("critical", "warning", "info")


class WebhookAlert(BaseModel):
    """One alert of a webhook payload; Alertmanager and Grafana share these fields."""

    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str | None = None  # the payload's own field names
    endsAt: str | None = None
    fingerprint: str | None = None


class WebhookPayload(BaseModel):
    """An Alertmanager (version 4) or Grafana webhook notification."""

    model_config = ConfigDict(extra="allow")

    receiver: str = ""
    status: Literal["firing", "resolved"]
    alerts: list[WebhookAlert] = Field(max_length=1000)


class Notification(BaseModel):
    """One received alert, as listed at GET /alerts."""

    received_at: str
    source: Source
    receiver: str
    status: str
    alertname: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str | None
    ends_at: str | None
    fingerprint: str | None


class NotificationStore:
    """The most recent notifications, bounded, thread-safe."""

    def __init__(self, capacity: int) -> None:
        self._items: deque[Notification] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def add(self, items: list[Notification]) -> None:
        with self._lock:
            self._items.extend(items)

    def list(self, **filters: str | None) -> list[Notification]:
        """Newest first; each non-None filter must equal the field of that name."""
        with self._lock:
            items = list(self._items)
        wanted = {k: v for k, v in filters.items() if v is not None}
        return [n for n in reversed(items) if all(getattr(n, k) == v for k, v in wanted.items())]


def create_sink_app(capacity: int = 1000, settings: Settings | None = None) -> FastAPI:
    """The alert-sink app, keeping the last `capacity` notifications."""
    configure_logging(settings or Settings.from_env())
    log = get_logger(service="alert-sink")
    store = NotificationStore(capacity)
    registry = CollectorRegistry()
    received = Counter(
        "alert_sink_notifications_total",
        "Alert notifications received, by sender and alert status.",
        ["source", "status", "severity"],
        registry=registry,
    )
    app = FastAPI(title="alert-sink")

    def receive(source: Source, payload: WebhookPayload) -> dict[str, int]:
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        items = []
        for alert in payload.alerts:
            severity = alert.labels.get("severity", "")
            item = Notification(
                received_at=now,
                source=source,
                receiver=payload.receiver,
                status=alert.status,
                alertname=alert.labels.get("alertname", ""),
                severity=severity,
                labels=alert.labels,
                annotations=alert.annotations,
                starts_at=alert.startsAt,
                ends_at=alert.endsAt,
                fingerprint=alert.fingerprint,
            )
            items.append(item)
            # Bounded labels: an unexpected severity is counted as "other".
            received.labels(
                source, alert.status, severity if severity in SEVERITIES else "other"
            ).inc()
            log.info("alert_notification", **item.model_dump(exclude={"received_at"}))
        store.add(items)
        return {"received": len(items)}

    @app.post("/alertmanager", summary="Alertmanager webhook receiver")
    async def alertmanager(payload: WebhookPayload) -> dict[str, int]:
        return receive("alertmanager", payload)

    @app.post("/grafana", summary="Grafana webhook contact point")
    async def grafana(payload: WebhookPayload) -> dict[str, int]:
        return receive("grafana", payload)

    @app.get("/alerts", summary="Received notifications, newest first")
    async def alerts(
        source: Source | None = None,
        alertname: str | None = None,
        status: Literal["firing", "resolved"] | None = None,
        limit: int = Query(100, ge=1, le=1000),
    ) -> list[Notification]:
        return store.list(source=source, alertname=alertname, status=status)[:limit]

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, Any]:
        return {"status": "ready"}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


app = create_sink_app()
