"""The JSON error body every mlobs endpoint answers with, so clients can rely on one shape."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mlobs.logs import CURRENT_RECORD

REQUEST_ID_HEADER = b"x-request-id"


def json_response(body: Any, status_code: int = 200, request_id: str | None = None) -> Response:
    """A JSON response rendered with orjson (fast, and strict about NaN), with X-Request-ID
    when `request_id` is given."""
    response = Response(orjson.dumps(body), status_code=status_code, media_type="application/json")
    if request_id is not None:
        response.raw_headers.append((REQUEST_ID_HEADER, request_id.encode()))
    return response


def error_response(
    status_code: int, error: str, detail: str, request_id: str | None, field: str | None = None
) -> Response:
    """`{"error", "detail", "field", "request_id"}`; `field` names the offending input field."""
    body = {"error": error, "detail": detail, "field": field, "request_id": request_id}
    return json_response(body, status_code, request_id)


def retry_later_response(error: str, detail: str, request_id: str | None) -> Response:
    """503 with Retry-After: the request was shed (overloaded or stopping), try again."""
    response = error_response(503, error, detail, request_id)
    # One second: shedding lasts as long as a burst or a drain; clients back off and retry.
    response.raw_headers.append((b"retry-after", b"1"))
    return response


class BodyTooLarge(HTTPException):
    """The request body exceeds the configured limit (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit} bytes")


def _field_path(loc: tuple[Any, ...]) -> str:
    # ("body", "features", "temperature_c") -> "features.temperature_c"; the body itself -> "body"
    parts = [str(p) for p in loc[1:]] if loc and loc[0] == "body" else [str(p) for p in loc]
    return ".".join(parts) or "body"


def _mark(error_type: str, http_status: int) -> str | None:
    record = CURRENT_RECORD.get()
    if record is None:
        return None
    record.failed(error_type, http_status)
    return record.request_id


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    """422 naming the first invalid field; malformed JSON is reported as `invalid_json`."""
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        error, field = "invalid_json", "body"
        detail = f"malformed JSON: {first.get('ctx', {}).get('error', first['msg'])}"
    else:
        error, field = "invalid_input", _field_path(tuple(first.get("loc", ())))
        detail = f"{field}: {first['msg']}"
        if isinstance(first.get("input"), bytes | str) and first.get("loc") == ("body",):
            detail = "the body must be a JSON object sent with Content-Type: application/json"
    return error_response(422, error, detail, _mark(error, 422), field)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette/FastAPI HTTP errors (404, 405, 413, ...) in the common JSON shape."""
    assert isinstance(exc, HTTPException)
    error = "body_too_large" if isinstance(exc, BodyTooLarge) else f"http_{exc.status_code}"
    response = error_response(
        exc.status_code, error, str(exc.detail), _mark(error, exc.status_code)
    )
    if exc.headers:
        response.headers.update(exc.headers)
    return response
