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


@runtime_checkable
class ServedModel(Protocol):
    """A model that create_app can serve."""

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
