"""Generated requests over both servers' OpenAPI schemas (valid and invalid): never a 5xx."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from mlobs.server import create_app
from mlobs.settings import Settings
from services.anomaly_detector.model import AnomalyDetector
from services.chatbot.model import Chatbot

_SETTINGS = Settings(faults_enabled=True)  # the admin routes are fuzzed too
_MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
anomaly_schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(AnomalyDetector.load(), _SETTINGS)
)
chatbot_schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(Chatbot.load(), _SETTINGS)
)
for schema in (anomaly_schema, chatbot_schema):
    schema.config.generation.update(modes=_MODES)

_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@anomaly_schema.parametrize()
@_FUZZ
def test_anomaly_detector_never_answers_5xx(case):
    case.call_and_validate(checks=[not_a_server_error])


@chatbot_schema.parametrize()
@_FUZZ
def test_chatbot_never_answers_5xx(case):
    case.call_and_validate(checks=[not_a_server_error])
