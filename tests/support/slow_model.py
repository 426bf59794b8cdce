"""A model that takes its time, served like a user's own: `uvicorn tests.support.slow_model:app`.

It stands in for a PyTorch or scikit-learn call. The environment chooses how slow it is and how
it computes: SLOW_MODEL_SECONDS (default 0.2) and SLOW_MODEL_KIND:
- `sleep`: a synchronous predict that blocks its thread (releases the GIL, like native code);
- `async`: an `async def predict` that awaits;
- `inline`: a synchronous predict that opts in to running on the event loop.
A message of "fail" makes predict raise, to show that an abandoned prediction's error is harmless.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from mlobs.model import Prediction
from mlobs.server import create_app


class SlowRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str


class SlowModel:
    """A synchronous predict that takes `seconds`."""

    name = "slow-model"
    version = "1.0.0"
    labels = ("done",)
    input_model = SlowRequest
    baseline = None

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def input_schema(self) -> dict[str, Any]:
        return {"message": "any text"}

    def example_input(self) -> SlowRequest:
        return SlowRequest(message="warm-up")

    def predict(self, payload: SlowRequest) -> Prediction:
        time.sleep(self.seconds)
        return self._answer(payload)

    @staticmethod
    def _answer(payload: SlowRequest) -> Prediction:
        if payload.message == "fail":
            raise RuntimeError("the model failed")
        return Prediction(label="done", confidence=0.9)


class InlineSlowModel(SlowModel):
    """Opts in to running on the event loop (right only for microsecond models)."""

    inline_predict = True


class AsyncSlowModel(SlowModel):
    """An `async def predict`, awaited by the server."""

    async def predict(self, payload: SlowRequest) -> Prediction:  # type: ignore[override]
        await asyncio.sleep(self.seconds)
        return self._answer(payload)


KINDS = {"sleep": SlowModel, "inline": InlineSlowModel, "async": AsyncSlowModel}


def build() -> SlowModel:
    """The model the environment describes."""
    kind = KINDS[os.environ.get("SLOW_MODEL_KIND", "sleep")]
    return kind(float(os.environ.get("SLOW_MODEL_SECONDS", "0.2")))


def __getattr__(name: str) -> Any:
    # `app` is built when the server asks for it, so tests can import the classes alone.
    if name == "app":
        return create_app(build())
    raise AttributeError(name)
