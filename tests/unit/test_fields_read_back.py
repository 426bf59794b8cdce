"""Every field a model server writes, read back and held to the README's contract.

The inference log line of each outcome is read as Logstash indexes it (tests/support/log_chain.py
over the generated pipeline), next to the answer and the metrics the same request produced;
/drift's per-feature fields against the baseline file read directly; /readyz and /healthz through
a server's life. Expectations come from the hand-written tables below, not from mlobs. (/drift's
window and threshold against the spec: tests/unit/test_spec_fields.py.)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from mlobs.logs import flush_logs
from mlobs.server import create_app
from mlobs.settings import Settings
from services.anomaly_detector.model import AnomalyDetector
from tests.conftest import REPO
from tests.support.generated import spec_yaml
from tests.support.http import metric_samples
from tests.support.log_chain import (
    FILEBEAT_FIELDS,
    LOGSTASH_FIELDS,
    filebeat,
    filebeat_processors,
    logstash,
)
from tests.support.stack_files import filebeat_input
from tests.unit.test_bad_input import ExplodingChatbot
from tests.unit.test_server_contract import ANOMALY_BODY, CHAT_BODY

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID = "b7ad6b7169203331"
REQUEST_ID = "read-back.1"
LOW_CONFIDENCE_BODY = {"message": "qwzx"}  # not one known word: the chatbot falls back
TOO_LARGE_BODY = json.dumps({"message": "x" * 70_000})  # over the 64 KiB body limit
# README, What is measured: the status label's values.
STATUSES = ("success", "client_error", "server_error", "shed")
# The fields of every inference line; the others depend on the outcome (README, What is measured).
ALWAYS_LOGGED = {
    "timestamp",
    "level",
    "message",
    "model",
    "model_version",
    "request_id",
    "latency_ms",
    "status",
}
LOW_CONFIDENCE_TAG = "low_confidence"  # README, Inference logs: the Logstash pipeline's tag

# outcome: (HTTP status, the answer's `error`, log level, status, error_type, predict_ms logged).
# level: README "info for a success, warning for a client error or a shed request, error for a
# server error"; error_type: "the exception's class, timeout, overloaded, shutting_down, ...";
# predict_ms: "the time inside the model's predict, when it ran" (here: when it returned).
OUTCOMES: dict[str, tuple[int, str | None, str, str, str | None, bool]] = {
    "ok": (200, None, "info", "success", None, True),
    "low confidence": (200, None, "info", "success", None, True),
    "invalid input": (422, "invalid_input", "warning", "client_error", "invalid_input", False),
    "malformed JSON": (422, "invalid_json", "warning", "client_error", "invalid_json", False),
    "body too large": (413, "body_too_large", "warning", "client_error", "body_too_large", False),
    "wrong method": (405, "http_405", "warning", "client_error", "http_405", False),
    "model exception": (500, "model_error", "error", "server_error", "ZeroDivisionError", False),
    "confidence NaN": (500, "model_error", "error", "server_error", "InvalidPrediction", True),
    "injected fault": (500, "injected_fault", "error", "server_error", "InjectedFault", False),
    "timeout": (504, "timeout", "error", "server_error", "timeout", False),
    "overloaded": (503, "overloaded", "warning", "shed", "overloaded", False),
    "shutting down": (503, "shutting_down", "warning", "shed", "shutting_down", False),
}


MODEL_SECONDS = 0.02  # every prediction takes at least this long: predict_ms has a lower bound


class HoldingChatbot(ExplodingChatbot):
    """The real chatbot in a thread pool ("boom" raises, "nan" answers NaN), taking at least
    MODEL_SECONDS, and a "hold" message that keeps its concurrency slot until `let_go`."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.entered, self.released = threading.Event(), threading.Event()
        self.holder: threading.Thread | None = None

    def predict(self, payload):
        if payload.message == "hold":
            self.entered.set()
            self.released.wait(timeout=30)
        time.sleep(MODEL_SECONDS)
        return super().predict(payload)

    def hold_the_only_slot(self, client: TestClient) -> None:
        self.holder = threading.Thread(
            target=client.post, args=("/predict",), kwargs={"json": {"message": "hold"}}
        )
        self.holder.start()
        assert self.entered.wait(timeout=30), "the holding prediction never started"

    def let_go(self) -> None:
        self.released.set()
        if self.holder is not None:
            self.holder.join(timeout=30)


Send = Callable[[TestClient, HoldingChatbot, dict[str, str]], httpx.Response]


def _post(body: dict) -> Send:
    return lambda client, _model, headers: client.post("/predict", json=body, headers=headers)


def _post_text(text: str) -> Send:
    def send(client: TestClient, _model: HoldingChatbot, headers: dict[str, str]):
        headers = {**headers, "content-type": "application/json"}
        return client.post("/predict", content=text, headers=headers)

    return send


def _after_faults(faults: dict) -> Send:
    def send(client: TestClient, _model: HoldingChatbot, headers: dict[str, str]):
        assert client.post("/admin/faults", json=faults).status_code == 200
        return client.post("/predict", json=CHAT_BODY, headers=headers)

    return send


def _overloaded(client: TestClient, model: HoldingChatbot, headers: dict[str, str]):
    model.hold_the_only_slot(client)  # one slot, no queue: the next prediction is refused
    return client.post("/predict", json=CHAT_BODY, headers=headers)


def _shutting_down(client: TestClient, _model: HoldingChatbot, headers: dict[str, str]):
    client.app.state.shutdown.begin()
    return client.post("/predict", json=CHAT_BODY, headers=headers)


# outcome: the one /predict request that has it, and its body when it has a valid one.
REQUESTS: dict[str, tuple[Send, dict | None]] = {
    "ok": (_post(CHAT_BODY), CHAT_BODY),
    "low confidence": (_post(LOW_CONFIDENCE_BODY), LOW_CONFIDENCE_BODY),
    "invalid input": (_post({"message": ""}), None),
    "malformed JSON": (_post_text('{"message": "hi"'), None),
    "body too large": (_post_text(TOO_LARGE_BODY), None),
    "wrong method": (lambda client, _, headers: client.get("/predict", headers=headers), None),
    "model exception": (_post({"message": "boom"}), {"message": "boom"}),
    "confidence NaN": (_post({"message": "nan"}), {"message": "nan"}),
    "injected fault": (_after_faults({"error_rate": 1.0}), CHAT_BODY),
    "timeout": (_after_faults({"latency_ms": 500}), CHAT_BODY),
    "overloaded": (_overloaded, CHAT_BODY),
    "shutting down": (_shutting_down, CHAT_BODY),
}
TIMEOUT_SECONDS = 0.05  # the timeout row's setting; far below its injected 500 ms


def _indexed(log_file: Path, request_id: str) -> tuple[dict, dict]:
    """The server's one inference line of `request_id`, and the document Logstash makes of it."""
    flush_logs()
    lines = [line for line in log_file.read_text().splitlines() if line.strip()]
    mine = [line for line in lines if json.loads(line).get("request_id") == request_id]
    [line] = [line for line in mine if json.loads(line)["message"] == "inference"]
    event = filebeat_processors(filebeat(line), filebeat_input().get("processors", []))
    assert event is not None, "Filebeat drops the inference line"
    return json.loads(line), logstash(event).document


def _from_the_server(document: dict) -> set[str]:
    """The document's fields that the server wrote (not Filebeat's, Logstash's or the id)."""
    added = {*FILEBEAT_FIELDS, *LOGSTASH_FIELDS, "document_id"}
    return set(document) - added


def _delta(before: dict, after: dict, name: str) -> dict[frozenset, float]:
    """Per label set, how much the samples called `name` grew."""
    return {
        labels: value - before.get((sample, labels), 0.0)
        for (sample, labels), value in after.items()
        if sample == name and value != before.get((sample, labels), 0.0)
    }


def _by(label: str, grown: dict[frozenset, float]) -> dict[str, float]:
    return {dict(labels)[label]: value for labels, value in grown.items()}


def _version(service: str) -> str:
    """The version in a sample model's artifact."""
    return json.loads((REPO / f"services/{service}/artifacts/model.json").read_text())["version"]


@dataclass(frozen=True)
class Seen:
    """One request of an outcome: its answer, its log line (as written and as indexed) and the
    metric samples just before and just after it."""

    response: httpx.Response
    line: dict
    document: dict
    before: dict
    after: dict


@pytest.fixture
def provoke(serve, chatbot_model, log_file) -> Callable[[str, bool], Seen]:
    """`provoke(outcome, traced)`: one request of that outcome; `traced` sends a traceparent
    and opts in to raw input logging."""

    def run(outcome: str, traced: bool) -> Seen:
        send, _ = REQUESTS[outcome]
        headers = {"X-Request-ID": REQUEST_ID}
        if traced:
            headers["traceparent"] = f"00-{TRACE_ID}-{SPAN_ID}-01"
        model = HoldingChatbot(chatbot_model)
        settings = {
            "faults_enabled": True,
            "predict_concurrency": 1,
            "predict_queue": 0,
            "predict_timeout_seconds": TIMEOUT_SECONDS if outcome == "timeout" else 10.0,
            "log_raw_input": traced,
        }
        with serve(model, **settings) as client:
            try:
                before = metric_samples(client.get("/metrics").text)
                response = send(client, model, headers)
                after = metric_samples(client.get("/metrics").text)  # the holder still holds
            finally:
                model.let_go()
        return Seen(response, *_indexed(log_file, REQUEST_ID), before, after)

    return run


def _logged_fields(outcome: str, traced: bool) -> set[str]:
    """The fields the README says the outcome's line has (a null is no field: Filebeat drops
    it)."""
    _, _, _, status, error_type, timed = OUTCOMES[outcome]
    valid_body = REQUESTS[outcome][1] is not None
    fields = {*ALWAYS_LOGGED}
    fields |= {"input_hash"} if valid_body else set()
    fields |= {"prediction", "confidence", "features"} if status == "success" else set()
    fields |= {"predict_ms"} if timed else set()
    fields |= {"error_type"} if error_type is not None else set()
    fields |= {"trace_id", "span_id"} if traced else set()
    fields |= {"raw_input"} if traced and valid_body else set()
    return fields


@pytest.mark.parametrize("traced", [False, True], ids=["plain", "traceparent-raw-input"])
@pytest.mark.parametrize("outcome", list(OUTCOMES))
def test_each_outcome_is_answered_and_logged_as_documented(provoke, outcome, traced):
    http_status, answer_error, level, status, error_type, _ = OUTCOMES[outcome]
    seen = provoke(outcome, traced)
    answer, document = seen.response.json(), seen.document
    # The answer (the log line has no HTTP status: the status label stands for it).
    assert seen.response.status_code == http_status, seen.response.text
    assert seen.response.headers["content-type"] == "application/json"
    assert answer.get("error") == answer_error
    assert answer["request_id"] == seen.response.headers["x-request-id"] == REQUEST_ID
    retry_after = "1" if http_status == 503 else None  # README: shed answers say Retry-After: 1
    assert seen.response.headers.get("retry-after") == retry_after
    # The log line, as written and as Elasticsearch gets it.
    fields = _logged_fields(outcome, traced)
    assert {key for key, value in seen.line.items() if value is not None} == fields
    assert _from_the_server(document) == fields
    assert (document["message"], document["level"], document["status"]) == (
        "inference",
        level,
        status,
    )
    assert document.get("error_type") == error_type
    assert (document["model"], document["model_version"]) == ("chatbot", _version("chatbot"))
    assert document["request_id"] == REQUEST_ID
    trace = (TRACE_ID, SPAN_ID) if traced else (None, None)
    assert (document.get("trace_id"), document.get("span_id")) == trace
    assert document.get("raw_input") == (REQUESTS[outcome][1] if traced else None)
    predict_ms = document.get("predict_ms")  # present or not: the field set above
    assert predict_ms is None or MODEL_SECONDS * 1000 <= predict_ms <= document["latency_ms"]
    if outcome == "timeout":  # latency_ms is what the caller waited: at least the timeout
        assert document["latency_ms"] >= 0.9 * TIMEOUT_SECONDS * 1000
    answered = (answer["label"], answer["confidence"]) if status == "success" else (None, None)
    assert (document.get("prediction"), document.get("confidence")) == answered
    assert (LOW_CONFIDENCE_TAG in document["tags"]) == (outcome == "low confidence")


@pytest.mark.parametrize("outcome", list(OUTCOMES))
def test_each_outcome_is_counted_as_documented(provoke, outcome):
    """The request counter's status label, the latency the log line reports, and predictions
    and confidence only for answers."""
    status = OUTCOMES[outcome][3]
    seen = provoke(outcome, False)
    answer = seen.response.json()
    mv = frozenset({"model": "chatbot", "model_version": _version("chatbot")}.items())

    def grown(name: str) -> dict[frozenset, float]:
        return _delta(seen.before, seen.after, name)

    counted = _by("status", grown("model_requests_total"))
    assert counted == {status: 1.0}, f"counted as {counted}, logged as {status}"
    every = {
        dict(labels)["status"] for name, labels in seen.after if name == "model_requests_total"
    }
    assert every == set(STATUSES)
    assert grown("model_latency_seconds_count") == {mv: 1.0}
    # The log's latency is the one the histogram observed (logged to the microsecond).
    latency = grown("model_latency_seconds_sum")[mv]
    assert seen.document["latency_ms"] == pytest.approx(1000 * latency, abs=1e-3)
    answered = status == "success"
    predicted = _by("label", grown("model_predictions_total"))
    assert predicted == ({answer["label"]: 1.0} if answered else {})
    assert grown("model_confidence_count") == ({mv: 1.0} if answered else {})
    confidence = sum(grown("model_confidence_sum").values())
    assert confidence == pytest.approx(answer["confidence"] if answered else 0.0)
    # README: low confidence is at or below the spec's threshold, a bucket bound.
    threshold = spec_yaml()["alerts"]["low_confidence"]["confidence_threshold"]
    low = [
        v
        for labels, v in grown("model_confidence_bucket").items()
        if dict(labels)["le"] == str(threshold)
    ]
    assert low == ([1.0] if outcome == "low confidence" else [])


# --- /drift ------------------------------------------------------------------------------------


def _baseline_file(service: str) -> list[dict]:
    path = REPO / f"services/{service}/artifacts/baseline.json"
    return json.loads(path.read_text())["features"]


def _bin_of(value: float, edges: list[float]) -> int:
    """README: quantile bins with open outer edges; a bin holds its upper edge."""
    return sum(value > edge for edge in edges)


def _expected_shares(feature: dict, readings: list[dict], labels: list[str]) -> list[float]:
    """Each bin's share of the values sent, binned by hand with baseline.json's edges or
    categories (README, Drift: categorical bins are the vocabulary, __other__, __missing__)."""
    if feature["kind"] == "numeric":
        bins = [_bin_of(body["features"][feature["name"]], feature["edges"]) for body in readings]
    else:
        categories = [*feature["categories"], "__other__", "__missing__"]
        bins = [categories.index(label) for label in labels]
    shares = np.bincount(bins, minlength=len(feature["proportions"])) / len(readings)
    return shares.tolist()


def test_drift_is_empty_before_any_traffic(serve, anomaly_model):
    with serve(anomaly_model) as client:
        report = client.get("/drift").json()
    for feature in report["features"]:
        # Nothing counted: no statistic, nothing flagged.
        assert (feature["count"], feature["missing"], feature["psi"], feature["js"]) == (
            0,
            0,
            None,
            None,
        )
        assert (feature["exceeds_threshold"], feature["significant"]) == (False, False)


def test_drift_features_read_back_against_the_baseline_file(serve, anomaly_model):
    """Per feature: kind, counts, each bin's baseline and current share, the out-of-range share,
    computed by hand from the values sent and baseline.json."""
    readings = [
        ANOMALY_BODY,
        {"features": {**ANOMALY_BODY["features"], "temperature_c": 200.0}},  # above training
        {"features": {**ANOMALY_BODY["features"], "power_kw": -5.0}},  # below training
        {"features": {**ANOMALY_BODY["features"], "vibration_mm_s": 2.5}},
    ]
    with serve(anomaly_model) as client:
        labels = [client.post("/predict", json=body).json()["label"] for body in readings]
        report = client.get("/drift").json()
    baseline = _baseline_file("anomaly_detector")
    assert (report["model"], report["model_version"]) == (
        "anomaly-detector",
        _version("anomaly_detector"),
    )
    assert [f["feature"] for f in report["features"]] == [f["name"] for f in baseline]
    for expected, drift in zip(baseline, report["features"], strict=True):
        name = expected["name"]
        assert drift["kind"] == expected["kind"]
        assert (drift["count"], drift["missing"]) == (len(readings), 0)
        assert [b["baseline"] for b in drift["bins"]] == expected["proportions"]
        current = [b["current"] for b in drift["bins"]]
        assert current == pytest.approx(_expected_shares(expected, readings, labels)), name
        assert (drift["ks"] is None) == (expected["kind"] == "categorical")  # KS needs an order
        assert drift["significant"] == (drift["psi"] > drift["critical_value"])
    numeric = {f["name"]: f for f in baseline if f["kind"] == "numeric"}
    for drift in (f for f in report["features"] if f["feature"] in numeric):
        feature = numeric[drift["feature"]]
        values = [body["features"][drift["feature"]] for body in readings]
        outside = sum(not feature["low"] <= value <= feature["high"] for value in values)
        assert drift["out_of_range_share"] == outside / len(readings), drift["feature"]


# --- /model, /healthz, /readyz ------------------------------------------------------------------


def test_a_model_without_a_baseline_has_no_drift_features(serve, anomaly_model):
    with serve(AnomalyDetector(anomaly_model.params, baseline=None)) as client:
        assert client.get("/model").json()["drift_features"] == []


def test_readiness_and_liveness_through_a_server_life(chatbot_model, tmp_path):
    """README: readiness after the model is loaded and warmed up, 503 again once the server is
    stopping; liveness answers throughout."""
    app = create_app(chatbot_model, Settings(log_file=tmp_path / "inference.log"))
    version = _version("chatbot")
    starting = TestClient(app)  # no lifespan yet: the model is not warmed up
    not_ready = starting.get("/readyz")
    assert (not_ready.status_code, not_ready.json()) == (503, {"status": "starting"})
    assert starting.get("/healthz").json() == {"status": "ok"}
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert (ready.status_code, ready.json()) == (
            200,
            {"status": "ready", "model": "chatbot", "version": version},
        )
        client.app.state.shutdown.begin()
        stopping = client.get("/readyz")
        assert (stopping.status_code, stopping.json()) == (503, {"status": "stopping"})
        alive = client.get("/healthz")
        assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
