"""Every limit at, just under and just over: what a user sees on each side of the line.

Where each value falls comes from a hand-written table, the README or observability.yaml read as
YAML, never from the code that draws the line. Whole numbers are tried at the limit and one either
side; floats at the limit and its neighbours (math.nextafter), where an off-by-one of `<` and
`<=` shows. Limits that only time decides (the prediction timeout, the shutdown grace period) have
no exact boundary a test can hit without racing the clock: only their settings' floors are here.
"""

from __future__ import annotations

import copy
import json
import math
import re
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from mlobs.drift import Baseline, DriftExport, DriftMonitor
from mlobs.drift.cli import main as drift_main
from mlobs.logs import RotatingFile
from mlobs.model import Prediction
from mlobs.server import create_app
from mlobs.settings import Settings, SettingsError
from mlobs.spec import SpecError, duration_seconds, load_spec
from tests.conftest import REPO, require_tool
from tests.support.generated import generated_text, spec_yaml
from tests.support.http import log_events, metric_samples, sample
from tests.support.promtool import series
from tests.support.short_spec import short_spec
from tests.support.slow_model import SlowModel, SlowRequest
from tests.support.waiting import NotYet, wait_for
from tests.unit.test_server_contract import ANOMALY_BODY, CHAT_BODY

SPEC = spec_yaml()
INF = math.inf


def below(x: float) -> float:
    return math.nextafter(x, -INF)


def above(x: float) -> float:
    return math.nextafter(x, INF)


# --- MLOBS_* settings: the lowest value taken, and the one below it ---------------------------

# (variable, Settings field, lowest accepted, the value just below, one just above). Sizes and
# counts start at 1; a wait queue of 0 (refuse at once when every slot is busy) is a valid choice;
# times start at one millisecond.
SETTING_FLOORS = [
    ("MLOBS_LOG_MAX_BYTES", "log_max_bytes", "1", "0", "2"),
    ("MLOBS_LOG_BACKUP_COUNT", "log_backup_count", "1", "0", "2"),
    ("MLOBS_MAX_BODY_BYTES", "max_body_bytes", "1", "0", "2"),
    ("MLOBS_PREDICT_CONCURRENCY", "predict_concurrency", "1", "0", "2"),
    ("MLOBS_PREDICT_QUEUE", "predict_queue", "0", "-1", "1"),
    (
        "MLOBS_PREDICT_TIMEOUT_SECONDS",
        "predict_timeout_seconds",
        "0.001",
        repr(below(0.001)),
        repr(above(0.001)),
    ),
    (
        "MLOBS_SHUTDOWN_GRACE_SECONDS",
        "shutdown_grace_seconds",
        "0.001",
        repr(below(0.001)),
        repr(above(0.001)),
    ),
]
SETTING_IDS = [row[0] for row in SETTING_FLOORS]


@pytest.mark.parametrize(
    ("name", "field", "lowest", "under", "over"), SETTING_FLOORS, ids=SETTING_IDS
)
def test_the_lowest_value_of_a_setting_and_the_one_above_are_taken(
    name, field, lowest, under, over
):
    for text in (lowest, over):
        assert getattr(Settings.from_env({name: text}), field) == float(text), text


@pytest.mark.parametrize(
    ("name", "field", "lowest", "under", "over"), SETTING_FLOORS, ids=SETTING_IDS
)
def test_the_value_just_below_the_lowest_is_refused_naming_the_variable(
    name, field, lowest, under, over
):
    with pytest.raises(SettingsError, match=rf"^{name}={re.escape(repr(under))}: must be "):
        Settings.from_env({name: under})


@pytest.mark.parametrize("name", ["MLOBS_PREDICT_TIMEOUT_SECONDS", "MLOBS_SHUTDOWN_GRACE_SECONDS"])
def test_a_refused_time_is_told_the_lowest_accepted_value(name):
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({name: "0.0005"})
    assert "0.001" in str(refused.value)


# --- request body size: Content-Length and chunked ----------------------------------------------

# README: MLOBS_MAX_BODY_BYTES defaults to 65536; "bodies over 64 KiB" get 413.
DEFAULT_BODY_LIMIT = 65536


def padded_body(size: int) -> bytes:
    """A valid chatbot request of exactly `size` bytes: JSON allows whitespace after the value."""
    body = json.dumps(CHAT_BODY).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


def in_chunks(body: bytes, size: int) -> list[bytes]:
    """The body in `size`-byte pieces."""
    return [body[start : start + size] for start in range(0, len(body), size)]


def post_chunked(
    client: TestClient, chunks: list[bytes], headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST `chunks` without a Content-Length, each its own ASGI body message, on the app's event
    loop: as a server hands over a chunked body (TestClient would join them into one message)."""

    async def stream() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            sent = {"content-type": "application/json", **(headers or {})}
            return await http.post("/predict", content=stream(), headers=sent)

    assert client.portal is not None, "the TestClient is started"
    return client.portal.call(post)


@pytest.mark.parametrize("offset", [-1, 0, 1], ids=["limit-1", "limit", "limit+1"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("limit", [None, 300], ids=["default", "300"])
def test_a_body_of_the_limit_is_served_and_one_byte_more_is_refused(
    serve, chatbot_model, log_file, limit, framing, offset
):
    overrides = {} if limit is None else {"max_body_bytes": limit}
    size = (limit or DEFAULT_BODY_LIMIT) + offset
    body = padded_body(size)
    with serve(chatbot_model, **overrides) as client:
        if framing == "content-length":
            response = client.post(
                "/predict", content=body, headers={"content-type": "application/json"}
            )
        else:  # several pieces, so the limit is counted across messages
            response = post_chunked(client, in_chunks(body, size // 5))
        metrics = client.get("/metrics").text
    sent = response.request.headers
    assert sent.get("content-length") == (str(size) if framing == "content-length" else None)
    [event] = log_events(log_file)
    mv = {"model": chatbot_model.name, "model_version": chatbot_model.version}
    if offset <= 0:
        assert response.status_code == 200, response.text
        assert event["status"] == "success"
        assert sample(metrics, "model_requests_total", **mv, status="success") == 1
    else:
        assert response.status_code == 413
        limit_bytes = limit or DEFAULT_BODY_LIMIT
        assert response.json()["error"] == "body_too_large"
        assert response.json()["detail"] == (
            f"request body is larger than the limit of {limit_bytes} bytes"
        )
        assert (event["status"], event["error_type"]) == ("client_error", "body_too_large")
        assert sample(metrics, "model_requests_total", **mv, status="client_error") == 1


def test_a_numeric_header_is_not_taken_for_the_length_of_a_chunked_body(serve, chatbot_model):
    """Only Content-Length declares a length: a chunked body over the limit that comes with
    another header holding a number (a retry count, a small id) is still counted and refused."""
    body = padded_body(DEFAULT_BODY_LIMIT + 1)
    with serve(chatbot_model) as client:
        response = post_chunked(client, in_chunks(body, 4096), {"x-attempt": "1"})
    assert response.status_code == 413


# --- concurrency slots and the wait queue -------------------------------------------------------


class Gated(SlowModel):
    """A synchronous model whose predictions wait for the test to open the gate."""

    def __init__(self) -> None:
        super().__init__(0)
        self.gate = threading.Event()

    def predict(self, payload: SlowRequest) -> Prediction:
        if payload.message != "warm-up":  # the warm-up before readiness must not wait
            self.gate.wait(60)
        return Prediction(label="done", confidence=0.9)


def _limit_state(client: TestClient, answered: list[Future]) -> tuple[int, int, int]:
    text = client.get("/metrics").text
    running = sample(text, "model_predictions_running", model="slow-model")
    queued = sample(text, "model_predictions_queued", model="slow-model")
    return int(running), int(queued), sum(f.done() for f in answered)


@pytest.mark.parametrize("offset", [-1, 0, 1], ids=["limit-1", "limit", "limit+1"])
@pytest.mark.parametrize(("slots", "queue"), [(2, 3), (2, 0)], ids=["queue 3", "no queue"])
def test_predictions_beyond_the_slots_and_the_queue_are_shed(serve, log_file, slots, queue, offset):
    """README: at most MLOBS_PREDICT_CONCURRENCY run and MLOBS_PREDICT_QUEUE wait; past that
    503 at once."""
    model = Gated()
    sent = slots + queue + offset
    refused = max(0, sent - slots - queue)
    expected_state = (min(sent, slots), min(max(0, sent - slots), queue), refused)
    with serve(model, predict_concurrency=slots, predict_queue=queue) as client:
        with ThreadPoolExecutor(sent) as pool:
            try:
                answers = [
                    pool.submit(client.post, "/predict", json={"message": "x"}) for _ in range(sent)
                ]

                def settled() -> bool:
                    state = _limit_state(client, answers)
                    if state != expected_state:
                        raise NotYet(f"(running, queued, answered) = {state}")
                    return True

                wait_for(f"{expected_state} running, queued and refused", settled, timeout=30)
            finally:
                model.gate.set()
            codes = sorted(f.result(timeout=60).status_code for f in answers)
        metrics = client.get("/metrics").text
    assert codes == [200] * (sent - refused) + [503] * refused
    mv = {"model": "slow-model", "model_version": "1.0.0"}
    assert sample(metrics, "model_requests_total", **mv, status="shed") == refused
    shed = [e for e in log_events(log_file) if e["status"] == "shed"]
    assert [e["error_type"] for e in shed] == ["overloaded"] * refused


# --- injected faults ----------------------------------------------------------------------------

# /admin/faults: latency_ms from 0 to 60000 (a minute), error_rate a share from 0 to 1.
# (latency_ms -1 is refused in test_faults.py.)
FAULT_LIMITS = [
    ({"latency_ms": 0}, True),
    ({"latency_ms": 1}, True),
    ({"latency_ms": 59_999}, True),
    ({"latency_ms": 60_000}, True),
    ({"latency_ms": 60_001}, False),
    ({"error_rate": below(0.0)}, False),
    ({"error_rate": 0.0}, True),
    ({"error_rate": above(0.0)}, True),
    ({"error_rate": below(1.0)}, True),
    ({"error_rate": 1.0}, True),
    ({"error_rate": above(1.0)}, False),
]


@pytest.mark.parametrize(("faults", "accepted"), FAULT_LIMITS, ids=repr)
def test_fault_settings_at_the_ends_of_their_ranges(serve, chatbot_model, faults, accepted):
    with serve(chatbot_model, faults_enabled=True) as client:
        response = client.post("/admin/faults", json=faults)
        current = client.get("/admin/faults").json()
    [(key, value)] = faults.items()
    if accepted:
        assert response.status_code == 200 and current[key] == value
    else:
        assert response.status_code == 422 and response.json()["field"] == key
        assert current == {"latency_ms": 0, "error_rate": 0.0}  # nothing changed


# --- the confidence a model returns -------------------------------------------------------------


class FixedConfidence(SlowModel):
    """Answers every request with one confidence, on the event loop."""

    inline_predict = True

    def __init__(self, confidence: float) -> None:
        super().__init__(0)
        self.confidence = confidence

    def predict(self, payload: SlowRequest) -> Prediction:
        return Prediction(label="done", confidence=self.confidence)


# A confidence is a probability: [0, 1] with both ends included; anything else is the model's
# bug, answered 500 rather than passed on.
CONFIDENCE_RANGE = [
    (below(0.0), 500),
    (0.0, 200),
    (above(0.0), 200),
    (below(1.0), 200),
    (1.0, 200),
    (above(1.0), 500),
]


@pytest.mark.parametrize(("confidence", "status"), CONFIDENCE_RANGE, ids=repr)
def test_a_confidence_outside_0_to_1_is_a_server_error(serve, log_file, confidence, status):
    with serve(FixedConfidence(confidence)) as client:
        response = client.post("/predict", json={"message": "x"})
    assert response.status_code == status
    [event] = log_events(log_file)
    if status == 200:
        assert response.json()["confidence"] == confidence
        assert event["status"] == "success" and event["confidence"] == confidence
    else:
        assert response.json()["error"] == "model_error"
        assert (event["status"], event["error_type"]) == ("server_error", "InvalidPrediction")


LOW_CONFIDENCE = SPEC["alerts"]["low_confidence"]["confidence_threshold"]


@pytest.mark.parametrize(
    ("confidence", "low"),
    [(below(LOW_CONFIDENCE), True), (LOW_CONFIDENCE, True), (above(LOW_CONFIDENCE), False)],
    ids=["just under", "at", "just over"],
)
def test_a_confidence_at_the_threshold_counts_as_low(serve, confidence, low):
    """observability.yaml: low confidence is "at or below" the threshold; the low-confidence rule
    reads the model_confidence bucket whose `le` is the threshold."""
    with serve(FixedConfidence(confidence)) as client:
        assert client.post("/predict", json={"message": "x"}).status_code == 200
        text = client.get("/metrics").text
    buckets = {
        float(dict(labels)["le"]): value
        for (name, labels), value in metric_samples(text).items()
        if name == "model_confidence_bucket"
    }
    assert buckets[LOW_CONFIDENCE] == (1 if low else 0)
    assert buckets[INF] == 1


# --- request ids, exemplars and trace context ---------------------------------------------------

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize(
    ("length", "kept"),
    [(0, False), (1, True), (127, True), (128, True), (129, False)],
)
def test_a_request_id_of_1_to_128_characters_is_kept(serve, anomaly_model, log_file, length, kept):
    """README: X-Request-ID is taken if it is 1-128 characters of A-Za-z0-9._:-, else generated."""
    sent = "r" * length
    with serve(anomaly_model) as client:
        response = client.post("/predict", json=ANOMALY_BODY, headers={"X-Request-ID": sent})
    answered = response.headers["x-request-id"]
    if kept:
        assert answered == sent
    else:
        assert GENERATED_ID.fullmatch(answered), answered
    assert response.json()["request_id"] == answered
    [event] = log_events(log_file)
    assert event["request_id"] == answered


OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
BOTH = {"request_id", "trace_id"}
ID_ONLY = {"request_id"}
# OpenMetrics: an exemplar's label names and values, together, at most 128 characters. That is
# len("request_id") + the id, plus len("trace_id") + 32 with a trace: ids of up to 78 characters
# keep both, up to 118 the request id alone (README: the trace id goes first).
EXEMPLAR_CASES = [
    (77, True, BOTH),
    (78, True, BOTH),
    (79, True, ID_ONLY),
    (117, False, ID_ONLY),
    (118, False, ID_ONLY),
    (118, True, ID_ONLY),
    (119, False, None),
    (119, True, None),
]


@pytest.mark.parametrize(("length", "traced", "labels"), EXEMPLAR_CASES)
def test_an_exemplar_keeps_what_fits_in_128_characters(
    serve, anomaly_model, length, traced, labels
):
    request_id = "r" * length
    headers = {"X-Request-ID": request_id}
    if traced:
        headers["traceparent"] = f"00-{TRACE_ID}-{SPAN_ID}-01"
    with serve(anomaly_model) as client:
        assert client.post("/predict", json=ANOMALY_BODY, headers=headers).status_code == 200
        exposition = client.get("/metrics", headers={"Accept": OPENMETRICS}).text
    exemplars = [
        s.exemplar.labels
        for family in openmetrics_families(exposition)
        for s in family.samples
        if s.name == "model_latency_seconds_bucket" and s.exemplar is not None
    ]
    if labels is None:
        assert exemplars == []
    else:
        [exemplar] = exemplars
        assert set(exemplar) == labels and exemplar["request_id"] == request_id


# trace_context: a traceparent of a later version may carry more fields; one over 512 bytes is
# refused unread, and the request goes on without a trace.
@pytest.mark.parametrize(("length", "followed"), [(511, True), (512, True), (513, False)])
def test_a_traceparent_of_up_to_512_bytes_is_followed(
    serve, anomaly_model, log_file, length, followed
):
    header = f"01-{TRACE_ID}-{SPAN_ID}-01-"
    header += "x" * (length - len(header))
    assert len(header) == length
    with serve(anomaly_model) as client:
        response = client.post("/predict", json=ANOMALY_BODY, headers={"traceparent": header})
    assert response.status_code == 200
    [event] = log_events(log_file)
    assert (event.get("trace_id"), event.get("span_id")) == (
        (TRACE_ID, SPAN_ID) if followed else (None, None)
    )


# --- drift: bin edges, the training range, the PSI threshold, windows and batches -------------

ANOMALY_BASELINE = json.loads(
    (REPO / "services/anomaly_detector/artifacts/baseline.json").read_text()
)
FEATURE = "temperature_c"
[_TEMPERATURE] = [f for f in ANOMALY_BASELINE["features"] if f["name"] == FEATURE]
EDGES, LOW, HIGH = _TEMPERATURE["edges"], _TEMPERATURE["low"], _TEMPERATURE["high"]
TOP = len(EDGES)  # the open bin above the last edge
# Bins are right-closed, (e[i-1], e[i]], with open outer ends (mlobs/drift/bins.py, README):
# a value on an edge belongs to the bin below it. Out of range: outside [low, high] of training.
# (value, bin index, counted as out of range)
BIN_CASES = {
    "just under an edge": (below(EDGES[4]), 4, 0),
    "on an edge": (EDGES[4], 4, 0),
    "just over an edge": (above(EDGES[4]), 5, 0),
    "on the first edge": (EDGES[0], 0, 0),
    "on the last edge": (EDGES[-1], TOP - 1, 0),
    "just under the training minimum": (below(LOW), 0, 1),
    "the training minimum": (LOW, 0, 0),
    "the training maximum": (HIGH, TOP, 0),
    "just over the training maximum": (above(HIGH), TOP, 1),
}


def _bin_counts(exposition: str, feature: str) -> dict[int, float]:
    """Counts of a numeric feature's bins by position (labels start with it: `04:(63.28,64.73]`)."""
    return {
        int(dict(labels)["bin"].split(":")[0]): value
        for (name, labels), value in metric_samples(exposition).items()
        if name == "model_feature_bin_total"
        and dict(labels)["feature"] == feature
        and dict(labels)["bin"] != "missing"
    }


@pytest.mark.parametrize(("value", "index", "outside"), BIN_CASES.values(), ids=BIN_CASES)
def test_a_value_on_a_bin_edge_goes_to_the_bin_below(serve, anomaly_model, value, index, outside):
    body = {"features": {**ANOMALY_BODY["features"], FEATURE: value}}
    with serve(anomaly_model) as client:
        assert client.post("/predict", json=body).status_code == 200
        text = client.get("/metrics").text
    counts = _bin_counts(text, FEATURE)
    assert len(counts) == TOP + 1
    assert {i for i, n in counts.items() if n} == {index}
    assert (
        sample(text, "model_feature_out_of_range_total", model=anomaly_model.name, feature=FEATURE)
        == outside
    )


# Out of the training range, far enough for a large PSI.
SHIFTED = {"features": {**ANOMALY_BODY["features"], FEATURE: HIGH + 10.0}}
SHIFTED_REQUESTS = 20


@contextmanager
def _served_with_drift_test(
    model, log_file: Path, threshold: float, min_samples: int
) -> Iterator[TestClient]:
    spec = short_spec({"drift": {"psi_threshold": threshold, "min_samples": min_samples}})
    app = create_app(model, Settings(log_file=log_file), spec=spec)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _drift_of_shifted_traffic(
    model, log_file: Path, threshold: float, min_samples: int = SHIFTED_REQUESTS
) -> dict[str, Any]:
    with _served_with_drift_test(model, log_file, threshold, min_samples) as client:
        for _ in range(SHIFTED_REQUESTS):
            assert client.post("/predict", json=SHIFTED).status_code == 200
        report = client.get("/drift").json()
    assert (report["psi_threshold"], report["min_samples"]) == (threshold, min_samples)
    [feature] = [f for f in report["features"] if f["feature"] == FEATURE]
    return feature


@pytest.fixture(scope="module")
def shifted_psi(anomaly_model, tmp_path_factory) -> float:
    """The PSI of temperature_c after 20 requests far above the training range."""
    log_file = tmp_path_factory.mktemp("psi") / "inference.log"
    return _drift_of_shifted_traffic(anomaly_model, log_file, 0.2)["psi"]


@pytest.mark.parametrize(
    ("side", "exceeds"), [("just under", True), ("at", False), ("just over", False)]
)
def test_a_psi_equal_to_the_threshold_does_not_exceed_it(
    anomaly_model, log_file, shifted_psi, side, exceeds
):
    """The alert fires on PSI > psi_threshold (README); /drift's exceeds_threshold agrees."""
    threshold = {"just under": below, "at": float, "just over": above}[side](shifted_psi)
    feature = _drift_of_shifted_traffic(anomaly_model, log_file, threshold)
    assert feature["psi"] == shifted_psi  # the same traffic, the same PSI
    assert feature["exceeds_threshold"] is exceeds


@pytest.mark.parametrize(
    ("min_samples", "exceeds"),
    [(SHIFTED_REQUESTS - 1, True), (SHIFTED_REQUESTS, True), (SHIFTED_REQUESTS + 1, False)],
)
def test_drift_on_fewer_values_than_min_samples_does_not_exceed_the_threshold(
    anomaly_model, log_file, shifted_psi, min_samples, exceeds
):
    """The DataDrift rule has no PSI below min_samples values in the window (README);
    /drift shows the PSI but agrees that it does not count."""
    feature = _drift_of_shifted_traffic(anomaly_model, log_file, 0.2, min_samples)
    assert (feature["count"], feature["psi"]) == (SHIFTED_REQUESTS, shifted_psi)
    assert feature["exceeds_threshold"] is exceeds


WINDOW = 60.0


def _monitor(clock: list[float], **options: Any) -> DriftMonitor:
    baseline = Baseline.fit({"x": [1.0, 2.0, 3.0]})
    return DriftMonitor(baseline, window_seconds=WINDOW, clock=lambda: clock[0], **options)


@pytest.mark.parametrize(
    ("observed_at", "reported"), [(below(WINDOW), 0), (WINDOW, 1), (above(WINDOW), 1)]
)
def test_a_value_observed_as_a_window_ends_belongs_to_the_next_window(observed_at, reported):
    """Tumbling windows [0, 60), [60, 120), ...; a report covers the previous and the current.
    Read at 150 s, it covers [60, 180): a value from 60 s on, not one from before."""
    now = [0.0]
    monitor = _monitor(now)
    monitor.observe({"x": 1.0})
    now[0] = observed_at
    monitor.observe({"x": 2.0})
    now[0] = 150.0
    assert monitor.counts()["x"].sum() == reported


@pytest.mark.parametrize(
    ("read_at", "reported"), [(below(2 * WINDOW), 1), (2 * WINDOW, 0), (above(2 * WINDOW), 0)]
)
def test_a_value_is_reported_until_two_windows_have_passed(read_at, reported):
    now = [0.0]
    monitor = _monitor(now)
    monitor.observe({"x": 1.0})
    now[0] = read_at
    assert monitor.counts()["x"].sum() == reported


class _Counter:
    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


def _exported_monitor(now: list[float]) -> tuple[DriftMonitor, list[_Counter]]:
    monitor = _monitor(now)
    bins = [_Counter() for _ in monitor.baseline.features["x"].bins.labels]
    monitor.export = DriftExport({"x": bins}, {"x": _Counter()})
    return monitor, bins


# README: with several workers the exported counters are updated every 256 requests, or after
# at most a second.
@pytest.mark.parametrize(("requests", "exported"), [(255, 0), (256, 256), (257, 256)])
def test_exported_drift_counts_are_updated_every_256_values(requests, exported):
    now = [0.0]
    monitor, bins = _exported_monitor(now)
    for _ in range(requests):
        monitor.observe({"x": 2.0})
    assert sum(c.value for c in bins) == exported


@pytest.mark.parametrize(("waited", "exported"), [(below(1.0), 0), (1.0, 2), (above(1.0), 2)])
def test_exported_drift_counts_wait_at_most_a_second(waited, exported):
    now = [0.0]
    monitor, bins = _exported_monitor(now)
    monitor.observe({"x": 2.0})
    now[0] = waited
    monitor.observe({"x": 2.0})
    assert sum(c.value for c in bins) == exported


# `python -m mlobs.drift fit --max-categories` defaults to 20: the most frequent are kept, the
# rest counts as __other__.
@pytest.mark.parametrize(("distinct", "kept"), [(19, 19), (20, 20), (21, 20)])
def test_a_categorical_feature_keeps_at_most_20_categories(distinct, kept):
    names = [f"c{i:02d}" for i in range(distinct)]
    values = [name for i, name in enumerate(names) for _ in range(distinct + 1 - i)]
    bins = Baseline.fit({"kind": values}).features["kind"].bins
    assert bins.labels == [*names[:kept], "__other__", "__missing__"]
    assert bins.labels[bins.index(names[-1])] == (names[-1] if kept == distinct else "__other__")


def _fit(tmp_path: Path, option: str, value: str) -> tuple[int, Path]:
    table = tmp_path / "train.csv"
    rows = [f"{x},{'abc'[x % 3]}" for x in range(1, 101)]
    table.write_text("x,kind\n" + "\n".join(rows) + "\n")
    output = tmp_path / "baseline.json"
    argv = ["fit", str(table), "--numeric", "x", "--categorical", "kind", option, value]
    try:
        code = drift_main([*argv, "-o", str(output)])
    except SystemExit as exc:  # argparse refuses an option's value this way
        code = int(exc.code or 0)
    return code, output


@pytest.mark.parametrize(
    ("option", "value", "accepted"),
    [
        ("--bins", "1", False),
        ("--bins", "2", True),
        ("--bins", "3", True),
        ("--max-categories", "0", False),
        ("--max-categories", "1", True),
        ("--max-categories", "2", True),
    ],
)
def test_fit_options_start_at_2_bins_and_1_category(tmp_path, capsys, option, value, accepted):
    code, output = _fit(tmp_path, option, value)
    err = capsys.readouterr().err
    if not accepted:
        assert code == 2 and option in err and not output.exists()
        return
    assert code == 0, err
    features = Baseline.load(output).features
    if option == "--bins":  # n quantile bins: n - 1 inner edges (100 distinct values)
        assert len(features["x"].bins.edges) == int(value) - 1
    else:
        assert len(features["kind"].bins.categories) == int(value)


# --- observability.yaml: the ranges of its values -----------------------------------------------

# (key path, value, accepted, the key the error must name). Ratios lie strictly between 0 and 1;
# thresholds, rates and counts are positive; ports 1-65535; durations longer than 0; the latency
# and confidence thresholds must be bucket boundaries (0.5 is one of each; its neighbours not).
SPEC_LIMITS = [
    *(
        (("alerts", alert, key), value, accepted, f"alerts.{alert}.{key}")
        for alert, key in (("error_rate", "threshold_ratio"), ("low_confidence", "max_share"))
        for value, accepted in (
            (0.0, False),
            (above(0.0), True),
            (below(1.0), True),
            (1.0, False),
        )
    ),
    *(
        (("alerts", alert, key), value, accepted, f"alerts.{alert}.{key}")
        for alert, key in (("drift", "psi_threshold"), ("error_rate", "min_request_rate"))
        for value, accepted in ((0.0, False), (above(0.0), True))
    ),
    (("alerts", "drift", "min_samples"), 0, False, "alerts.drift.min_samples"),
    (("alerts", "drift", "min_samples"), 1, True, None),
    (("models", 0, "port"), 0, False, "models.0.port"),
    (("models", 0, "port"), 1, True, None),
    (("models", 0, "port"), 65535, True, None),
    (("models", 0, "port"), 65536, False, "models.0.port"),
    (("alerts", "latency", "window"), "0s", False, "alerts.latency.window"),
    (("alerts", "latency", "window"), "1ms", True, None),
    *(
        (("alerts", alert, key), value, accepted, f"alerts.{alert}")
        for alert, key in (
            ("latency", "threshold_seconds"),
            ("low_confidence", "confidence_threshold"),
        )
        for value, accepted in ((below(0.5), False), (0.5, True), (above(0.5), False))
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "accepted", "named"),
    SPEC_LIMITS,
    ids=[f"{'.'.join(map(str, p))}={v!r}" for p, v, _, _ in SPEC_LIMITS],
)
def test_spec_values_at_the_ends_of_their_ranges(tmp_path, path, value, accepted, named):
    data = copy.deepcopy(SPEC)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    file = tmp_path / "spec.yaml"
    file.write_text(yaml.safe_dump(data))
    if accepted:
        spec = load_spec(file)
        found = spec.model_dump(by_alias=True)
        for key in path:
            found = found[key]
        assert found == value
    else:
        with pytest.raises(SpecError, match=rf"{re.escape(named)}\b"):
            load_spec(file)


# --- the log file: rotation at MLOBS_LOG_MAX_BYTES ----------------------------------------------


@pytest.mark.parametrize(("second", "rotated"), [(39, False), (40, False), (41, True)])
def test_the_log_file_grows_to_max_bytes_and_rotates_past_it(tmp_path, second, rotated):
    path = tmp_path / "inference.log"
    first_line, second_line = b"a" * 59 + b"\n", b"b" * (second - 1) + b"\n"
    log = RotatingFile(path, max_bytes=100, backups=2)
    log.write(first_line)
    log.write(second_line)
    log.close()
    backup = tmp_path / "inference.log.1"
    if rotated:
        assert backup.read_bytes() == first_line and path.read_bytes() == second_line
    else:
        assert not backup.exists() and path.read_bytes() == first_line + second_line


def test_a_line_longer_than_max_bytes_is_written_whole(tmp_path):
    path = tmp_path / "inference.log"
    line = b"x" * 150 + b"\n"
    log = RotatingFile(path, max_bytes=100, backups=2)
    log.write(line)
    log.close()
    assert path.read_bytes() == line and not (tmp_path / "inference.log.1").exists()


# --- the alert rules: minimum traffic, minimum samples, no traffic (promtool) -----------------


@pytest.fixture(scope="module")
def rule_files(tmp_path_factory) -> list[str]:
    """The rule files as `make generate` renders them now."""
    folder = tmp_path_factory.mktemp("rules")
    paths = []
    for name in ("recording.yml", "alerts.yml"):
        path = folder / name
        path.write_text(generated_text(f"prometheus/rules/{name}"))
        paths.append(str(path))
    return paths


def _promtool(tmp_path: Path, rule_files: list[str], case: dict[str, Any]) -> None:
    promtool = require_tool("promtool")
    path = tmp_path / "limits.test.yml"
    document = {"rule_files": rule_files, "evaluation_interval": "1m", "tests": [case]}
    path.write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}\n{result.stderr}"


def _window_minutes(alert: str) -> int:
    return int(duration_seconds(SPEC["alerts"][alert]["window"]) // 60)


def _step(window: int, total: float) -> str:
    """A counter at 0 for a whole window, then `total` for two minutes: over the windows ending
    at either minute, increase() is exactly `total` (each starts on a 0, so nothing is
    extrapolated). Two, because promtool evaluates the rule groups in no fixed order: an alert
    may read the recording rules of the minute before."""
    return f"0x{window} {total:g} {total:g}"


def _count(expr: str, minute: int, present: bool) -> dict[str, Any]:
    samples = [{"labels": "{}", "value": 1}] if present else []
    return {"expr": f"count({expr})", "eval_time": f"{minute}m", "exp_samples": samples}


MODEL = {"model": "chatbot", "model_version": "1", "instance": "i1"}


@pytest.mark.parametrize("offset", [-1, 0, 1], ids=["limit-1", "limit", "limit+1"])
def test_the_error_alert_needs_at_least_the_minimum_request_rate(tmp_path, rule_files, offset):
    """Every request fails, far over the ratio: the alert condition holds (pending) from exactly
    min_request_rate requests a second over the window."""
    spec = SPEC["alerts"]["error_rate"]
    window = _window_minutes("error_rate")
    at_limit = spec["min_request_rate"] * window * 60
    assert at_limit == round(at_limit) > 1, "the minimum is a whole number of requests"
    requests = round(at_limit) + offset
    failing = series(
        "model_requests_total", {**MODEL, "status": "server_error"}, _step(window, requests)
    )
    case = {
        "interval": "1m",
        "input_series": [failing],
        "promql_expr_test": [
            _count('ALERTS{alertname="ModelErrorRateHigh"}', window + 2, offset >= 0)
        ],
    }
    _promtool(tmp_path, rule_files, case)


@pytest.mark.parametrize("offset", [-1, 0, 1], ids=["limit-1", "limit", "limit+1"])
def test_psi_needs_at_least_min_samples_values_in_the_window(tmp_path, rule_files, offset):
    """Every value in one of two equal baseline bins: PSI far over the threshold, recorded (and
    the drift alert pending) from exactly min_samples values in the window."""
    window = _window_minutes("drift")
    values = SPEC["alerts"]["drift"]["min_samples"] + offset
    labels = {"model": "chatbot", "feature": "tokens", "instance": "i1"}
    shares = {"00:(-inf,5]": values, "01:(5,inf)": 0}
    input_series = [
        series("model_feature_bin_total", {**labels, "bin": b}, _step(window, n))
        for b, n in shares.items()
    ]
    input_series += [
        series("model_feature_baseline_ratio", {**labels, "bin": b}, f"0.5x{window + 2}")
        for b in shares
    ]
    end = window + 2
    case = {
        "interval": "1m",
        "input_series": input_series,
        "promql_expr_test": [
            _count('model_feature:psi{model="chatbot",feature="tokens"}', end, offset >= 0),
            _count('ALERTS{alertname="ModelFeatureDriftHigh"}', end, offset >= 0),
        ],
    }
    _promtool(tmp_path, rule_files, case)


@pytest.mark.parametrize(("requests", "silent"), [(0, False), (1, True), (2, True)])
def test_one_request_in_the_window_is_traffic(tmp_path, rule_files, requests, silent):
    """ModelNoTraffic: no request over the window; a single one is traffic."""
    window = _window_minutes("no_traffic")
    values = f"5x{window} {5 + requests} {5 + requests}"  # it has counted before
    case = {
        "interval": "1m",
        "input_series": [series("model_requests_total", {**MODEL, "status": "success"}, values)],
        "promql_expr_test": [_count('ALERTS{alertname="ModelNoTraffic"}', window + 2, not silent)],
    }
    _promtool(tmp_path, rule_files, case)
