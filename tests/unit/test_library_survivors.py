"""What a client and an operator read when a model server refuses or fails, word for word.

Each error answer's `detail` is the client's only guide to what to do next (retry, slow down,
fix the input, ask the operator), so every one is pinned exactly, from this hand-written table.
Then what the operator reads: the model_error line says where the model failed; a model's odd
`features` still make a JSON log line; and a log that cannot be written, with stderr gone too,
does not take the server down.
"""

from __future__ import annotations

import gc
import inspect
import os
import sys
import threading
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType, SimpleNamespace

import pytest

from mlobs.logs import JsonLinesSink
from mlobs.model import Prediction
from mlobs.settings import Settings
from tests.support.http import log_events, sample
from tests.support.slow_model import SlowModel, SlowRequest
from tests.support.waiting import wait_for

TOKEN = "s3cret-admin-token"
TIMEOUT_SECONDS = 0.3
BODY_LIMIT = 100


def _fail_inside_the_model(_value: object = None) -> None:
    raise ZeroDivisionError("a user's text, which the log must not quote")


def _fail_below_the_standard_library() -> None:
    # The frame below the one that raised is in another file (inspect.py calls the predicate):
    # the origin must name the innermost frame's file, not its caller's.
    inspect.getmembers(SimpleNamespace(member=1), _fail_inside_the_model)


# Where the model_error line must point: the line that raised, in the function that raised it.
ORIGIN = (
    f"{_fail_inside_the_model.__code__.co_filename}:"
    f"{_fail_inside_the_model.__code__.co_firstlineno + 1} in _fail_inside_the_model"
)
ODD_FEATURES = MappingProxyType({"length": 12.0, "price": Decimal("0.25")})


class ErrandModel(SlowModel):
    """Answers at once, except: "hold..." waits for `released`; "...boom" fails inside the
    model; "odd" describes its input with a read-only mapping holding a Decimal."""

    def __init__(self) -> None:
        super().__init__(0)
        self.released = threading.Event()

    def predict(self, payload: SlowRequest) -> Prediction:
        if payload.message.startswith("hold"):
            self.released.wait(timeout=30)
        if payload.message.endswith("boom"):
            _fail_below_the_standard_library()
        if payload.message == "odd":
            return Prediction(label="done", confidence=0.9, features=ODD_FEATURES)
        return self._answer(payload)


def _error(response) -> tuple[int, str, str]:
    body = response.json()
    assert body["request_id"] == response.headers.get("x-request-id"), body
    return response.status_code, body["error"], body["detail"]


def _wait_for_free_slot(client, model: ErrandModel, what: str) -> None:
    """Until no prediction runs: a held one has returned (or failed) in its thread."""

    def free() -> bool:
        metrics = client.get("/metrics").text
        return sample(metrics, "model_predictions_running", model=model.name) == 0

    wait_for(what, free, timeout=30, every=0.05)


def test_every_refusal_tells_the_client_what_happened_in_words(serve, log_file):
    model = ErrandModel()
    with serve(
        model,
        predict_concurrency=1,
        predict_queue=0,
        predict_timeout_seconds=TIMEOUT_SECONDS,
        max_body_bytes=BODY_LIMIT,
        faults_enabled=True,
        admin_token=TOKEN,
    ) as client:

        def predict(message: str, **headers: str):
            return client.post("/predict", json={"message": message}, headers=headers)

        try:
            timed_out = predict("hold")  # keeps the only slot after its caller gave up
            overloaded = predict("quick")
        finally:
            model.released.set()

        _wait_for_free_slot(client, model, "the held prediction to end")
        too_large = client.post(
            "/predict",
            content=b'{"message": "' + b"x" * BODY_LIMIT + b'"}',
            headers={"content-type": "application/json"},
        )
        failed = predict("boom")
        no_drift = client.get("/drift")
        no_token = client.post("/admin/faults", json={"error_rate": 1.0})
        bearer = {"authorization": f"Bearer {TOKEN}"}
        assert client.post("/admin/faults", json={"error_rate": 1.0}, headers=bearer).is_success
        injected = predict("quick")
        assert client.delete("/admin/faults", headers=bearer).is_success
        client.app.state.shutdown.begin()  # as SIGTERM does
        stopping = predict("quick")
        readiness = client.get("/readyz")

    assert _error(timed_out) == (504, "timeout", f"no prediction within {TIMEOUT_SECONDS} s")
    assert _error(overloaded) == (
        503,
        "overloaded",
        "too many predictions at once: 1 running, 0 waiting",
    )
    assert _error(too_large) == (
        413,
        "body_too_large",
        f"request body is larger than the limit of {BODY_LIMIT} bytes",
    )
    assert _error(failed) == (
        500,
        "model_error",
        "the model failed on this input; the server log has the request id",
    )
    assert no_drift.status_code == 404
    assert no_drift.json() == {
        "error": "no_baseline",
        "detail": "this model has no drift baseline",
        "field": None,
        "request_id": None,
    }
    assert no_token.status_code == 401
    assert (no_token.json()["error"], no_token.json()["detail"]) == (
        "http_401",
        "a valid bearer token is required",
    )
    assert no_token.headers["www-authenticate"] == "Bearer"
    assert _error(injected) == (500, "injected_fault", "injected fault (error_rate=1.0)")
    assert _error(stopping) == (
        503,
        "shutting_down",
        "the server is stopping; retry another replica",
    )
    # A shed request may be sent again a second later, to this replica or another.
    assert overloaded.headers["retry-after"] == stopping.headers["retry-after"] == "1"
    assert (readiness.status_code, readiness.json()) == (503, {"status": "stopping"})

    # The operator's side of the model failure: where, and which request; never the input.
    [model_error] = log_events(log_file, "model_error")
    assert model_error["origin"] == ORIGIN
    assert model_error["request_id"] == failed.headers["x-request-id"]
    assert model_error["error_type"] == "ZeroDivisionError"
    assert "a user's text" not in log_file.read_text()


def test_features_a_model_describes_oddly_are_still_logged_as_json(serve, log_file):
    """A read-only mapping is logged as the object it stands for, a value JSON has no type for
    as its Python repr: the line is written, nothing about the request is lost."""
    with serve(ErrandModel()) as client:
        answer = client.post("/predict", json={"message": "odd"})
    assert answer.status_code == 200
    [event] = log_events(log_file)
    assert event["features"] == {"length": 12.0, "price": "Decimal('0.25')"}
    assert (event["status"], event["prediction"]) == ("success", "done")


def test_a_prediction_failing_after_its_caller_gave_up_is_not_reported_as_a_lost_error(
    serve, caplog
):
    """The caller got its 504 and the slot stays held until the model returns; when the model
    then fails, asyncio must not log "Future exception was never retrieved" (which reads like a
    server bug) for an outcome the server already answered."""
    model = ErrandModel()
    with serve(model, predict_timeout_seconds=TIMEOUT_SECONDS) as client:
        try:
            timed_out = client.post("/predict", json={"message": "hold then boom"})
        finally:
            model.released.set()

        _wait_for_free_slot(client, model, "the abandoned prediction to fail")
    gc.collect()  # asyncio reports an unretrieved error when the future is collected
    assert timed_out.status_code == 504
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


def _closed_stream():
    stream = open("/dev/null", "w")  # noqa: SIM115 - closed on purpose
    stream.close()
    return stream


@pytest.mark.parametrize(
    "stderr",
    [
        pytest.param(_closed_stream, id="stderr closed"),
        pytest.param(lambda: open("/dev/full", "w"), id="stderr on a full disk"),  # noqa: SIM115
    ],
)
def test_a_log_file_that_fails_while_stderr_is_gone_too_does_not_stop_the_caller(
    monkeypatch, capfd, stderr
):
    """The complaint about the log file goes to stderr; when stderr cannot take it either, the
    complaint is dropped and the request goes on, its line still reaching stdout."""
    broken = stderr()
    monkeypatch.setattr(sys, "stderr", broken)
    sink = JsonLinesSink()
    sink.open(Settings(log_file=Path("/dev/full")))  # every write to the file fails
    try:
        sink.write_line(b'{"n":1}\n')
        sink.write_line(b'{"n":2}\n')
    finally:
        monkeypatch.undo()
        if not broken.closed:  # let its buffered complaint go somewhere when it is closed
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, broken.fileno())
            os.close(null)
            broken.close()
    assert capfd.readouterr().out == '{"n":1}\n{"n":2}\n'
