"""The committed spec with short windows and `for` durations, so alerts fire within a test run."""

from __future__ import annotations

from mlobs.spec import Spec, load_spec
from tests.conftest import REPO

SHORT_SPEC_CHANGES = {
    "latency": {"window": "10s", "for": "2s"},
    "error_rate": {"window": "10s", "for": "2s"},
    "drift": {"window": "20s", "for": "2s", "min_samples": 50},
    "low_confidence": {"window": "10s", "for": "2s"},
    "server_down": {"for": "2s"},
    "no_traffic": {"window": "10s", "for": "5s"},
}


def short_spec(changes: dict[str, dict] | None = None) -> Spec:
    """The spec of observability.yaml with `changes` (default SHORT_SPEC_CHANGES) applied."""
    data = load_spec(REPO / "observability.yaml").model_dump(by_alias=True)
    for alert, values in (changes or SHORT_SPEC_CHANGES).items():
        data["alerts"][alert].update(values)
    return Spec.model_validate(data)
