"""The anomaly detector: robust Mahalanobis distance with a calibrated threshold and confidence."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model

from mlobs.drift import Baseline
from mlobs.model import Prediction

NAME = "anomaly-detector"
LABELS = ("normal", "anomaly")
ARTIFACTS = Path(__file__).parent / "artifacts"
MODEL_FILE = ARTIFACTS / "model.json"
BASELINE_FILE = ARTIFACTS / "baseline.json"

# Strict: "12" or true are not sensor readings; NaN and infinity are rejected with the field name.
Reading = Annotated[float, Field(strict=True, allow_inf_nan=False)]


def request_model(features: tuple[str, ...], example: dict[str, float]) -> type[BaseModel]:
    """The /predict body `{"features": {<name>: <number>, ...}}`, every feature required."""
    readings = create_model(
        "SensorReadings",
        __config__=ConfigDict(extra="forbid"),
        **{name: (Reading, ...) for name in features},
    )
    return create_model(
        "AnomalyRequest",
        __config__=ConfigDict(
            extra="forbid", json_schema_extra={"examples": [{"features": example}]}
        ),
        features=(readings, ...),
    )


@dataclass(frozen=True)
class DetectorParams:
    """What training produces; serialised to artifacts/model.json."""

    version: str
    features: tuple[str, ...]
    center: tuple[float, ...]
    precision: tuple[tuple[float, ...], ...]  # inverse of the robust covariance
    threshold: float  # Mahalanobis distance above which a reading is an anomaly
    steepness: float  # logistic slope that turns distance into P(anomaly), fitted on held-out data
    example: dict[str, float]
    training_sample: dict[str, list[float]] = field(repr=False)

    def to_json(self) -> str:
        data = {
            "model": NAME,
            "version": self.version,
            "features": list(self.features),
            "center": list(self.center),
            "precision": [list(row) for row in self.precision],
            "threshold": self.threshold,
            "steepness": self.steepness,
            "example": self.example,
            "training_sample": self.training_sample,
        }
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> DetectorParams:
        data = json.loads(text)
        return cls(
            version=data["version"],
            features=tuple(data["features"]),
            center=tuple(data["center"]),
            precision=tuple(tuple(row) for row in data["precision"]),
            threshold=data["threshold"],
            steepness=data["steepness"],
            example=data["example"],
            training_sample=data["training_sample"],
        )


def mahalanobis(x: np.ndarray, center: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Mahalanobis distance of each row of x."""
    diff = np.atleast_2d(x) - center
    return np.sqrt(np.einsum("ij,jk,ik->i", diff, precision, diff))


def anomaly_probability(distance: np.ndarray | float, threshold: float, steepness: float) -> Any:
    """P(anomaly) as a logistic function of the distance, exactly 0.5 at the threshold."""
    return 1.0 / (1.0 + np.exp(-steepness * (np.asarray(distance) - threshold)))


class AnomalyDetector:
    """Serves DetectorParams through the mlobs ServedModel protocol."""

    name = NAME
    labels = LABELS
    # predict takes about 0.1 ms: handing it to a thread would cost more than it does
    # (benchmarks/instructions.py: 0.66 x bare's work per request in a thread, 0.87 inline).
    inline_predict = True

    def __init__(self, params: DetectorParams, baseline: Baseline | None = None) -> None:
        self.params = params
        self.version = params.version
        self.baseline = baseline
        self._center = np.asarray(params.center)
        self._precision = np.asarray(params.precision)
        self.input_model = request_model(params.features, params.example)

    @classmethod
    def load(
        cls, model_file: Path = MODEL_FILE, baseline_file: Path = BASELINE_FILE
    ) -> AnomalyDetector:
        """Load the committed artifacts; a missing one names the command that builds it."""
        for path in (model_file, baseline_file):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing: run `python -m services.anomaly_detector.train`"
                )
        return cls(DetectorParams.from_json(model_file.read_text()), Baseline.load(baseline_file))

    def input_schema(self) -> dict[str, Any]:
        return {"features": list(self.params.features), "type": "number", "finite": True}

    def example_input(self) -> BaseModel:
        return self.input_model.model_validate({"features": self.params.example})

    def score(self, readings: np.ndarray) -> np.ndarray:
        """Robust Mahalanobis distance of each row (columns in feature order)."""
        return mahalanobis(readings, self._center, self._precision)

    def predict(self, payload: BaseModel) -> Prediction:
        values = payload.features.model_dump()  # type: ignore[attr-defined]
        row = np.fromiter(
            (values[f] for f in self.params.features), float, len(self.params.features)
        )
        distance = float(self.score(row)[0])
        p_anomaly = float(
            anomaly_probability(distance, self.params.threshold, self.params.steepness)
        )
        is_anomaly = distance > self.params.threshold
        confidence = p_anomaly if is_anomaly else 1.0 - p_anomaly
        return Prediction(
            label=LABELS[1] if is_anomaly else LABELS[0],
            confidence=round(confidence, 6) if math.isfinite(confidence) else 1.0,
            features=values,
            extra={"score": round(distance, 6), "threshold": self.params.threshold},
        )
