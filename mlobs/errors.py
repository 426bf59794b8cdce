"""The JSON error body every mlobs endpoint answers with, so clients can rely on one shape."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mlobs.logs import CURRENT_RECORD


def json_response(body: Any, status_code: int = 200) -> Response:
    """A JSON response rendered with orjson (fast, and strict about NaN)."""
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


def error_response(
    status_code: int, error: str, detail: str, request_id: str | None, field: str | None = None
) -> Response:
    """`{"error", "detail", "field", "request_id"}`; `field` names the offending input field."""
    body = {"error": error, "detail": detail, "field": field, "request_id": request_id}
    return json_response(body, status_code)


class BodyTooLarge(HTTPException):
    """The request body exceeds the configured limit (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit} bytes")


def _field_path(loc: tuple[Any, ...]) -> str:
    # ("body", "features", "temperature_c") -> "features.temperature_c"; the body itself -> "body"
    parts = [str(p) for p in loc[1:]] if loc and loc[0] == "body" else [str(p) for p in loc]
    return ".".join(parts) or "body"


def _mark(error_type: str) -> str | None:
    record = CURRENT_RECORD.get()
    if record is None:
        return None
    record.error_type = error_type
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
    return error_response(422, error, detail, _mark(error), field)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette/FastAPI HTTP errors (404, 405, 413, ...) in the common JSON shape."""
    assert isinstance(exc, HTTPException)
    error = "body_too_large" if isinstance(exc, BodyTooLarge) else f"http_{exc.status_code}"
    response = error_response(exc.status_code, error, str(exc.detail), _mark(error))
    if exc.headers:
        response.headers.update(exc.headers)
    return response
