"""Real models are slow: a user's model served the README's way under real uvicorn.

The model (tests/support/slow_model.py) sleeps in predict, standing in for a PyTorch or
scikit-learn call. Only the public API is used: HTTP, /metrics, the log file, signals.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from native.processes import Service, free_port, model_server_spec, start_all, stop_all
from tests.support.http import log_events, sample
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
APP = "tests.support.slow_model:app"
BODY = {"message": "hello"}
MODEL = {"model": "slow-model", "model_version": "1.0.0"}


class Server:
    """A started slow-model server: its URL, process and log file."""

    def __init__(self, service: Service, url: str, log_file: Path) -> None:
        self.service, self.url, self.log_file = service, url, log_file

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5).text

    def requests(self, status: str) -> float:
        return sample(self.metrics(), "model_requests_total", **MODEL, status=status)

    def events(self) -> list[dict]:
        return log_events(self.log_file)


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Service] = []

    def launch(seconds: float, kind: str = "sleep", workers: int = 1, **settings: str) -> Server:
        port = free_port()
        log_file = tmp_path / f"slow-{port}.log"
        env = {
            "SLOW_MODEL_SECONDS": str(seconds),
            "SLOW_MODEL_KIND": kind,
            "MLOBS_LOG_FILE": str(log_file),
            **settings,
        }
        spec = model_server_spec("slow-model", APP, port, env, workers)
        [service] = start_all([spec], tmp_path)
        started.append(service)
        return Server(service, f"http://127.0.0.1:{port}", log_file)

    yield launch
    stop_all(started)


async def _predict_all(url: str, n: int, body: dict = BODY) -> list[httpx.Response]:
    """`n` predictions at once, each on its own connection."""
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        return await asyncio.gather(*(client.post("/predict", json=body) for _ in range(n)))


def _predict_all_timed(url: str, n: int) -> tuple[list[httpx.Response], float]:
    start = time.monotonic()
    answers = asyncio.run(_predict_all(url, n))
    return answers, time.monotonic() - start


def test_a_slow_synchronous_model_serves_concurrent_clients_in_parallel(slow_server):
    threaded = slow_server(0.2)
    inline = slow_server(0.2, kind="inline")  # the seed's pattern: predict on the event loop
    answers, threaded_seconds = _predict_all_timed(threaded.url, 16)
    inline_answers, inline_seconds = _predict_all_timed(inline.url, 16)
    assert {a.status_code for a in answers + inline_answers} == {200}
    # 16 x 0.2 s one at a time is 3.2 s; 8 threads take about 0.4 s. The margin is wide.
    assert inline_seconds / threaded_seconds >= 5, (inline_seconds, threaded_seconds)


def test_health_readiness_and_metrics_answer_at_once_while_predictions_run(slow_server):
    server = slow_server(2.0)

    async def probe_while_predicting() -> dict[str, float]:
        predictions = asyncio.ensure_future(_predict_all(server.url, 8))
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            await asyncio.sleep(0.5)  # every prediction has started its 2 s
            waited = {}
            for path in ("/healthz", "/readyz", "/metrics"):
                start = time.monotonic()
                assert (await client.get(path)).status_code == 200
                waited[path] = time.monotonic() - start
            running = sample(
                (await client.get("/metrics")).text, "model_predictions_running", model="slow-model"
            )
        answers = await predictions
        assert {a.status_code for a in answers} == {200}
        return {**waited, "running": running}

    result = asyncio.run(probe_while_predicting())
    assert result.pop("running") == 8
    assert all(seconds < 0.5 for seconds in result.values()), result


def test_running_predictions_add_up_across_workers(slow_server, tmp_path):
    server = slow_server(1.5, workers=2, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prom"))

    async def count_while_predicting() -> tuple[float, float]:
        predictions = asyncio.ensure_future(_predict_all(server.url, 6))
        await asyncio.sleep(0.7)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            text = (await client.get("/metrics")).text
        assert {a.status_code for a in await predictions} == {200}
        after = httpx.get(f"{server.url}/metrics", timeout=5).text
        running = sample(text, "model_predictions_running", model="slow-model")
        return running, sample(after, "model_predictions_running", model="slow-model")

    # Whichever worker answers the scrape, it reports both workers' predictions.
    assert asyncio.run(count_while_predicting()) == (6, 0)


@pytest.mark.parametrize("kind", ["async", "inline"])
def test_async_and_inline_models_answer_and_log_their_predict_time(slow_server, kind):
    server = slow_server(0.05, kind=kind)
    answer = httpx.post(f"{server.url}/predict", json=BODY, timeout=5)
    assert answer.status_code == 200 and answer.json()["label"] == "done"
    [event] = wait_for("the inference line", server.events, timeout=10)
    assert event["status"] == "success"
    # 50 ms of model time; asyncio's timers may end a millisecond early.
    assert 45 <= event["predict_ms"] <= event["latency_ms"]


def test_overload_is_shed_with_503_and_retry_after_at_once(slow_server):
    server = slow_server(1.0, MLOBS_PREDICT_CONCURRENCY="2", MLOBS_PREDICT_QUEUE="2")
    answers, _ = _predict_all_timed(server.url, 10)
    shed = [a for a in answers if a.status_code == 503]
    assert sorted(a.status_code for a in answers) == [200] * 4 + [503] * 6
    assert all(a.headers["retry-after"] == "1" for a in shed)
    assert {a.json()["error"] for a in shed} == {"overloaded"}
    # Refused at once, not after waiting behind the running predictions.
    assert all(a.elapsed.total_seconds() < 0.5 for a in shed), [a.elapsed for a in shed]
    assert server.requests("shed") == 6 and server.requests("success") == 4
    events = wait_for("ten inference lines", lambda: len(server.events()) == 10 and server.events())
    outcomes = sorted((e["status"], e.get("error_type"), e["level"]) for e in events)
    assert outcomes == [("shed", "overloaded", "warning")] * 6 + [("success", None, "info")] * 4
    assert httpx.post(f"{server.url}/predict", json=BODY, timeout=5).status_code == 200


def test_a_prediction_past_the_timeout_gets_504_and_keeps_its_slot(slow_server):
    server = slow_server(
        1.5,
        MLOBS_PREDICT_TIMEOUT_SECONDS="0.3",
        MLOBS_PREDICT_CONCURRENCY="1",
        MLOBS_PREDICT_QUEUE="0",
    )
    with httpx.Client(base_url=server.url, timeout=10) as client:
        late = client.post("/predict", json=BODY)
        # The abandoned prediction still runs in its thread: the only slot is taken.
        refused = client.post("/predict", json=BODY)
        running = sample(
            client.get("/metrics").text, "model_predictions_running", model="slow-model"
        )
        time.sleep(1.5)  # the first prediction returns and frees the slot
        after = client.post("/predict", json={"message": "fail"})
    assert late.status_code == 504 and late.json()["error"] == "timeout"
    assert late.elapsed.total_seconds() < 1.0
    assert refused.status_code == 503 and running == 1
    assert after.status_code == 504  # free again; this one also overran (and then failed)
    assert server.requests("server_error") == 2
    events = wait_for("three lines", lambda: len(server.events()) == 3 and server.events())
    assert [(e["status"], e.get("error_type")) for e in events] == [
        ("server_error", "timeout"),
        ("shed", "overloaded"),
        ("server_error", "timeout"),
    ]


def test_sigterm_drains_predictions_in_flight_then_exits_0(slow_server):
    server = slow_server(1.5)

    async def stop_while_predicting() -> tuple[list[httpx.Response], dict[str, httpx.Response]]:
        predictions = asyncio.ensure_future(_predict_all(server.url, 6))
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            await asyncio.sleep(0.5)
            server.service.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            during = {
                "readyz": await client.get("/readyz"),
                "healthz": await client.get("/healthz"),
                "predict": await client.post("/predict", json=BODY),
            }
        return await predictions, during

    answers, during = asyncio.run(stop_while_predicting())
    assert [a.status_code for a in answers] == [200] * 6
    assert during["readyz"].status_code == 503 and during["healthz"].status_code == 200
    assert during["predict"].status_code == 503
    assert during["predict"].json()["error"] == "shutting_down"
    assert server.service.process.wait(timeout=15) == 0
    events = server.events()
    assert sorted(e["status"] for e in events) == ["shed"] + ["success"] * 6
    # The operator reads how many predictions the drain waited for, and that it was not cut short.
    [draining] = log_events(server.log_file, "draining")
    assert (draining["signal"], draining["in_flight"]) == ("SIGTERM", 6)
    assert len(log_events(server.log_file, "drained")) == 1
    assert log_events(server.log_file, "grace_period_over") == []
