"""alert-sink accepts Alertmanager and Grafana webhook payloads, lists and counts them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mlobs.settings import Settings
from services.alert_sink.app import create_sink_app
from tests.support.http import log_events, sample

# Payloads as the senders post them: Alertmanager webhook v4, Grafana webhook contact point.
ALERTMANAGER = {
    "version": "4",
    "groupKey": '{}:{alertname="ModelErrorRateHigh", model="chatbot"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "alert-sink-critical",
    "groupLabels": {"alertname": "ModelErrorRateHigh", "model": "chatbot"},
    "commonLabels": {"alertname": "ModelErrorRateHigh", "model": "chatbot", "severity": "critical"},
    "commonAnnotations": {"summary": "chatbot answers more than 1% of requests with server errors"},
    "externalURL": "http://alertmanager:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "ModelErrorRateHigh",
                "model": "chatbot",
                "severity": "critical",
            },
            "annotations": {
                "summary": "chatbot answers more than 1% of requests with server errors"
            },
            "startsAt": "2026-11-29T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=...",
            "fingerprint": "a1b2c3",
        }
    ],
}
GRAFANA = {
    "receiver": "alert-sink",
    "status": "resolved",
    "orgId": 1,
    "alerts": [
        {
            "status": "resolved",
            "labels": {
                "alertname": "ModelFeatureDriftHigh",
                "model": "anomaly-detector",
                "severity": "warning",
                "grafana_folder": "ML",
            },
            "annotations": {"summary": "drift"},
            "startsAt": "2026-11-29T10:00:00Z",
            "endsAt": "2026-11-29T10:10:00Z",
            "values": {"B": 0.31},
            "valueString": "[ var='B' value=0.31 ]",
            "generatorURL": "http://grafana:3000/alerting/grafana/x/view",
            "fingerprint": "d4e5f6",
            "silenceURL": "http://grafana:3000/alerting/silence/new",
            "dashboardURL": "",
            "panelURL": "",
        }
    ],
    "groupLabels": {"alertname": "ModelFeatureDriftHigh"},
    "commonLabels": {"alertname": "ModelFeatureDriftHigh"},
    "commonAnnotations": {},
    "externalURL": "http://grafana:3000/",
    "version": "1",
    "groupKey": '{}:{alertname="ModelFeatureDriftHigh"}',
    "truncatedAlerts": 0,
    "title": "[RESOLVED] ModelFeatureDriftHigh",
    "state": "ok",
    "message": "**Resolved**",
}


@pytest.fixture
def sink(tmp_path):
    app = create_sink_app(capacity=3, settings=Settings(log_file=tmp_path / "sink.log"))
    with TestClient(app) as client:
        yield client


def test_both_senders_are_received_listed_and_counted(sink, tmp_path):
    assert sink.post("/alertmanager", json=ALERTMANAGER).json() == {"received": 1}
    assert sink.post("/grafana", json=GRAFANA).json() == {"received": 1}
    listed = sink.get("/alerts").json()
    assert [(n["source"], n["alertname"], n["status"]) for n in listed] == [
        ("grafana", "ModelFeatureDriftHigh", "resolved"),
        ("alertmanager", "ModelErrorRateHigh", "firing"),
    ]
    assert listed[1]["labels"]["model"] == "chatbot"
    assert listed[1]["receiver"] == "alert-sink-critical"
    text = sink.get("/metrics").text
    assert (
        sample(
            text,
            "alert_sink_notifications_total",
            source="alertmanager",
            status="firing",
            severity="critical",
        )
        == 1
    )
    assert (
        sample(
            text,
            "alert_sink_notifications_total",
            source="grafana",
            status="resolved",
            severity="warning",
        )
        == 1
    )
    events = log_events(tmp_path / "sink.log", "alert_notification")
    assert [e["alertname"] for e in events] == ["ModelErrorRateHigh", "ModelFeatureDriftHigh"]


def test_filters_and_bounded_memory(sink):
    for _ in range(5):
        sink.post("/alertmanager", json=ALERTMANAGER)
    sink.post("/grafana", json=GRAFANA)
    # The newest `capacity` notifications, newest first.
    assert _listed(sink) == [("grafana", "resolved"), *[("alertmanager", "firing")] * 2]
    assert _listed(sink, source="grafana") == [("grafana", "resolved")]
    assert _listed(sink, status="firing", limit=1) == [("alertmanager", "firing")]
    assert _listed(sink, status="firing") == [("alertmanager", "firing")] * 2
    assert sink.get("/alerts", params={"alertname": "Nope"}).json() == []


def _listed(sink, **params: object) -> list[tuple[str, str]]:
    """(source, status) of what GET /alerts lists."""
    return [(n["source"], n["status"]) for n in sink.get("/alerts", params=params).json()]


def test_unknown_severity_does_not_create_label_values(sink):
    payload = {
        **ALERTMANAGER,
        "alerts": [
            {
                **ALERTMANAGER["alerts"][0],
                "labels": {"alertname": "X", "severity": "sev-" + "9" * 50},
            }
        ],
    }
    sink.post("/alertmanager", json=payload)
    text = sink.get("/metrics").text
    assert (
        sample(
            text,
            "alert_sink_notifications_total",
            source="alertmanager",
            status="firing",
            severity="other",
        )
        == 1
    )


def test_malformed_payloads_are_rejected_without_losing_earlier_ones(sink):
    sink.post("/alertmanager", json=ALERTMANAGER)
    assert sink.post("/alertmanager", json={"status": "firing"}).status_code == 422
    assert (
        sink.post(
            "/alertmanager", content=b"{", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    assert sink.post("/grafana", json={**GRAFANA, "status": "weird"}).status_code == 422
    assert len(sink.get("/alerts").json()) == 1
