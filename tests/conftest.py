"""Shared fixtures: the two trained sample models and in-process clients of their servers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mlobs.logs import flush_logs
from mlobs.model import ServedModel
from mlobs.server import create_app
from mlobs.settings import Settings
from services.anomaly_detector.model import AnomalyDetector
from services.chatbot.model import Chatbot
from tests.support.http import log_events
from tests.unit.test_server_contract import ANOMALY_BODY, CHAT_BODY

REPO = Path(__file__).resolve().parent.parent
REQUIRE_TOOLS = os.environ.get("MLOBS_REQUIRE_TOOLS") == "1"


def require_tool(name: str) -> str:
    """Path of an external binary; skip without it, fail instead under MLOBS_REQUIRE_TOOLS=1."""
    path = shutil.which(name)
    if path is None:
        message = (
            f"{name} is not installed (Debian: apt-get install prometheus prometheus-alertmanager)"
        )
        if REQUIRE_TOOLS:
            pytest.fail(f"MLOBS_REQUIRE_TOOLS=1 but {message}")
        pytest.skip(message)
    return path


@pytest.fixture(autouse=True)
def _write_queued_log_lines() -> Iterator[None]:
    """A test's log lines still queued in a closed event loop are written during that test,
    not in the middle of another test's output."""
    yield
    flush_logs()


@pytest.fixture(scope="session")
def anomaly_model() -> AnomalyDetector:
    return AnomalyDetector.load()


@pytest.fixture(scope="session")
def chatbot_model() -> Chatbot:
    return Chatbot.load()


ServerFactory = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture
def serve(tmp_path: Path) -> ServerFactory:
    """`with serve(model, faults_enabled=True) as client:`; the app logs to tmp_path."""

    @contextmanager
    def factory(model: ServedModel, **overrides) -> Iterator[TestClient]:
        settings = Settings(**{"log_file": tmp_path / "inference.log", **overrides})
        with TestClient(create_app(model, settings), raise_server_exceptions=False) as client:
            yield client

    return factory


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    return tmp_path / "inference.log"


@dataclass(frozen=True)
class Exposed:
    """What both model servers expose after one successful prediction each."""

    series: list[tuple[str, dict[str, str]]]  # every sample of their /metrics: (name, labels)
    events: list[dict]  # their inference log events


@pytest.fixture(scope="session")
def exposed(tmp_path_factory, anomaly_model, chatbot_model) -> Exposed:
    """Both model servers, started once for the session: one prediction each, then /metrics."""
    log_file = tmp_path_factory.mktemp("exposed") / "inference.log"
    series: list[tuple[str, dict[str, str]]] = []
    for model, body in ((anomaly_model, ANOMALY_BODY), (chatbot_model, CHAT_BODY)):
        app = create_app(model, Settings(log_file=log_file))
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.post("/predict", json=body).status_code == 200
            text = client.get("/metrics").text
        families = text_string_to_metric_families(text)
        series += [(s.name, s.labels) for family in families for s in family.samples]
    return Exposed(series, log_events(log_file))
