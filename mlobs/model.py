"""What create_app needs from a model: the ServedModel protocol and the Prediction it returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel

if TYPE_CHECKING:
    from mlobs.drift import Baseline


@dataclass(frozen=True, slots=True)
class Prediction:
    """One model answer.

    `features` are the numeric values that describe the input (raw inputs or derived ones such as
    message length); they are logged and counted for drift. `extra` holds model-specific response
    fields such as `score` or `reply`.
    """

    label: str
    confidence: float
    features: Mapping[str, float] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


class InvalidPrediction(ValueError):
    """The model answered outside the Prediction contract (a confidence that is not a number in
    [0, 1]): a bug of the model, answered 500 and logged with this as its error_type."""


@runtime_checkable
class ServedModel(Protocol):
    """A model that create_app can serve.

    Where `predict` runs (mlobs.runner):
    - `async def predict`: awaited on the event loop; it must not block (await I/O, or hand
      heavy work to a thread or process pool of its own);
    - `def predict` (the default): run in a bounded thread pool, MLOBS_PREDICT_CONCURRENCY threads,
      so a slow model never stalls health checks, scrapes or other requests. numpy, PyTorch,
      scikit-learn and most native code release the GIL, so the threads run in parallel;
    - `def predict` with the class attribute `inline_predict = True`: called on the event loop,
      which saves the hand-over to a thread. Only for a predict that takes microseconds: while it
      runs, nothing else in the process is served; it is neither limited nor timed out.
    Awaited and threaded predictions share the concurrency limit, the wait queue (503 when full)
    and the timeout (504); see Settings.
    """

    name: str
    version: str
    labels: tuple[str, ...]
    input_model: type[BaseModel]
    baseline: Baseline | None

    def input_schema(self) -> dict[str, Any]:
        """Human-readable description of the accepted input, shown at GET /model."""
        ...

    def example_input(self) -> BaseModel:
        """A valid input, used to warm the model up before readiness and in the API docs."""
        ...

    def predict(self, payload: BaseModel) -> Prediction:
        """Answer one validated request."""
        ...
