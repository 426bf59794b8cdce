"""Bad input gets a 4xx JSON error naming the field, is counted and logged, and never kills the
server; a failing model gets a JSON 500 counted as server_error."""

from __future__ import annotations

import json

import pytest

from mlobs.model import Prediction
from tests.support.http import log_events, sample
from tests.unit.test_server_contract import ANOMALY_BODY, CHAT_BODY


def _with_feature(name: str, value) -> dict:
    return {"features": {**ANOMALY_BODY["features"], name: value}}


def _without_feature(name: str) -> dict:
    return {"features": {k: v for k, v in ANOMALY_BODY["features"].items() if k != name}}


ANOMALY_CASES = [
    (
        "string number",
        json.dumps(_with_feature("pressure_kpa", "310")),
        422,
        "features.pressure_kpa",
    ),
    ("boolean", json.dumps(_with_feature("power_kw", True)), 422, "features.power_kw"),
    ("null", json.dumps(_with_feature("power_kw", None)), 422, "features.power_kw"),
    ("missing feature", json.dumps(_without_feature("rotation_rpm")), 422, "features.rotation_rpm"),
    ("unknown feature", json.dumps(_with_feature("humidity", 3.0)), 422, "features.humidity"),
    ("unknown top-level field", json.dumps({**ANOMALY_BODY, "x": 1}), 422, "x"),
    (
        "NaN",
        json.dumps(_with_feature("temperature_c", float("nan"))),
        422,
        "features.temperature_c",
    ),
    (
        "Infinity",
        json.dumps(_with_feature("temperature_c", float("inf"))),
        422,
        "features.temperature_c",
    ),
    (
        "overflow to infinity",
        json.dumps(ANOMALY_BODY).replace("65.0", "1e999"),
        422,
        "features.temperature_c",
    ),
    ("features not an object", json.dumps({"features": [1, 2, 3]}), 422, "features"),
    ("body not an object", "[]", 422, "body"),
    ("malformed JSON", '{"features": {', 422, "body"),
    ("empty body", "", 422, "body"),
]
CHAT_CASES = [
    ("empty message", json.dumps({"message": ""}), 422, "message"),
    ("blank message", json.dumps({"message": " \n\t "}), 422, "message"),
    ("over-long message", json.dumps({"message": "a" * 2001}), 422, "message"),
    ("number message", json.dumps({"message": 42}), 422, "message"),
    ("missing message", json.dumps({}), 422, "message"),
    ("unknown field", json.dumps({"message": "hi", "user": "bob"}), 422, "user"),
    ("malformed JSON", '{"message": "hi"', 422, "body"),
]


def _expected_error(case: str, status: int, field: str | None) -> tuple[str, str]:
    """The `error` code and the start of `detail` a client is shown: the detail names the
    offending field, or says the JSON is malformed, or gives the size limit."""
    if status == 413:
        return "body_too_large", "request body is larger than the limit of 65536 bytes"
    if case == "malformed JSON":
        return "invalid_json", "malformed JSON: "
    return "invalid_input", f"{field}: "


def _check_rejected(
    client, model, log_file, case: str, body: str, status: int, field: str | None
) -> None:
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()
    assert error["field"] == field
    assert error["request_id"] == response.headers["x-request-id"]
    code, detail = _expected_error(case, status, field)
    assert error["error"] == code
    assert error["detail"].startswith(detail), error
    [event] = log_events(log_file)
    assert event["status"] == "client_error" and event["error_type"] == error["error"]
    metrics = client.get("/metrics").text
    labels = {"model": model.name, "model_version": model.version}
    assert sample(metrics, "model_requests_total", **labels, status="client_error") == 1
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("case", "body", "status", "field"), ANOMALY_CASES, ids=[c[0] for c in ANOMALY_CASES]
)
def test_anomaly_detector_rejects(serve, anomaly_model, log_file, case, body, status, field):
    with serve(anomaly_model) as client:
        _check_rejected(client, anomaly_model, log_file, case, body, status, field)


@pytest.mark.parametrize(
    ("case", "body", "status", "field"), CHAT_CASES, ids=[c[0] for c in CHAT_CASES]
)
def test_chatbot_rejects(serve, chatbot_model, log_file, case, body, status, field):
    with serve(chatbot_model) as client:
        _check_rejected(client, chatbot_model, log_file, case, body, status, field)


def test_message_of_exactly_the_limit_is_accepted(serve, chatbot_model):
    with serve(chatbot_model) as client:
        assert client.post("/predict", json={"message": "a" * 2000}).status_code == 200


def test_wrong_content_type_is_a_client_error(serve, chatbot_model):
    with serve(chatbot_model) as client:
        response = client.post(
            "/predict", content=b'{"message": "hi"}', headers={"content-type": "text/plain"}
        )
    assert response.status_code == 422
    error = response.json()
    assert (error["error"], error["field"], error["detail"]) == (
        "invalid_input",
        "body",
        "the body must be a JSON object sent with Content-Type: application/json",
    )


def test_wrong_method_is_a_client_error(serve, chatbot_model):
    with serve(chatbot_model) as client:
        assert client.get("/predict").status_code == 405
        text = client.get("/metrics").text
    labels = {"model": "chatbot", "model_version": chatbot_model.version}
    assert sample(text, "model_requests_total", **labels, status="client_error") == 1


class ExplodingChatbot:
    """The real chatbot, except that one message makes the model raise."""

    def __init__(self, inner) -> None:
        self.inner = inner
        for name in ("name", "version", "labels", "input_model", "baseline"):
            setattr(self, name, getattr(inner, name))
        self.input_schema, self.example_input = inner.input_schema, inner.example_input

    def predict(self, payload) -> Prediction:
        if payload.message == "boom":
            raise ZeroDivisionError("secret user text must not reach the log")
        if payload.message == "nan":
            return Prediction(label="greeting", confidence=float("nan"))
        return self.inner.predict(payload)


def test_model_exception_is_a_json_500_counted_and_logged(serve, chatbot_model, log_file):
    with serve(ExplodingChatbot(chatbot_model)) as client:
        failed = client.post("/predict", json={"message": "boom"})
        bad_output = client.post("/predict", json={"message": "nan"})
        fine = client.post("/predict", json=CHAT_BODY)
        text = client.get("/metrics").text
    assert failed.status_code == 500 and failed.json()["error"] == "model_error"
    assert bad_output.status_code == 500
    assert fine.status_code == 200
    labels = {"model": "chatbot", "model_version": chatbot_model.version}
    assert sample(text, "model_requests_total", **labels, status="server_error") == 2
    events = log_events(log_file)
    assert [e["status"] for e in events] == ["server_error", "server_error", "success"]
    assert events[0]["error_type"] == "ZeroDivisionError" and events[0]["level"] == "error"
    assert events[1]["error_type"] == "InvalidPrediction"  # the model's bug, not the input's
    assert "secret user text" not in log_file.read_text()
