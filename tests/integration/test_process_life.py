"""The edges of a model server's life under real uvicorn: start-up, stop, and a worker's death.

Each server is `python -m mlobs.serve` in its own process group on a free loopback port, stopped
at the end of its test. Only what a user or an operator sees is read: HTTP, /metrics, the log file
and stdout, the exit status; and, after a stop, the multiprocess files that a stopping worker
leaves for the other workers' scrapes.

The model here (LifeModel, served as `tests.integration.test_process_life:app`) notes each call
of predict with its process id in the file LIFE_CALLS, so a test knows which worker runs what and
when the warm-up is over; LIFE_FAIL makes its load or its warm-up fail.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from mlobs.model import Prediction
from mlobs.server import create_app
from native.processes import Service, free_port, model_server_spec, stop_all
from tests.support.http import metric_samples, sample
from tests.support.slow_model import SlowModel, SlowRequest
from tests.support.waiting import wait_for
from tests.unit.test_server_contract import CHAT_BODY

pytestmark = pytest.mark.integration
LIFE_APP = "tests.integration.test_process_life:app"
CHAT_APP = "services.chatbot.app:app"
LABELS = {"model": "slow-model", "model_version": "1.0.0"}
QUICK = {"message": "quick"}  # answered at once
HOLD = {"message": "hold"}  # takes SLOW_MODEL_SECONDS
WARM_UP = SlowModel(0).example_input().message
LOAD_ERROR = "model weights not found: /models/life/weights.bin"
WARM_UP_ERROR = "weights are corrupt: NaN in layer 3"
START_SECONDS = 60.0  # a start on the busy 2-core test machine; a healthy one takes 1-3 s


def _note(what: str) -> None:
    with Path(os.environ["LIFE_CALLS"]).open("a") as calls:
        calls.write(f"{what} {os.getpid()}\n")


class LifeModel(SlowModel):
    """SlowModel that notes its calls; "quick" is answered at once, the warm-up takes
    LIFE_WARM_UP_SECONDS and then notes "warmed"."""

    def predict(self, payload: SlowRequest) -> Prediction:
        _note(payload.message)
        if payload.message == WARM_UP:
            if os.environ.get("LIFE_FAIL") == "warm-up":
                raise RuntimeError(WARM_UP_ERROR)
            time.sleep(float(os.environ.get("LIFE_WARM_UP_SECONDS", "0")))
            _note("warmed")
            return self._answer(payload)
        if payload.message == QUICK["message"]:
            return self._answer(payload)
        return super().predict(payload)


def _load() -> LifeModel:
    """Load the model as a user's app module does at import, slowly or failing if asked to."""
    if os.environ.get("LIFE_FAIL") == "load":
        _note("load")
        raise FileNotFoundError(LOAD_ERROR)
    time.sleep(float(os.environ.get("LIFE_LOAD_SECONDS", "0")))
    return LifeModel(float(os.environ.get("SLOW_MODEL_SECONDS", "0.2")))


def __getattr__(name: str) -> Any:
    # Built when uvicorn asks for it, so that pytest can import this module without a model.
    if name == "app":
        return create_app(_load())
    raise AttributeError(name)


@dataclass
class Life:
    """A started `python -m mlobs.serve`: its process, URL and files."""

    service: Service
    url: str
    calls_file: Path
    log_file: Path

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.service.process

    def calls(self, what: str) -> list[int]:
        """The process ids that noted `what`, in order."""
        if not self.calls_file.exists():
            return []
        lines = [line.split() for line in self.calls_file.read_text().splitlines()]
        return [int(pid) for noted, pid in lines if noted == what]

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text

    def output(self) -> str:
        """Everything the server printed, stdout and stderr."""
        return self.service.log_path.read_text(errors="replace")

    def stdout_events(self) -> list[dict]:
        # uvicorn's own lines (stderr, in the same file) are not JSON.
        return [json.loads(line) for line in self.output().splitlines() if line.startswith("{")]

    def file_events(self) -> list[dict]:
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]


@contextmanager
def _launcher(directory: Path) -> Iterator[Callable[..., Life]]:
    """`start(app, workers, ready, port, **env)`; every server started is stopped at the end."""
    started: list[Service] = []

    def start(
        app: str = LIFE_APP,
        workers: int = 1,
        ready: bool = True,
        port: int | None = None,
        **env: str,
    ) -> Life:
        port = port or free_port()
        calls, log_file = directory / f"calls-{port}", directory / f"inference-{port}.log"
        env = {"LIFE_CALLS": str(calls), "MLOBS_LOG_FILE": str(log_file), **env}
        if workers > 1:  # else mlobs.serve makes a temporary one, left behind
            env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(directory / f"prom-{port}"))
        service = Service(model_server_spec(f"serve-{port}", app, port, env, workers), directory)
        started.append(service)
        if ready:
            service.wait_ready(START_SECONDS)
        return Life(service, f"http://127.0.0.1:{port}", calls, log_file)

    try:
        yield start
    finally:
        stop_all(started)  # SIGTERM to the process group, SIGKILL after 10 s


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Life]]:
    with _launcher(tmp_path) as start:
        yield start


def _exited(life: Life) -> bool:
    return life.process.poll() is not None


# Start-up


def test_readiness_comes_only_after_the_model_has_loaded_and_warmed_up(launch):
    """Under uvicorn the port opens only after the lifespan's warm-up, so a probe before that is
    refused; what matters is that no probe answers 200 before the warm-up has finished."""
    life = launch(ready=False, LIFE_LOAD_SECONDS="0.5", LIFE_WARM_UP_SECONDS="1")
    not_ready: list[str] = []

    def ready() -> bool:
        assert not _exited(life), life.output()
        try:
            answer = httpx.get(f"{life.url}/readyz", timeout=0.5)
        except httpx.TransportError as exc:  # not listening, or not accepting yet
            not_ready.append(type(exc).__name__)
            return False
        warmed = bool(life.calls("warmed"))  # read after the answer: 200 must not precede it
        if answer.status_code == 200:
            assert warmed, "/readyz answered 200 while the model was still warming up"
            return True
        assert answer.status_code == 503, answer.text
        not_ready.append(answer.json()["status"])
        return False

    wait_for("readiness", ready, timeout=START_SECONDS, every=0.1)
    assert len(not_ready) > 0, "no probe was made while the model loaded"
    ready_answer = httpx.get(f"{life.url}/readyz", timeout=5).json()
    assert ready_answer == {"status": "ready", "model": "slow-model", "version": "1.0.0"}
    _predict_quick(life)


FAILURES = {"load": LOAD_ERROR, "warm-up": WARM_UP_ERROR}


@pytest.mark.parametrize(
    ("stage", "workers"),
    [
        ("load", 1),
        ("load", 2),
        ("warm-up", 1),
        ("warm-up", 2),
    ],
)
def test_a_model_that_cannot_start_stops_the_server_with_its_error(launch, stage, workers):
    """No retry loop and no silent success: a supervisor (Docker, Kubernetes) sees a failed
    process and the operator reads why."""
    life = launch(workers=workers, ready=False, LIFE_FAIL=stage)
    wait_for(
        f"the server to exit, or a worker to try its {stage} again",
        lambda: _exited(life) or len(life.calls(stage)) > workers,
        timeout=START_SECONDS,
    )
    assert len(life.calls(stage)) <= workers, "a worker that could not start was started again"
    assert life.process.wait(timeout=10) != 0
    assert FAILURES[stage] in life.output()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_port_in_use_is_refused_with_a_clear_error(launch, workers):
    """One worker binds after loading the model; with several, the supervisor binds first."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        life = launch(workers=workers, ready=False, port=holder.getsockname()[1])
        wait_for("the server to exit", lambda: _exited(life), timeout=START_SECONDS)
    assert life.process.returncode != 0
    assert "address already in use" in life.output().lower()


# Shutdown


def _counters_left(directory: Path) -> str:
    """The exposition of every worker's multiprocess files in `directory`."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return generate_latest(registry).decode()


def _binned_per_feature(exposition: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for (name, labels), value in metric_samples(exposition).items():
        if name == "model_feature_bin_total":
            feature = dict(labels)["feature"]
            totals[feature] = totals.get(feature, 0.0) + value
    return totals


def test_what_happened_just_before_sigterm_is_logged_and_counted_and_the_exit_is_0(
    launch, tmp_path
):
    """Predictions answered a moment before SIGTERM: their log lines and the drain's own, the
    last lines the server writes, reach the file and stdout; their drift values, still queued
    (a worker bins them within a second), reach the shared counters, which is what the other
    workers' scrapes read after a worker stops (uvicorn replaces workers on SIGHUP)."""
    prom = tmp_path / "prom"
    life = launch(app=CHAT_APP, PROMETHEUS_MULTIPROC_DIR=str(prom))
    ids = [f"last-{n}" for n in range(5)]
    with httpx.Client(base_url=life.url, timeout=10) as client:
        features = client.get("/model").json()["drift_features"]
        for request_id in ids:
            headers = {"X-Request-ID": request_id}
            assert client.post("/predict", json=CHAT_BODY, headers=headers).status_code == 200
    life.process.send_signal(signal.SIGTERM)
    assert life.process.wait(timeout=30) == 0
    in_file = life.file_events()
    assert [e["request_id"] for e in in_file if e["message"] == "inference"] == ids
    assert [e["message"] for e in in_file][-2:] == ["draining", "drained"]
    assert life.stdout_events() == in_file
    # Numeric bins have open outer edges and a missing bin: each request counts once a feature.
    assert len(features) > 0
    assert _binned_per_feature(_counters_left(prom)) == dict.fromkeys(features, len(ids))


@contextmanager
def _holding(life: Life) -> Iterator[tuple[Future, list[int]]]:
    """A HOLD prediction sent on its own connection: its future (a response, or the transport
    error) and the process ids running it, once it runs."""
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(_post, life.url, HOLD)
        pids = wait_for("the prediction to start", lambda: life.calls(HOLD["message"]), timeout=30)
        yield held, pids


def _post(url: str, body: dict) -> httpx.Response | httpx.TransportError:
    """A prediction on its own connection; a dropped connection is returned, not raised."""
    try:
        return httpx.post(f"{url}/predict", json=body, timeout=30)
    except httpx.TransportError as exc:
        return exc


def _predict_quick(life: Life) -> None:
    answer = _post(life.url, QUICK)
    assert isinstance(answer, httpx.Response) and answer.status_code == 200, answer


@pytest.mark.parametrize(
    "whom",
    [
        "parent",  # Docker and Kubernetes signal PID 1 only
        "process group",  # Ctrl-C in a terminal, systemd's default KillMode, `make local`
    ],
)
def test_a_prediction_in_flight_when_a_multi_worker_server_stops_completes(launch, whom):
    """Longer than mlobs.serve.CLOSE_SECONDS (3 s): only a drain that waits for it keeps it."""
    life = launch(workers=2, SLOW_MODEL_SECONDS="6")
    with _holding(life) as (held, _):
        signalled = time.monotonic()
        if whom == "parent":
            life.process.send_signal(signal.SIGTERM)
        else:
            os.killpg(life.process.pid, signal.SIGTERM)
        answer = held.result(timeout=30)
    assert isinstance(answer, httpx.Response) and answer.status_code == 200, answer
    assert life.process.wait(timeout=30) == 0
    stopped_within = time.monotonic() - signalled
    # Each worker says how long its drain took (seconds, to the ms); one waited for the prediction.
    drains = [e["seconds"] for e in life.file_events() if e["message"] == "drained"]
    assert drains and all(isinstance(s, float) and round(s, 3) == s for s in drains), drains
    assert 0 < max(drains) <= stopped_within
    logged = [e for e in life.file_events() if e["message"] == "inference"]
    assert [(e["request_id"], e["status"]) for e in logged] == [
        (answer.headers["x-request-id"], "success")
    ]


def test_a_second_ctrl_c_stops_without_waiting_for_the_drain(launch):
    """Ctrl-C in a terminal drains like SIGTERM; a second Ctrl-C means "now": uvicorn closes the
    connections within CLOSE_SECONDS instead of waiting for a prediction of a minute."""
    life = launch(
        SLOW_MODEL_SECONDS="60",
        MLOBS_PREDICT_TIMEOUT_SECONDS="60",
        MLOBS_SHUTDOWN_GRACE_SECONDS="60",
    )
    with _holding(life) as (held, _):
        life.process.send_signal(signal.SIGINT)

        def draining() -> bool:
            return any(e["message"] == "draining" for e in life.file_events())

        wait_for("the drain to start", draining, timeout=30)
        life.process.send_signal(signal.SIGINT)
        # Well under the prediction's minute and the client's 30 s: no wait for the drain.
        answer = held.result(timeout=20)
        # uvicorn's own shutdown ran to its end (a handler that failed would skip it).
        finished = "Finished server process"
        wait_for("uvicorn to finish", lambda: finished in life.output(), timeout=20)
    assert not (isinstance(answer, httpx.Response) and answer.status_code == 200), answer
    # The operator reads why the server stopped and what it was waiting for.
    drains = [e for e in life.file_events() if e["message"] == "draining"]
    assert [(e["signal"], e["in_flight"]) for e in drains] == [("SIGINT", 1)]


def test_a_prediction_that_never_returns_does_not_keep_a_stopped_server_alive(launch):
    """A predict stuck for an hour (a lock, a network call without a timeout): once the drain
    (MLOBS_SHUTDOWN_GRACE_SECONDS) and the close (CLOSE_SECONDS) are over, the process exits 0
    on its own instead of waiting for its supervisor's SIGKILL at the end of the grace period."""
    life = launch(
        SLOW_MODEL_SECONDS="3600",
        MLOBS_PREDICT_TIMEOUT_SECONDS="3600",
        MLOBS_SHUTDOWN_GRACE_SECONDS="1",
    )
    with _holding(life) as (held, _):
        life.process.send_signal(signal.SIGTERM)
        # 1 s of drain and 3 s of close, on a busy machine; compose would kill it after 30 s.
        assert life.process.wait(timeout=20) == 0
        answer = held.result(timeout=20)
    assert isinstance(answer, httpx.Response) and answer.status_code == 503, answer
    assert answer.json()["error"] == "shutting_down"  # retry another replica
    [over] = [e for e in life.file_events() if e["message"] == "grace_period_over"]
    assert (over["grace_seconds"], over["in_flight"]) == (1.0, 1)


# A worker's death in multi-worker mode


@dataclass
class KilledWorker:
    """A 2-worker server, one of whose workers was killed (SIGKILL) mid-prediction."""

    answered: dict[int, int]  # quick predictions answered per worker before the kill
    killed: int
    replacements: set[int]  # workers that warmed up after the kill
    held: httpx.Response | httpx.TransportError  # what the killed prediction's client got
    before: str  # /metrics while the prediction ran
    after: str  # /metrics once replaced, after QUICK_AFTER more predictions


QUICK_AFTER = 4


def _until_both_workers_answered(life: Life) -> dict[int, int]:
    """Quick predictions on new connections until each worker has answered at least one."""

    def both() -> bool:
        _predict_quick(life)
        return len(set(life.calls(QUICK["message"]))) == 2

    wait_for("both workers to answer", both, timeout=60, every=0.01)
    pids = life.calls(QUICK["message"])
    return {pid: pids.count(pid) for pid in set(pids)}


@pytest.fixture(scope="module")
def killed_worker(tmp_path_factory) -> Iterator[KilledWorker]:
    directory = tmp_path_factory.mktemp("killed-worker")
    with _launcher(directory) as start:
        life = start(workers=2, SLOW_MODEL_SECONDS="30")
        answered = _until_both_workers_answered(life)
        workers = set(life.calls("warmed"))
        with _holding(life) as (held, [killed]):
            before = life.metrics()
            os.kill(killed, signal.SIGKILL)
            outcome = held.result(timeout=30)
        replacements = wait_for(
            "a new worker", lambda: set(life.calls("warmed")) - workers, timeout=START_SECONDS
        )
        for _ in range(QUICK_AFTER):
            _predict_quick(life)
        yield KilledWorker(answered, killed, replacements, outcome, before, life.metrics())


def test_a_killed_worker_is_replaced_and_its_counts_are_kept(killed_worker):
    """uvicorn's supervisor starts a new worker; the dead worker's counters stay in the sum,
    so no counter goes backwards; the killed prediction is neither answered nor counted."""
    k = killed_worker
    assert k.answered.get(k.killed, 0) > 0  # the dead worker had counted some
    assert len(k.replacements) == 1 and k.killed not in k.replacements
    assert isinstance(k.held, httpx.TransportError), k.held
    counted = sum(k.answered.values())
    for exposition, expected in ((k.before, counted), (k.after, counted + QUICK_AFTER)):
        assert sample(exposition, "model_requests_total", **LABELS, status="success") == expected
        assert sample(exposition, "model_latency_seconds_count", **LABELS) == expected
    assert sample(k.after, "model_requests_total", **LABELS, status="server_error") == 0
    assert sample(k.before, "model_predictions_running", model="slow-model") == 1


def test_a_killed_workers_gauges_do_not_stay(killed_worker):
    """The killed worker was running one prediction: once it is gone, nothing runs."""
    for name in ("model_predictions_running", "model_requests_in_flight"):
        assert sample(killed_worker.after, name, model="slow-model") == 0, name
    assert sample(killed_worker.after, "model_predictions_queued", model="slow-model") == 0
