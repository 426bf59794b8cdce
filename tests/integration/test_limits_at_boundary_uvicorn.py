"""The body limit over a real connection to uvicorn: a body announced over the limit is refused
before the client sends it, and a chunked one is counted as uvicorn hands over its pieces.

Raw sockets, because an HTTP client library sends the body it was given before it reads an
answer. The in-process side of these limits is in tests/unit/test_limits_at_boundary.py.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from http.client import HTTPResponse
from pathlib import Path

import pytest

from native.processes import Service, free_port, model_server_spec, start_all, stop_all
from tests.support.http import log_events
from tests.support.waiting import wait_for
from tests.unit.test_limits_at_boundary import in_chunks, padded_body

pytestmark = pytest.mark.integration
LIMIT = 300  # MLOBS_MAX_BODY_BYTES, set through the environment as an operator would
WAIT_SECONDS = 30  # the longest any answer may take on a busy machine


class Server:
    def __init__(self, port: int, log_file: Path) -> None:
        self.port, self.log_file = port, log_file

    def exchange(self, head: bytes, body: bytes = b"") -> tuple[int, dict]:
        """Send a request head (and `body`, if any) on a new connection; the answer's status and
        JSON body."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=WAIT_SECONDS) as sock:
            sock.sendall(head + body)
            response = HTTPResponse(sock)
            response.begin()
            return response.status, json.loads(response.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("limits")
    port = free_port()
    log_file = folder / "chatbot.log"
    env = {"MLOBS_MAX_BODY_BYTES": str(LIMIT), "MLOBS_LOG_FILE": str(log_file)}
    spec = model_server_spec("chatbot", "services.chatbot.app:app", port, env)
    started: list[Service] = start_all([spec], folder / "out")
    yield Server(port, log_file)
    stop_all(started)


def _head(port: int, **headers: str) -> bytes:
    lines = [
        "POST /predict HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        "Connection: close",
        *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_body_announced_over_the_limit_is_refused_before_it_is_sent(server):
    """Nothing of the body is sent: the answer can only come from the Content-Length."""
    status, answer = server.exchange(_head(server.port, Content_Length=str(LIMIT + 1)))
    assert status == 413 and answer["error"] == "body_too_large"
    assert str(LIMIT) in answer["detail"]


@pytest.mark.parametrize("offset", [-1, 0], ids=["limit-1", "limit"])
def test_a_body_announced_within_the_limit_is_read_and_served(server, offset):
    body = padded_body(LIMIT + offset)
    status, answer = server.exchange(_head(server.port, Content_Length=str(len(body))), body)
    assert status == 200, answer


def _chunked(pieces: list[bytes]) -> bytes:
    encoded = [f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces]
    return b"".join(encoded) + b"0\r\n\r\n"


@pytest.mark.parametrize(
    ("offset", "status"), [(-1, 200), (0, 200), (1, 413)], ids=["limit-1", "limit", "limit+1"]
)
def test_a_chunked_body_is_counted_across_its_chunks(server, offset, status):
    request_id = f"chunked-{offset + 1}"
    body = padded_body(LIMIT + offset)
    head = _head(server.port, Transfer_Encoding="chunked", X_Request_ID=request_id)
    answered, answer = server.exchange(head, _chunked(in_chunks(body, LIMIT // 5)))
    assert answered == status, answer

    def logged() -> list[dict]:
        return [e for e in log_events(server.log_file) if e["request_id"] == request_id]

    [event] = wait_for(f"the log line of {request_id}", logged, timeout=WAIT_SECONDS)
    assert event["status"] == ("success" if status == 200 else "client_error")
