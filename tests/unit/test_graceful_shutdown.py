"""Draining: what a server answers between SIGTERM and its exit (the signal itself is tested
with real uvicorn in tests/integration/test_slow_models.py)."""

from __future__ import annotations

import asyncio

from mlobs.logs import get_logger
from mlobs.shutdown import GracefulShutdown
from tests.support.http import log_events, sample
from tests.unit.test_server_contract import CHAT_BODY


def test_a_draining_server_is_not_ready_and_sheds_new_predictions(serve, chatbot_model, log_file):
    with serve(chatbot_model) as client:
        assert client.get("/readyz").status_code == 200
        client.app.state.shutdown.begin()
        ready = client.get("/readyz")
        refused = client.post("/predict", json=CHAT_BODY, headers={"X-Request-ID": "late-1"})
        alive = client.get("/healthz")
        text = client.get("/metrics").text
    assert ready.status_code == 503 and alive.status_code == 200
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"] == "shutting_down"
    assert refused.headers["x-request-id"] == "late-1"
    labels = {"model": "chatbot", "model_version": chatbot_model.version}
    assert sample(text, "model_requests_total", **labels, status="shed") == 1
    [event] = log_events(log_file)
    assert (event["status"], event["error_type"], event["level"]) == (
        "shed",
        "shutting_down",
        "warning",
    )
    assert "predict_ms" not in event  # the model never ran


def test_a_drain_waits_for_requests_in_flight_but_not_past_the_grace_period():
    async def scenario() -> tuple[bool, bool]:
        shutdown = GracefulShutdown(grace_seconds=5, log=get_logger())
        shutdown.active = 1
        drain = asyncio.create_task(shutdown.drained())
        await asyncio.sleep(0.2)
        still_waiting = not drain.done()
        shutdown.active = 0
        return still_waiting, await asyncio.wait_for(drain, 1)

    assert asyncio.run(scenario()) == (True, True)

    async def stuck() -> bool:
        shutdown = GracefulShutdown(grace_seconds=0.2, log=get_logger())
        shutdown.active = 1
        return await asyncio.wait_for(shutdown.drained(), 2)

    assert asyncio.run(stuck()) is False
