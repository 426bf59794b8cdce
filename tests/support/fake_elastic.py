"""A small fake of the Elasticsearch and Kibana APIs that setup uses, served on loopback.

It stores what it receives, checks basic auth, and can be told to fail: enough to test that the
setup is idempotent and reports failures clearly, without the real servers (Docker tests use them).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response

from native.processes import free_port


@dataclass
class FakeElastic:
    """State and failure knobs of the fake."""

    elastic_password: str = "elastic-pw"
    unavailable_calls: int = 0  # health checks answered 503 before the cluster is "up"
    kibana_unavailable_calls: int = 0  # Kibana API calls answered 503 "not ready yet"
    fail: dict[str, tuple[int, dict]] = field(default_factory=dict)  # path -> (status, body)
    import_errors: list[dict] = field(default_factory=list)  # import answers 200, success false
    failed_imports: int | None = None  # how many imports report import_errors (None: every one)
    resources: dict[str, Any] = field(default_factory=dict)  # path -> last body
    saved_objects: dict[tuple[str, str], dict] = field(default_factory=dict)
    changes: int = 0  # writes that changed stored state
    calls: list[str] = field(default_factory=list)

    def kibana_calls(self) -> list[str]:
        """The calls that went to Kibana's API."""
        return [call for call in self.calls if call.split(" ", 1)[1].startswith("/api/")]

    def _authorized(self, request: Request) -> bool:
        expected = base64.b64encode(f"elastic:{self.elastic_password}".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}"

    def _store(self, key: Any, value: Any, table: dict) -> None:
        if table.get(key) != value:
            self.changes += 1
        table[key] = value

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def auth_and_failures(request: Request, call_next):
            self.calls.append(f"{request.method} {request.url.path}")
            if not self._authorized(request):
                return Response(
                    json.dumps(
                        {
                            "error": {
                                "type": "security_exception",
                                "reason": "unable to authenticate",
                            }
                        }
                    ),
                    401,
                    media_type="application/json",
                )
            if request.url.path in self.fail:
                status, body = self.fail[request.url.path]
                return Response(json.dumps(body), status, media_type="application/json")
            if request.url.path.startswith("/api/") and self.kibana_unavailable_calls > 0:
                # What a starting Kibana answers on every API (text, not JSON).
                self.kibana_unavailable_calls -= 1
                return Response("Kibana server is not ready yet", 503, media_type="text/plain")
            return await call_next(request)

        @app.get("/_cluster/health")
        async def health() -> Response:
            if self.unavailable_calls > 0:
                self.unavailable_calls -= 1
                return Response('{"status":"red"}', 503, media_type="application/json")
            return Response('{"status":"green"}', media_type="application/json")

        @app.api_route("/{path:path}", methods=["PUT", "POST"])
        async def write(path: str, request: Request) -> dict:
            if path == "api/saved_objects/_import":
                return await self._import(request)
            self._store(f"/{path}", await request.json(), self.resources)
            return {"acknowledged": True}

        return app

    async def _import(self, request: Request) -> dict:
        if (
            request.query_params.get("overwrite") != "true"
            or request.headers.get("kbn-xsrf") is None
        ):
            return {
                "success": False,
                "errors": [{"type": "?", "id": "?", "error": {"type": "bad request"}}],
            }
        form = await request.form()
        lines = (await form["file"].read()).decode().splitlines()
        objects = [json.loads(line) for line in lines if line.strip()]
        if self.import_errors and self.failed_imports != 0:
            if self.failed_imports is not None:
                self.failed_imports -= 1
            return {"success": False, "successCount": 0, "errors": self.import_errors}
        for obj in objects:
            self._store((obj["type"], obj["id"]), obj, self.saved_objects)
        return {"success": True, "successCount": len(objects), "successResults": []}


@contextmanager
def serve_fake(fake: FakeElastic) -> Iterator[str]:
    """Run the fake on a free loopback port; yields its base URL; stops it afterwards."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="error", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("fake Elastic server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
