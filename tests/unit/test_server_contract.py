"""The HTTP contract of DESIGN.md, checked on both sample servers in process."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from tests.support.http import label_values, log_events, metric_samples, sample

ANOMALY_BODY = {
    "features": {
        "temperature_c": 65.0,
        "pressure_kpa": 310.0,
        "vibration_mm_s": 2.2,
        "rotation_rpm": 1500.0,
        "power_kw": 22.0,
    }
}
CHAT_BODY = {"message": "where is my order, it is late"}
INFERENCE_FIELDS = {
    "timestamp",
    "level",
    "message",
    "model",
    "model_version",
    "request_id",
    "input_hash",
    "prediction",
    "confidence",
    "latency_ms",
    "status",
    "features",
    "predict_ms",
}

# The inference log's `features` of each model, in the order the model reads them.
LOGGED_FEATURES = {
    "anomaly-detector": list(ANOMALY_BODY["features"]),
    "chatbot": ["length", "tokens", "oov_share"],
}
# What GET /model tells a client to send (the chatbot's limit: test_bad_input.py's cases).
DESCRIBED_INPUT = {
    "anomaly-detector": {
        "features": LOGGED_FEATURES["anomaly-detector"],
        "type": "number",
        "finite": True,
    },
    "chatbot": {"message": {"type": "string", "min_length": 1, "max_length": 2000}},
}


@pytest.fixture(params=["anomaly", "chatbot"])
def server(request, serve, anomaly_model, chatbot_model):
    model, body = (
        (anomaly_model, ANOMALY_BODY) if request.param == "anomaly" else (chatbot_model, CHAT_BODY)
    )
    with serve(model) as client:
        yield client, model, body


def test_predict_answers_the_contract_fields(server):
    client, model, body = server
    response = client.post("/predict", json=body)
    assert response.status_code == 200
    answer = response.json()
    assert answer["label"] in model.labels
    assert 0.0 <= answer["confidence"] <= 1.0
    assert answer["model_version"] == model.version
    assert answer["request_id"] == response.headers["x-request-id"]
    assert ("score" in answer) == (model.name == "anomaly-detector")
    assert ("reply" in answer) == (model.name == "chatbot")


def test_request_id_is_taken_from_the_header_or_generated(server):
    client, _, body = server
    given = client.post("/predict", json=body, headers={"X-Request-ID": "trace-42.a:b"})
    assert given.headers["x-request-id"] == "trace-42.a:b" == given.json()["request_id"]
    generated = client.post("/predict", json=body)
    assert re.fullmatch(r"[0-9a-f]{32}", generated.json()["request_id"])
    # An id that could forge log lines or blow up cardinality is replaced, not echoed.
    hostile = client.post("/predict", json=body, headers={"X-Request-ID": "a b\tc" + "x" * 300})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])


def test_every_answer_carries_one_request_id(server):
    client, _, body = server
    answers = [
        client.post("/predict", json=body),  # answered by the endpoint
        client.post("/predict", json={"nonsense": 1}),  # by the validation error handler
        client.get("/predict"),  # 405, by the HTTP error handler
        client.get("/healthz"),  # a plain FastAPI answer
        client.get("/no-such-path"),  # 404
    ]
    for response in answers:
        ids = response.headers.get_list("x-request-id")
        assert len(ids) == 1 and re.fullmatch(r"[0-9a-f]{32}", ids[0]), response.request.url
        if response.status_code != 200 or response.request.url.path == "/predict":
            assert response.json()["request_id"] == ids[0]


def test_model_endpoint_describes_the_served_model(server):
    client, model, _ = server
    described = client.get("/model").json()
    assert described["name"] == model.name
    assert described["version"] == model.version
    assert described["labels"] == list(model.labels)
    assert described["input"] == DESCRIBED_INPUT[model.name]
    # Drift is watched on what the inference log records as `features`, and on the prediction.
    assert described["drift_features"] == [*LOGGED_FEATURES[model.name], "prediction"]


def test_metrics_exposition_has_every_family_with_contract_labels(server):
    client, model, body = server
    for _ in range(3):
        client.post("/predict", json=body)
    client.post("/predict", json={"nope": 1})
    text = client.get("/metrics").text
    mv = {"model": model.name, "model_version": model.version}
    assert sample(text, "model_requests_total", **mv, status="success") == 3
    assert sample(text, "model_requests_total", **mv, status="client_error") == 1
    assert sample(text, "model_requests_total", **mv, status="server_error") == 0
    assert sample(text, "model_latency_seconds_count", **mv) == 4
    assert sample(text, "model_latency_seconds_bucket", **mv, le="0.5") == 4
    assert sample(text, "model_confidence_count", **mv) == 3
    assert sample(text, "model_info", **mv) == 1
    assert label_values(text, "model_confidence_bucket", "le") == {
        "0.1",
        "0.2",
        "0.3",
        "0.4",
        "0.5",
        "0.6",
        "0.7",
        "0.8",
        "0.9",
        "0.95",
        "0.99",
        "+Inf",
    }
    assert label_values(text, "model_predictions_total", "label") == {*model.labels, "other"}
    predicted = sum(
        sample(text, "model_predictions_total", **mv, label=label) for label in model.labels
    )
    assert predicted == 3
    # No `_created` series: they would double every family's series for nothing.
    assert [name for name, _ in metric_samples(text) if name.endswith("_created")] == []


def test_unknown_paths_do_not_create_label_values(server):
    client, model, body = server
    for path in ("/predict/x", "/admin/anything", "/%2e%2e/etc/passwd", "/predictx"):
        assert client.get(path).status_code == 404
    client.post("/predict", json=body)
    text = client.get("/metrics").text
    assert (
        sample(text, "model_latency_seconds_count", model=model.name, model_version=model.version)
        == 1
    )
    assert "passwd" not in text and "predictx" not in text


def test_one_inference_log_line_per_request_with_contract_fields(server, log_file):
    client, model, body = server
    response = client.post("/predict", json=body, headers={"X-Request-ID": "req-1"})
    [event] = log_events(log_file)
    assert set(event) == INFERENCE_FIELDS
    assert event["message"] == "inference" and event["level"] == "info"
    assert datetime.fromisoformat(event["timestamp"]).utcoffset().total_seconds() == 0
    assert event["model"] == model.name and event["model_version"] == model.version
    assert event["request_id"] == "req-1"
    assert re.fullmatch(r"[0-9a-f]{16}", event["input_hash"])
    assert event["prediction"] == response.json()["label"]
    assert event["confidence"] == response.json()["confidence"]
    assert event["latency_ms"] >= event["predict_ms"] > 0  # the caller also waited for the rest
    assert event["status"] == "success"
    assert all(isinstance(v, float) for v in event["features"].values())


def _one_value_changed(body: dict) -> dict:
    if "message" in body:
        return {**body, "message": body["message"] + "?"}
    features = dict(body["features"])
    features["temperature_c"] += 0.5
    return {**body, "features": features}


def test_same_input_gives_same_input_hash_and_another_input_another(server, log_file):
    client, _, body = server
    for sent in (body, body, _one_value_changed(body)):
        assert client.post("/predict", json=sent).status_code == 200
    first, second, third = log_events(log_file)
    assert first["input_hash"] == second["input_hash"] != third["input_hash"]
    assert first["request_id"] != second["request_id"]


def test_anomaly_detector_logs_its_numeric_inputs(serve, anomaly_model, log_file):
    with serve(anomaly_model) as client:
        client.post("/predict", json=ANOMALY_BODY)
    [event] = log_events(log_file)
    assert event["features"] == ANOMALY_BODY["features"]


def test_chatbot_never_logs_raw_text_unless_opted_in(serve, chatbot_model, log_file):
    secret = "my card number is 4111 1111 1111 1111, where is my order"
    with serve(chatbot_model) as client:
        client.post("/predict", json={"message": secret})
        client.post("/predict", json={"message": secret, "extra": "field"})
    assert "4111" not in log_file.read_text()
    [event, _] = log_events(log_file)
    assert list(event["features"]) == LOGGED_FEATURES["chatbot"]
    assert event["features"]["length"] == len(secret)

    with serve(chatbot_model, log_raw_input=True) as client:
        client.post("/predict", json={"message": secret})
    assert log_events(log_file)[-1]["raw_input"] == {"message": secret}


def test_log_file_rotates_by_size(serve, chatbot_model, log_file):
    with serve(chatbot_model, log_max_bytes=2_000, log_backup_count=2) as client:
        for _ in range(40):
            client.post("/predict", json=CHAT_BODY)
    rotated = sorted(p.name for p in log_file.parent.glob("inference.log*"))
    assert rotated == ["inference.log", "inference.log.1", "inference.log.2"]
    assert all(p.stat().st_size <= 2_000 for p in log_file.parent.glob("inference.log*"))


# What the server_ready line tells an operator about the server that just started.
STARTED_FIELDS = [
    "level", "model", "model_version", "faults_enabled", "predict_mode", "predict_concurrency"
]  # fmt: skip
# Settings at start -> whether the operator is warned that /admin/faults is open to anyone.
STARTS = {
    "faults off": ({}, False),
    "faults on without a token": ({"faults_enabled": True}, True),
    "faults on with a token": ({"faults_enabled": True, "admin_token": "t"}, False),
}


@pytest.mark.parametrize(("overrides", "warned"), STARTS.values(), ids=STARTS)
def test_the_start_says_how_predictions_run_and_warns_of_unprotected_faults(
    serve, chatbot_model, log_file, overrides, warned
):
    with serve(chatbot_model, predict_concurrency=3, **overrides):
        pass
    [ready] = log_events(log_file, "server_ready")
    assert {key: ready.get(key) for key in STARTED_FIELDS} == {
        "level": "info",
        "model": "chatbot",
        "model_version": chatbot_model.version,
        "faults_enabled": "faults_enabled" in overrides,
        "predict_mode": "inline",  # the sample models opt in (inline_predict)
        "predict_concurrency": 3,
    }
    hint = ("warning", "set MLOBS_ADMIN_TOKEN to protect /admin/faults")
    hints = [(w["level"], w["hint"]) for w in log_events(log_file, "faults_unprotected")]
    assert hints == ([hint] if warned else [])


def test_the_api_docs_name_the_model_and_its_version(server):
    """/docs (OpenAPI) is titled after the model, at the version it serves."""
    client, model, _ = server
    info = client.get("/openapi.json").json()["info"]
    assert (info["title"], info["version"]) == (f"{model.name} model server", model.version)
