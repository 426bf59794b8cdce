"""The three variants the overhead benchmark compares, all serving the same anomaly detector.

- bare: FastAPI, the same validation and model call, no instrumentation;
- mlobs: create_app (metrics, inference log line, drift counters);
- instrumentator: bare plus prometheus-fastapi-instrumentator with its defaults.
"""

# No `from __future__ import annotations` here: FastAPI must see the real request model type.

from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator
from starlette.responses import Response

from mlobs.errors import json_response
from mlobs.server import create_app
from services.anomaly_detector.model import AnomalyDetector

MODEL = AnomalyDetector.load()


def _bare() -> FastAPI:
    app = FastAPI()
    input_model = MODEL.input_model

    @app.post("/predict")
    async def predict(payload: input_model) -> Response:  # type: ignore[valid-type]
        prediction = MODEL.predict(payload)
        return json_response(
            {
                "label": prediction.label,
                "confidence": prediction.confidence,
                "model_version": MODEL.version,
                **prediction.extra,
            }
        )

    return app


def _instrumentator() -> FastAPI:
    app = _bare()
    Instrumentator().instrument(app).expose(app)
    return app


bare_app = _bare()
mlobs_app = create_app(MODEL)
instrumentator_app = _instrumentator()
