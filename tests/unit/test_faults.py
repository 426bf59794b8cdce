"""Fault injection: off by default, token-protected when a token is set, and it really hurts."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from mlobs.server import create_app
from mlobs.settings import Settings
from tests.support.http import log_events, sample
from tests.unit.test_server_contract import CHAT_BODY


def test_fault_endpoints_do_not_exist_unless_enabled(serve, chatbot_model):
    with serve(chatbot_model) as client:
        assert client.post("/admin/faults", json={"error_rate": 1.0}).status_code == 404
        assert client.post("/predict", json=CHAT_BODY).status_code == 200


def test_error_rate_one_fails_every_prediction_until_cleared(serve, chatbot_model, log_file):
    with serve(chatbot_model, faults_enabled=True) as client:
        assert client.post("/admin/faults", json={"error_rate": 1.0}).status_code == 200
        failed = [client.post("/predict", json=CHAT_BODY) for _ in range(5)]
        assert client.delete("/admin/faults").json() == {"latency_ms": 0, "error_rate": 0.0}
        recovered = client.post("/predict", json=CHAT_BODY)
        text = client.get("/metrics").text
    assert {(r.status_code, r.json()["error"]) for r in failed} == {(500, "injected_fault")}
    assert recovered.status_code == 200
    labels = {"model": "chatbot", "model_version": chatbot_model.version}
    assert sample(text, "model_requests_total", **labels, status="server_error") == 5
    assert sample(text, "model_requests_total", **labels, status="success") == 1
    logged = [(e["status"], e.get("error_type")) for e in log_events(log_file)]
    assert logged == [("server_error", "InjectedFault")] * 5 + [("success", None)]


def test_latency_fault_shows_in_the_latency_histogram(serve, chatbot_model):
    with serve(chatbot_model, faults_enabled=True) as client:
        client.post("/admin/faults", json={"latency_ms": 600})
        response = client.post("/predict", json=CHAT_BODY)
        text = client.get("/metrics").text
    assert response.status_code == 200
    labels = {"model": "chatbot", "model_version": chatbot_model.version}
    # Above the 0.5 s bucket: this is what the p99 latency alert sees.
    assert sample(text, "model_latency_seconds_bucket", **labels, le="0.5") == 0
    assert sample(text, "model_latency_seconds_bucket", **labels, le="0.75") == 1


def test_partial_error_rate_fails_about_that_share(serve, chatbot_model):
    with serve(chatbot_model, faults_enabled=True) as client:
        client.post("/admin/faults", json={"error_rate": 0.5})
        codes = [client.post("/predict", json=CHAT_BODY).status_code for _ in range(200)]
    assert 60 <= codes.count(500) <= 140


def test_invalid_fault_settings_are_rejected(serve, chatbot_model):
    with serve(chatbot_model, faults_enabled=True) as client:
        for body in ({"error_rate": 1.5}, {"latency_ms": -1}, {"error_rate": "x"}, {"oops": 1}):
            response = client.post("/admin/faults", json=body)
            assert response.status_code == 422, body
        assert client.get("/admin/faults").json() == {"latency_ms": 0, "error_rate": 0.0}


def test_token_is_required_when_configured(serve, chatbot_model):
    with serve(chatbot_model, faults_enabled=True, admin_token="s3cret") as client:
        assert client.post("/admin/faults", json={"error_rate": 1.0}).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (
            client.post("/admin/faults", json={"error_rate": 1.0}, headers=wrong).status_code == 401
        )
        assert client.delete("/admin/faults").status_code == 401
        assert client.post("/predict", json=CHAT_BODY).status_code == 200
        right = {"Authorization": "Bearer s3cret"}
        assert (
            client.post("/admin/faults", json={"error_rate": 1.0}, headers=right).status_code == 200
        )
        assert client.post("/predict", json=CHAT_BODY).status_code == 500
        assert client.delete("/admin/faults", headers=right).status_code == 200


def test_a_request_abandoned_during_a_slow_prediction_is_not_a_success(chatbot_model, tmp_path):
    # The client gives up while the (injected) latency lasts: the request task is cancelled.
    app = create_app(
        chatbot_model, Settings(log_file=tmp_path / "inference.log", faults_enabled=True)
    )

    async def abandon() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://model") as client:
            await client.post("/admin/faults", json={"latency_ms": 10_000})
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.post("/predict", json=CHAT_BODY), 0.2)
            return (await client.get("/metrics")).text

    text = asyncio.run(abandon())
    labels = {"model": "chatbot", "model_version": chatbot_model.version}
    assert sample(text, "model_requests_total", **labels, status="server_error") == 1
    assert sample(text, "model_requests_total", **labels, status="success") == 0
    [event] = log_events(tmp_path / "inference.log")
    assert event["status"] == "server_error" and event["error_type"] == "CancelledError"


def test_a_token_with_spaces_is_accepted_whole(serve, chatbot_model):
    """Everything after "Bearer " is the token: an operator's passphrase may hold spaces."""
    with serve(chatbot_model, faults_enabled=True, admin_token="correct horse battery") as client:
        partial = {"Authorization": "Bearer battery"}
        assert client.get("/admin/faults", headers=partial).status_code == 401
        whole = {"Authorization": "Bearer correct horse battery"}
        assert client.get("/admin/faults", headers=whole).json() == {
            "latency_ms": 0,
            "error_rate": 0.0,
        }


def test_the_admin_routes_are_grouped_under_admin_in_the_api_docs(serve, chatbot_model):
    with serve(chatbot_model, faults_enabled=True) as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert {method: operation["tags"] for method, operation in paths["/admin/faults"].items()} == {
        "get": ["admin"],
        "post": ["admin"],
        "delete": ["admin"],
    }
