"""Shared fixtures: the two trained sample models and in-process clients of their servers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mlobs.logs import flush_logs
from mlobs.model import ServedModel
from mlobs.server import create_app
from mlobs.settings import Settings
from services.anomaly_detector.model import AnomalyDetector
from services.chatbot.model import Chatbot

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
