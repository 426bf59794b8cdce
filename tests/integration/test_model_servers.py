"""Both model servers under real uvicorn processes on loopback, one and several workers."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from native.processes import Service, free_port, model_server_spec, start_all, stop_all
from tests.support.http import log_events, metric_samples, sample
from tests.support.waiting import wait_for
from tests.unit.test_server_contract import ANOMALY_BODY, CHAT_BODY

pytestmark = pytest.mark.integration
APPS = {
    "anomaly-detector": ("services.anomaly_detector.app:app", ANOMALY_BODY),
    "chatbot": ("services.chatbot.app:app", CHAT_BODY),
}


@pytest.fixture
def run(tmp_path: Path) -> Iterator:
    started: list[Service] = []

    def launch(model: str, workers: int = 1, **env: str) -> str:
        port = free_port()
        spec = model_server_spec(model, APPS[model][0], port, env, workers)
        started.extend(start_all([spec], tmp_path / "out"))
        return f"http://127.0.0.1:{port}"

    yield launch
    stop_all(started)
    assert all(s.process.returncode is not None for s in started)


@pytest.mark.parametrize("model", APPS)
def test_server_answers_the_contract_under_uvicorn(run, tmp_path, model):
    log_file = tmp_path / "logs" / "inference.log"
    base = run(model, MLOBS_LOG_FILE=str(log_file))
    body = APPS[model][1]
    with httpx.Client(base_url=base, timeout=5) as client:
        answer = client.post("/predict", json=body, headers={"X-Request-ID": "it-1"})
        assert answer.status_code == 200 and answer.headers["x-request-id"] == "it-1"
        assert (
            client.post(
                "/predict", content=b"{", headers={"content-type": "application/json"}
            ).status_code
            == 422
        )
        assert client.get("/model").json()["name"] == model
        assert client.get("/drift").status_code == 200
        text = client.get("/metrics").text
    labels = {"model": model, "model_version": answer.json()["model_version"]}
    assert sample(text, "model_requests_total", **labels, status="success") == 1
    assert sample(text, "model_requests_total", **labels, status="client_error") == 1
    assert sample(text, "process_resident_memory_bytes") > 0
    # The server writes its log lines at its event loop's next turn after each response.
    wait_for("both inference lines", lambda: len(log_events(log_file)) >= 2, timeout=10)
    events = log_events(log_file)
    assert events[0]["request_id"] == "it-1"
    assert [e["status"] for e in events] == ["success", "client_error"]


def _requests_per_worker(prom_dir: Path) -> list[float]:
    """Successful requests counted by each worker, from its own multiprocess file."""
    counts = []
    for db in sorted(prom_dir.glob("counter_*.db")):
        alone = prom_dir.parent / f"alone-{db.stem}"
        alone.mkdir()
        shutil.copy(db, alone / db.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        counts.append(
            registry.get_sample_value(
                "model_requests_total",
                {"model": "chatbot", "model_version": "1.0.0", "status": "success"},
            )
            or 0.0
        )
    return counts


def test_counts_add_up_across_uvicorn_workers(run, tmp_path):
    prom_dir = tmp_path / "prom"
    base = run("chatbot", workers=2, PROMETHEUS_MULTIPROC_DIR=str(prom_dir))
    # New connections per request spread the requests over both workers.
    for _ in range(40):
        assert httpx.post(f"{base}/predict", json=CHAT_BODY, timeout=5).status_code == 200
    text = httpx.get(f"{base}/metrics", timeout=5).text
    labels = {"model": "chatbot", "model_version": "1.0.0"}
    assert sample(text, "model_requests_total", **labels, status="success") == 40
    assert sample(text, "model_latency_seconds_count", **labels) == 40

    def binned() -> bool:
        # Each worker bins its queued drift values within a second (DriftMonitor).
        text = httpx.get(f"{base}/metrics", timeout=5).text
        counts = [
            sample(text, "model_feature_bin_total", model="chatbot", feature="tokens", bin=b)
            for b in _bins(text, "tokens")
        ]
        return sum(counts) == 40

    wait_for("every request's drift values in the shared counters", binned, timeout=10)
    assert sample(text, "model_info", **labels) == 1
    per_worker = _requests_per_worker(prom_dir)
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker), per_worker
    assert sum(per_worker) == 40


def _bins(text: str, feature: str) -> set[str]:
    return {
        dict(labels)["bin"]
        for name, labels in metric_samples(text)
        if name == "model_feature_bin_total" and dict(labels)["feature"] == feature
    }


def test_stdout_carries_every_inference_line_of_the_file(tmp_path):
    """The file is written at once, stdout once per event-loop turn; by shutdown both agree."""
    log_file = tmp_path / "inference.log"
    port = free_port()
    spec = model_server_spec("chatbot", APPS["chatbot"][0], port, {"MLOBS_LOG_FILE": str(log_file)})
    services = start_all([spec], tmp_path / "out")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for n in range(20):
                headers = {"X-Request-ID": f"line-{n}"}
                assert client.post("/predict", json=CHAT_BODY, headers=headers).is_success
    finally:
        stop_all(services)
    in_file = [e["request_id"] for e in log_events(log_file)]
    output = services[0].log_path.read_text().splitlines()  # uvicorn's stderr is mixed in
    events = [json.loads(line) for line in output if line.startswith("{")]
    on_stdout = [e["request_id"] for e in events if e["message"] == "inference"]
    assert in_file == [f"line-{n}" for n in range(20)]
    assert on_stdout == in_file
