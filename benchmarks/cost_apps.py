"""The model-cost sweep's servers: one synthetic model of a chosen cost, served three ways.

The environment sets the work: MODEL_WORK `numpy` (matrix products, which release the GIL like
most native model code) or `python` (a pure-Python loop, which holds it), MODEL_REPS repetitions
(calibrated by benchmarks/model_cost.py to a target time). The apps:

- seed: the seed's pattern, an `async def` endpoint calling predict on the event loop;
- fastapi_def: a plain FastAPI `def` endpoint, which FastAPI runs in its thread pool;
- mlobs: create_app with its defaults (a synchronous predict runs in mlobs' bounded pool).
"""

# No `from __future__ import annotations` here: FastAPI must see the real request model type.

import os
import time
from typing import Any

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.responses import Response

from mlobs.errors import json_response
from mlobs.model import Prediction
from mlobs.server import create_app

_MATRIX = np.random.default_rng(0).random((96, 96))


def work(kind: str, reps: int) -> float:
    """`reps` units of the chosen kind of work."""
    if kind == "numpy":
        total = 0.0
        for _ in range(reps):
            total += float((_MATRIX @ _MATRIX)[0, 0])
        return total
    acc = 0
    for i in range(reps * 1000):
        acc += i * i % 7
    return float(acc)


def calibrate(kind: str, milliseconds: float) -> int:
    """Repetitions of `work(kind, .)` that take about `milliseconds` on this machine."""
    reps = 1
    while True:
        start = time.perf_counter()
        work(kind, reps)
        elapsed = time.perf_counter() - start
        if elapsed > 0.05:
            return max(1, round(reps * milliseconds / 1000.0 / elapsed))
        reps *= 2


class CostRequest(BaseModel):
    x: float


class CostModel:
    """A model whose predict does MODEL_REPS units of MODEL_WORK."""

    name = "cost-model"
    version = "1.0.0"
    labels = ("ok",)
    input_model = CostRequest
    baseline = None

    def __init__(self) -> None:
        self.kind = os.environ.get("MODEL_WORK", "numpy")
        self.reps = int(os.environ.get("MODEL_REPS", "1"))

    def input_schema(self) -> dict[str, Any]:
        return {"x": "a number"}

    def example_input(self) -> CostRequest:
        return CostRequest(x=1.0)

    def predict(self, payload: CostRequest) -> Prediction:
        work(self.kind, self.reps)
        return Prediction(label="ok", confidence=0.9)


def _answer(prediction: Prediction) -> Response:
    return json_response({"label": prediction.label, "confidence": prediction.confidence})


def _with_health(app: FastAPI) -> FastAPI:
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _seed() -> FastAPI:
    app, model = FastAPI(), CostModel()

    @app.post("/predict")
    async def predict(payload: CostRequest) -> Response:
        return _answer(model.predict(payload))

    return _with_health(app)


def _fastapi_def() -> FastAPI:
    app, model = FastAPI(), CostModel()

    @app.post("/predict")
    def predict(payload: CostRequest) -> Response:
        return _answer(model.predict(payload))

    return _with_health(app)


APPS = {"seed": _seed, "fastapi_def": _fastapi_def, "mlobs": lambda: create_app(CostModel())}


def __getattr__(name: str) -> Any:
    # Apps are built when uvicorn asks for one: each server process builds only its own.
    if name.endswith("_app") and name[: -len("_app")] in APPS:
        return APPS[name[: -len("_app")]]()
    raise AttributeError(name)
