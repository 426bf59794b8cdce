"""Exemplars join a latency observation to its request's log line; trace context rides along."""

from __future__ import annotations

import time

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.samples import Exemplar

from mlobs.logs import InferenceRecord
from mlobs.metrics import EXEMPLAR_MAX_CHARS, exemplar_labels
from mlobs.trace_context import MAX_LENGTH, parse_traceparent
from tests.support.http import log_events
from tests.support.http import sample as sample_value
from tests.unit.test_server_contract import ANOMALY_BODY

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"


def _latency_exemplars(exposition: str) -> dict[str, Exemplar]:
    """{request_id: exemplar} of the latency buckets of an OpenMetrics text."""
    found = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "model_latency_seconds_bucket" and sample.exemplar is not None:
                found[sample.exemplar.labels["request_id"]] = sample.exemplar
    return found


def test_openmetrics_scrapes_get_the_request_id_of_a_real_request_as_exemplar(
    serve, anomaly_model, log_file
):
    with serve(anomaly_model) as client:
        before = time.time()
        client.post("/predict", json=ANOMALY_BODY, headers={"X-Request-ID": "slow-one"})
        client.post(
            "/predict",
            json=ANOMALY_BODY,
            headers={"X-Request-ID": "traced", "traceparent": TRACEPARENT},
        )
        after = time.time()
        answer = client.get("/metrics", headers={"Accept": OPENMETRICS})
        plain = client.get("/metrics")
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    exemplars = _latency_exemplars(answer.text)
    events = {e["request_id"]: e for e in log_events(log_file)}
    # The last request is always the exemplar of its bucket; the first one unless they share it.
    assert "traced" in exemplars and set(exemplars) <= {"slow-one", "traced"}
    for request_id, exemplar in exemplars.items():
        # The exemplar's value is the latency the log line reports (rounded to microseconds).
        assert exemplar.value * 1000 == pytest.approx(events[request_id]["latency_ms"], abs=0.001)
        # Its timestamp is when the request finished, not when Prometheus scraped it: Grafana
        # draws the exemplar where the request happened.
        assert before <= float(exemplar.timestamp) <= after
    assert exemplars["traced"].labels == {"request_id": "traced", "trace_id": TRACE_ID}
    # The classic text format has no exemplars: other scrapers see no change.
    assert plain.headers["content-type"].startswith("text/plain")
    assert " # {" not in plain.text
    labels = {"model": anomaly_model.name, "model_version": anomaly_model.version}
    assert sample_value(plain.text, "model_latency_seconds_count", **labels) == 2


def test_every_request_is_an_exemplar_of_its_own_bucket_until_a_later_one_replaces_it(
    serve, chatbot_model
):
    with serve(chatbot_model, faults_enabled=True) as client:
        client.post("/predict", json={"message": "hi"}, headers={"X-Request-ID": "fast"})
        client.post("/admin/faults", json={"latency_ms": 300})
        client.post("/predict", json={"message": "hi"}, headers={"X-Request-ID": "slow"})
        exposition = client.get("/metrics", headers={"Accept": OPENMETRICS}).text
    exemplars = _latency_exemplars(exposition)
    assert set(exemplars) == {"fast", "slow"}
    assert exemplars["slow"].value > 0.3 > exemplars["fast"].value


def test_a_valid_traceparent_puts_trace_and_span_ids_in_the_log_line(
    serve, anomaly_model, log_file
):
    with serve(anomaly_model) as client:
        ok = client.post("/predict", json=ANOMALY_BODY, headers={"traceparent": TRACEPARENT})
        bad = client.post("/predict", json=ANOMALY_BODY, headers={"traceparent": "00-zz-1-01"})
    assert ok.status_code == bad.status_code == 200
    traced, untraced = log_events(log_file)
    assert (traced["trace_id"], traced["span_id"]) == (TRACE_ID, SPAN_ID)
    assert "trace_id" not in untraced and "span_id" not in untraced


@pytest.mark.parametrize(
    ("header", "valid"),
    [
        (TRACEPARENT, True),
        (f"00-{TRACE_ID}-{SPAN_ID}-00", True),  # not sampled: still the caller's trace
        (f"01-{TRACE_ID}-{SPAN_ID}-01-future-field", True),  # a later version may add fields
        (f"01-{TRACE_ID}-{SPAN_ID}-01", True),
        (f"00-{TRACE_ID}-{SPAN_ID}-01-extra", False),  # version 00 has exactly four fields
        (f"01-{TRACE_ID}-{SPAN_ID}-01x", False),
        (f"ff-{TRACE_ID}-{SPAN_ID}-01", False),  # version ff is forbidden
        (f"00-{'0' * 32}-{SPAN_ID}-01", False),  # all-zero trace id
        (f"00-{TRACE_ID}-{'0' * 16}-01", False),  # all-zero parent id
        (f"00-{TRACE_ID.upper()}-{SPAN_ID}-01", False),  # upper-case hex
        (f"00-{TRACE_ID[:-1]}-{SPAN_ID}-01", False),  # short trace id
        (f"00-{TRACE_ID}-{SPAN_ID}", False),  # no flags
        ("", False),
        ("garbage", False),
        (f"01-{TRACE_ID}-{SPAN_ID}-01-" + "x" * MAX_LENGTH, False),  # oversized
    ],
)
def test_traceparent_parsing(header, valid):
    parsed = parse_traceparent(header.encode())
    assert parsed == ((TRACE_ID, SPAN_ID) if valid else None)


def test_two_traceparent_headers_are_ignored(serve, anomaly_model, log_file):
    with serve(anomaly_model) as client:
        headers = [("traceparent", TRACEPARENT), ("traceparent", TRACEPARENT)]
        assert client.post("/predict", json=ANOMALY_BODY, headers=headers).status_code == 200
    [event] = log_events(log_file)
    assert "trace_id" not in event


def test_exemplar_labels_stay_within_the_openmetrics_limit():
    traced = InferenceRecord("r" * 70, trace=(TRACE_ID, SPAN_ID))
    assert exemplar_labels(traced) == {"request_id": "r" * 70, "trace_id": TRACE_ID}
    long_id = InferenceRecord("r" * 100, trace=(TRACE_ID, SPAN_ID))
    assert exemplar_labels(long_id) == {"request_id": "r" * 100}  # the join key is kept
    too_long = InferenceRecord("r" * (EXEMPLAR_MAX_CHARS - len("request_id") + 1))
    assert exemplar_labels(too_long) is None
