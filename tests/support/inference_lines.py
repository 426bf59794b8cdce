"""Real inference log lines of every kind, written by create_app's servers in this process."""

from __future__ import annotations

import json
from pathlib import Path

from mlobs.logs import flush_logs
from tests.unit.test_server_contract import ANOMALY_BODY, CHAT_BODY

# Optional keys that only some events carry; every one must appear among the lines below.
OPTIONAL_KEYS = {"error_type", "raw_input", "predict_ms", "features", "trace_id", "span_id"}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def inference_lines(serve, anomaly_model, chatbot_model, log_file: Path) -> list[str]:
    """Lines of answers, client and server errors, a timeout, a shed request, raw input and a
    request with trace context."""
    with serve(anomaly_model, faults_enabled=True, predict_timeout_seconds=0.05) as client:
        client.post("/predict", json=ANOMALY_BODY)
        client.post("/predict", json=ANOMALY_BODY, headers={"traceparent": TRACEPARENT})
        client.post("/predict", json={"features": {}})
        client.post("/admin/faults", json={"error_rate": 1.0})
        client.post("/predict", json=ANOMALY_BODY)
        client.post("/admin/faults", json={"error_rate": 0.0, "latency_ms": 500})
        client.post("/predict", json=ANOMALY_BODY)  # 504 timeout
        client.post("/admin/faults", json={"latency_ms": 0})
        client.app.state.shutdown.begin()
        client.post("/predict", json=ANOMALY_BODY)  # 503 shutting_down: shed
    with serve(chatbot_model, log_raw_input=True) as client:
        client.post("/predict", json=CHAT_BODY)
        client.post("/predict", json={"message": "qwzx"})
    flush_logs()
    lines = [line for line in log_file.read_text().splitlines() if line.strip()]
    return [line for line in lines if json.loads(line).get("message") == "inference"]
