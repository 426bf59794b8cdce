"""wait_for: a check whose truth means nothing is refused at once, naming the wait; a check that is
never satisfied fails the test after its timeout, naming the wait and the last answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.support.waiting import NotYet, set_progress_reporter, wait_for


class _BadRequest(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"message":"datasource not found"}'
        self.send_response(400)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture
def answers_400() -> Iterator[str]:
    """A real HTTP server on loopback that answers every GET with 400."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BadRequest)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_check_returning_a_response_is_refused_even_for_a_400(answers_400):
    with pytest.raises(TypeError, match=r"'datasource health'.*httpx\.Response.*status_code"):
        wait_for("datasource health", lambda: httpx.get(answers_400, timeout=5), timeout=5)


@pytest.mark.parametrize(
    "result",
    [-1, 3, 0.5, "error: unauthorized", b"{}", object()],
    ids=["count -1", "int", "float", "text", "bytes", "object"],
)
def test_results_whose_truth_means_nothing_are_refused_naming_the_wait(result):
    with pytest.raises(TypeError, match="'documents indexed'"):
        wait_for("documents indexed", lambda: result, timeout=5)


def test_returns_the_first_non_empty_collection_after_polling():
    answers = iter([[], None, False, [{"alertname": "ModelServerMissing"}]])
    assert wait_for("the alert", lambda: next(answers), timeout=5, every=0.01) == [
        {"alertname": "ModelServerMissing"}
    ]


def test_true_ends_the_wait():
    calls = []
    assert wait_for("three calls", lambda: calls.append(1) or len(calls) == 3, every=0.01) is True
    assert len(calls) == 3


def test_never_satisfied_fails_naming_the_wait_and_the_last_reason():
    def check() -> bool:
        raise NotYet("status 403: action [cluster:monitor/health] is unauthorized")

    with pytest.raises(pytest.fail.Exception) as failure:
        wait_for("Elasticsearch datasource healthy", check, timeout=0.2, every=0.02)
    message = str(failure.value)
    assert "waiting for Elasticsearch datasource healthy" in message
    assert "cluster:monitor/health] is unauthorized" in message


def test_transport_errors_mean_not_yet():
    attempts = iter([httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), None, True])

    def check() -> bool | None:
        answer = next(attempts)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_for("a server that starts", check, timeout=5, every=0.01) is True


def test_other_exceptions_are_not_swallowed():
    def check() -> bool:
        raise KeyError("status")

    with pytest.raises(KeyError):
        wait_for("a typo in the check", check, timeout=5)


def test_long_waits_report_progress_naming_the_wait():
    lines: list[str] = []
    previous = set_progress_reporter(lines.append)
    try:
        with pytest.raises(pytest.fail.Exception):
            wait_for("Kibana", lambda: False, timeout=0.3, every=0.01, progress_every=0.05)
    finally:
        set_progress_reporter(previous)
    assert len(lines) >= 2
    assert all(line.startswith("still waiting for Kibana: ") for line in lines)


def test_a_wait_without_a_positive_timeout_is_refused():
    with pytest.raises(ValueError, match="'forever'"):
        wait_for("forever", lambda: False, timeout=0)
