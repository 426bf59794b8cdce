"""What a client reads in a 422: the reason a body is not JSON, the exact field, and the words.

The first test goes through a model server (create_app). Its only inputs are JSON bodies, so the
handler's other cases (a query or path parameter, a validation error without details) are
reached by mounting mlobs' validation handler in a small FastAPI app, as an app that reuses it
would.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient

from mlobs.errors import validation_error_handler
from tests.support.http import log_events, sample


def test_a_body_that_is_not_json_says_where_the_parser_stopped(serve, chatbot_model, log_file):
    """The client is told why its JSON does not parse (the parser's own words), not a generic
    "JSON decode error"; the request is counted and logged as a client error."""
    cases = {
        b"hello": "malformed JSON: Expecting value",
        b'{"message": "hi"': "malformed JSON: Expecting ',' delimiter",
    }
    with serve(chatbot_model) as client:
        answers = {
            body: client.post(
                "/predict",
                content=body,
                headers={"content-type": "application/json", "x-request-id": f"bad-{i}"},
            )
            for i, body in enumerate(cases)
        }
        text = client.get("/metrics").text
    for i, (body, detail) in enumerate(cases.items()):
        assert answers[body].status_code == 422
        assert answers[body].json() == {
            "error": "invalid_json",
            "detail": detail,
            "field": "body",
            "request_id": f"bad-{i}",
        }
    mv = {"model": "chatbot", "model_version": chatbot_model.version}
    assert sample(text, "model_requests_total", **mv, status="client_error") == len(cases)
    events = log_events(log_file)
    logged = [(e["status"], e["error_type"]) for e in events]
    assert logged == [("client_error", "invalid_json")] * len(cases)


def _app_reusing_the_handler() -> FastAPI:
    app = FastAPI(exception_handlers={RequestValidationError: validation_error_handler})

    @app.get("/items/{item_id}")
    async def item(item_id: int, limit: int = 10) -> dict[str, int]:
        return {"item_id": item_id, "limit": limit}

    @app.get("/unexplained")
    async def unexplained() -> None:
        raise RequestValidationError([])  # a validation failure that names nothing

    return app


def test_a_bad_query_or_path_parameter_is_named_with_where_it_was_sent() -> None:
    """Outside the body the location stays in the field: `query.limit`, not a bare `limit`
    that could be mistaken for a body field."""
    with TestClient(_app_reusing_the_handler()) as client:
        query = client.get("/items/3", params={"limit": "many"})
        path = client.get("/items/three")
        fine = client.get("/items/3", params={"limit": "2"})
    not_an_integer = "Input should be a valid integer, unable to parse string as an integer"
    assert (query.status_code, path.status_code, fine.status_code) == (422, 422, 200)
    assert query.json() == {
        "error": "invalid_input",
        "detail": f"query.limit: {not_an_integer}",
        "field": "query.limit",
        "request_id": None,
    }
    assert path.json() == {
        "error": "invalid_input",
        "detail": f"path.item_id: {not_an_integer}",
        "field": "path.item_id",
        "request_id": None,
    }


def test_a_validation_error_without_details_still_gets_the_common_answer() -> None:
    with TestClient(_app_reusing_the_handler(), raise_server_exceptions=False) as client:
        response = client.get("/unexplained")
    assert response.status_code == 422
    assert response.json() == {
        "error": "invalid_input",
        "detail": "body: invalid request",
        "field": "body",
        "request_id": None,
    }
