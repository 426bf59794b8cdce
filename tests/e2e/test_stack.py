"""End to end on the Docker stack: health, metrics, Grafana provisioning, the log pipeline without
loss or duplicates, and alerts from both Prometheus and Grafana reaching alert-sink."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import httpx
import pytest

from tests.conftest import REPO
from tests.e2e.conftest import Stack
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

URL = {
    "anomaly-detector": "http://127.0.0.1:8001",
    "chatbot": "http://127.0.0.1:8002",
    "alert-sink": "http://127.0.0.1:8003",
    "prometheus": "http://127.0.0.1:9090",
    "alertmanager": "http://127.0.0.1:9093",
    "grafana": "http://127.0.0.1:3000",
    "elasticsearch": "http://127.0.0.1:9200",
    "kibana": "http://127.0.0.1:5601",
}
DATA_STREAM = "logs-mlobs.inference-default"
MAPPING = json.loads((REPO / "elasticsearch/component-template.json").read_text())
GRAFANA_RULE_UIDS = {
    "mlobs-modelp99latencyhigh",
    "mlobs-modelerrorratehigh",
    "mlobs-modelfeaturedrifthigh",
}


def _grafana(stack: Stack) -> httpx.Client:
    return httpx.Client(
        base_url=URL["grafana"], timeout=10, auth=("admin", stack.env["GRAFANA_ADMIN_PASSWORD"])
    )


def _elastic(stack: Stack) -> httpx.Client:
    return httpx.Client(
        base_url=URL["elasticsearch"], timeout=10, auth=("elastic", stack.env["ELASTIC_PASSWORD"])
    )


def _count(stack: Stack, query: str) -> int:
    with _elastic(stack) as es:
        es.post(f"/{DATA_STREAM}/_refresh")
        response = es.get(f"/{DATA_STREAM}/_count", params={"q": query})
    return response.json()["count"] if response.status_code == 200 else -1


def _loadgen(stack: Stack, scenario: str, seconds: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.loadgen",
            "--scenario",
            scenario,
            "--rate",
            "5",
            "--duration",
            str(seconds),
            "--admin-token",
            stack.env["MLOBS_ADMIN_TOKEN"],
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )


def test_every_service_is_healthy_and_setup_succeeded(stack):
    containers = {c.Service: c for c in stack.compose.get_containers(include_all=True)}
    assert containers["setup"].ExitCode == 0
    unhealthy = {
        name: c.Health
        for name, c in containers.items()
        if name != "setup" and c.Health != "healthy"
    }
    assert unhealthy == {}


def test_prometheus_scrapes_every_target_and_sees_a_request(stack):
    httpx.post(f"{URL['chatbot']}/predict", json={"message": "where is my order"}, timeout=10)

    def targets_up() -> bool:
        targets = httpx.get(f"{URL['prometheus']}/api/v1/targets", timeout=5).json()
        active = targets["data"]["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    wait_for("every Prometheus target up", targets_up, timeout=120)
    query = 'sum(model_requests_total{model="chatbot",status="success"})'

    def counted() -> bool:
        result = httpx.get(
            f"{URL['prometheus']}/api/v1/query", params={"query": query}, timeout=5
        ).json()["data"]["result"]
        return bool(result) and float(result[0]["value"][1]) >= 1

    wait_for("the request in Prometheus", counted, timeout=60)


def test_grafana_is_provisioned_without_errors(stack):
    with _grafana(stack) as grafana:
        assert grafana.get("/api/health").json()["database"] == "ok"
        for uid in ("prometheus", "elasticsearch"):
            health = wait_for(
                f"datasource {uid} healthy",
                lambda uid=uid: grafana.get(f"/api/datasources/uid/{uid}/health"),
                timeout=120,
            )
            assert health.status_code == 200 and health.json()["status"] == "OK", health.text
        for uid in ("ml-model-health", "ml-drift"):
            assert grafana.get(f"/api/dashboards/uid/{uid}").status_code == 200
        rules = grafana.get("/api/v1/provisioning/alert-rules").json()
        assert {r["uid"] for r in rules} == GRAFANA_RULE_UIDS
    errors = [
        line
        for line in stack.logs("grafana").splitlines()
        if "level=error" in line and "provisioning" in line.lower()
    ]
    assert errors == []


def test_a_request_reaches_elasticsearch_typed_as_mapped(stack):
    request_id = f"e2e-{uuid.uuid4().hex}"
    httpx.post(
        f"{URL['anomaly-detector']}/predict",
        timeout=10,
        headers={"X-Request-ID": request_id},
        json={
            "features": {
                "temperature_c": 65,
                "pressure_kpa": 310,
                "vibration_mm_s": 2.2,
                "rotation_rpm": 1500,
                "power_kw": 22,
            }
        },
    )
    wait_for(
        f"document {request_id}",
        lambda: _count(stack, f"request_id:{request_id}") == 1,
        timeout=60,
        every=2,
    )
    with _elastic(stack) as es:
        mapping = es.get(f"/{DATA_STREAM}/_mapping").json()
    [index] = mapping.values()
    live = index["mappings"]["properties"]
    expected = MAPPING["template"]["mappings"]["properties"]
    for field in ("model", "request_id", "prediction", "confidence", "latency_ms", "@timestamp"):
        assert live[field]["type"] == expected[field]["type"], field
    assert live["features"]["properties"]["temperature_c"]["type"] == "float"


def test_saved_search_query_finds_low_confidence_predictions(stack):
    for i in range(5):
        httpx.post(f"{URL['chatbot']}/predict", json={"message": f"qwzx vbnm {i}"}, timeout=10)
    wait_for(
        "low-confidence documents",
        lambda: _count(stack, "tags:low_confidence") >= 5,
        timeout=90,
        every=2,
    )
    with httpx.Client(
        base_url=URL["kibana"], timeout=10, auth=("elastic", stack.env["ELASTIC_PASSWORD"])
    ) as kibana:
        found = kibana.get("/api/saved_objects/search/mlobs-low-confidence")
    assert found.status_code == 200


def test_restarting_logstash_mid_burst_neither_loses_nor_duplicates(stack):
    prefix = f"burst-{uuid.uuid4().hex[:8]}"
    total = 300
    with httpx.Client(timeout=10) as client:
        for i in range(total):
            client.post(
                f"{URL['chatbot']}/predict",
                json={"message": "where is my order"},
                headers={"X-Request-ID": f"{prefix}-{i}"},
            )
            if i == total // 3:
                stack.compose_command("restart", "logstash")
    wait_for(
        f"all {total} documents",
        lambda: _count(stack, f"request_id:{prefix}-*") >= total,
        timeout=240,
        every=3,
    )
    assert _count(stack, f"request_id:{prefix}-*") == total


@pytest.mark.parametrize(
    ("scenario", "alertname"),
    [
        ("latency", "ModelP99LatencyHigh"),
        ("drift", "ModelFeatureDriftHigh"),
    ],
)
def test_chaos_fires_prometheus_and_grafana_alerts_that_reach_alert_sink(
    stack, scenario, alertname
):
    load = _loadgen(stack, scenario, 300)
    try:

        def delivered(source: str) -> list:
            return httpx.get(
                f"{URL['alert-sink']}/alerts",
                timeout=5,
                params={"alertname": alertname, "source": source, "status": "firing"},
            ).json()

        wait_for(
            f"{alertname} from Prometheus at alert-sink",
            lambda: delivered("alertmanager"),
            timeout=240,
            every=5,
        )
        wait_for(
            f"{alertname} from Grafana at alert-sink",
            lambda: delivered("grafana"),
            timeout=240,
            every=5,
        )
    finally:
        load.terminate()
        load.wait(timeout=60)
