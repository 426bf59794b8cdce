"""`observability.yaml`: the one spec holding every model, threshold, window and severity.

`make generate` renders Prometheus rules (and Grafana alert rules) from it; model servers read the
drift threshold and window from it. Unknown keys and out-of-range values fail with the key's path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mlobs.metrics import CONFIDENCE_BUCKETS, LATENCY_BUCKETS

DEFAULT_SPEC_PATH = Path("observability.yaml")
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(duration: str) -> float:
    """Seconds in a Prometheus duration such as `30s`, `5m` or `1h`."""
    match = _DURATION.match(duration)
    if not match:
        raise ValueError(f"{duration!r} is not a duration like 30s, 5m or 1h")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def _positive_duration(value: str) -> str:
    if duration_seconds(value) <= 0:
        raise ValueError("must be longer than 0")
    return value


Duration = Annotated[str, AfterValidator(_positive_duration)]
BaseUrl = Annotated[str, AfterValidator(lambda url: url.rstrip("/"))]
Severity = Literal["critical", "warning", "info"]
Ratio = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$")]
    port: Annotated[int, Field(ge=1, le=65535)]
    description: str = ""


class LatencyAlert(_Strict):
    """p99 of model_latency_seconds over `window` above `threshold_seconds`."""

    threshold_seconds: PositiveFloat
    window: Duration
    for_: Duration = Field(alias="for")
    severity: Severity


class ErrorRateAlert(_Strict):
    threshold_ratio: Ratio
    # Below this many requests per second in the window, a ratio is noise, not an incident.
    min_request_rate: PositiveFloat
    window: Duration
    for_: Duration = Field(alias="for")
    severity: Severity


class DriftAlert(_Strict):
    psi_threshold: PositiveFloat
    window: Duration
    # PSI of a handful of requests is noise: below this many values in the window, no PSI.
    min_samples: Annotated[int, Field(ge=1)]
    for_: Duration = Field(alias="for")
    severity: Severity


class LowConfidenceAlert(_Strict):
    """Share of predictions with confidence at or below `confidence_threshold` above `max_share`."""

    confidence_threshold: Ratio
    max_share: Ratio
    window: Duration
    for_: Duration = Field(alias="for")
    severity: Severity


class ServerDownAlert(_Strict):
    """A model server that cannot be scraped (ModelServerDown) or has no scrape target at all
    (ModelServerMissing: with DNS discovery a stopped container vanishes instead of going down);
    both alerts use this `for` and severity."""

    for_: Duration = Field(alias="for")
    severity: Severity


class NoTrafficAlert(_Strict):
    window: Duration
    for_: Duration = Field(alias="for")
    severity: Severity


def _bucket_boundary(value: float, buckets: tuple[float, ...], metric: str) -> None:
    if value not in buckets:
        raise ValueError(
            f"{value:g} is not a bucket boundary of {metric} "
            f"({', '.join(f'{b:g}' for b in buckets)}): the alert would be decided by "
            "interpolation inside a bucket"
        )


class Alerts(_Strict):
    latency: LatencyAlert
    error_rate: ErrorRateAlert
    drift: DriftAlert
    low_confidence: LowConfidenceAlert
    server_down: ServerDownAlert
    no_traffic: NoTrafficAlert

    def severities(self) -> list[str]:
        """The severities the alerts use, sorted."""
        return sorted({getattr(self, name).severity for name in type(self).model_fields})

    @field_validator("latency")
    @classmethod
    def _latency_on_boundary(cls, latency: LatencyAlert) -> LatencyAlert:
        _bucket_boundary(latency.threshold_seconds, LATENCY_BUCKETS, "model_latency_seconds")
        return latency

    @field_validator("low_confidence")
    @classmethod
    def _confidence_on_boundary(cls, low: LowConfidenceAlert) -> LowConfidenceAlert:
        _bucket_boundary(low.confidence_threshold, CONFIDENCE_BUCKETS, "model_confidence")
        return low


class Spec(_Strict):
    """The whole observability spec."""

    models: Annotated[list[ModelSpec], Field(min_length=1)]
    alerts: Alerts
    # Base URLs as seen from the browser of the person on call; each alert links to the dashboard
    # that explains it (mlobs.generate.links). Links append paths: a trailing slash would double.
    grafana_url: BaseUrl = "http://localhost:3000"
    kibana_url: BaseUrl = "http://localhost:5601"

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: object) -> object:
        if isinstance(data, dict) and "dashboard_url" in data:
            raise ValueError(
                "dashboard_url was replaced by grafana_url, Grafana's base URL (e.g. "
                "http://localhost:3000): each alert now links to its own dashboard"
            )
        return data


class SpecError(ValueError):
    """The spec file is missing or invalid; the message names the file and the offending key."""


def load_spec(path: Path = DEFAULT_SPEC_PATH) -> Spec:
    """Read and validate the spec; raise SpecError naming the key of the first problem."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SpecError(f"{path}: {problems}") from None
