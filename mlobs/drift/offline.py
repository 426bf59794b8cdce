"""Drift of an inference log against a baseline, offline: the report GET /drift gives, from the
`inference` lines a model server wrote (mlobs.logs.InferenceLog) instead of live requests.

Each successful prediction's `features` and `prediction` are counted exactly as the server's
DriftMonitor counts them (the same monitor does it), so the statistics are those /drift would
report for the same requests. The report covers every counted line; its window is the time
between the first and the last of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlobs.drift.baseline import PREDICTION_FEATURE, Baseline
from mlobs.drift.files import InputError, json_lines
from mlobs.drift.monitor import DEFAULT_MIN_SAMPLES, DEFAULT_PSI_THRESHOLD, DriftMonitor
from mlobs.drift.report import DriftReport

# mlobs.logs.INFERENCE, the message of the one event per request: a copy, because importing
# mlobs.logs (structlog) would add about 0.1 s to every start of the command.
INFERENCE = "inference"
SUCCESS = "success"  # the outcome of the requests a server counts for drift
# The types of JSON values with a bin (orjson reads the others as lists and dicts).
_SCALARS = frozenset({str, int, float, bool, type(None)})


@dataclass(frozen=True)
class LogDrift:
    """The drift of one model version's logged predictions."""

    model: str
    model_version: str
    predictions: int
    first: datetime | None  # timestamps of the earliest and latest counted line
    last: datetime | None
    absent_features: list[str]  # baseline features no counted line has: all counted as missing
    report: DriftReport


class _Predictions:
    """The counted lines of one model version."""

    def __init__(self, baseline: Baseline, psi_threshold: float, min_samples: int) -> None:
        # Never rolls over: the report covers the whole log.
        self.monitor = DriftMonitor(
            baseline,
            window_seconds=math.inf,
            psi_threshold=psi_threshold,
            min_samples=min_samples,
            batch_size=65_536,
        )
        self.count = 0
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.keys: set[str] = set()

    def add(self, features: dict[str, Any], prediction: Any, when: datetime | None) -> None:
        self.monitor.observe(features, prediction)
        self.count += 1
        self.keys.update(features)
        if prediction is not None:
            self.keys.add(PREDICTION_FEATURE)
        if when is not None:
            self.first = when if self.first is None else min(self.first, when)
            self.last = when if self.last is None else max(self.last, when)

    def report(self) -> DriftReport:
        """The monitor's report, its window the time between the first and the last line."""
        first, last = self.first, self.last
        window = (last - first).total_seconds() if first is not None and last is not None else 0.0
        return replace(self.monitor.report(), window_seconds=window)


def log_drift(
    baseline: Baseline,
    paths: Sequence[Path],
    *,
    psi_threshold: float = DEFAULT_PSI_THRESHOLD,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    model: str | None = None,
    model_version: str | None = None,
) -> LogDrift:
    """Drift of the successful predictions logged in `paths` (e.g. a log and its rotated files).

    `model` and `model_version` choose the lines to count; without them the files must hold one
    model version. InputError naming the file and line for a malformed line, an empty or
    unreadable file, or nothing to count.
    """
    found: dict[tuple[str, str], _Predictions] = {}
    for path, number, line in _lines(paths):
        if line.get("message") != INFERENCE or line.get("status") != SUCCESS:
            continue  # other events, failed requests: the server counts neither
        key = (str(line.get("model")), str(line.get("model_version")))
        if (model is not None and key[0] != model) or (
            model_version is not None and key[1] != model_version
        ):
            continue
        features = line.get("features") or {}
        if not isinstance(features, dict):
            raise InputError(f"{path} line {number}: `features` is not a JSON object")
        prediction = line.get("prediction")
        _check_values(features, prediction, path, number)
        when = _timestamp(line.get("timestamp"), path, number)
        if key not in found:
            found[key] = _Predictions(baseline, psi_threshold, min_samples)
        found[key].add(features, prediction, when)
    (name, version), predictions = _only(found, paths, model, model_version)
    absent = [feature for feature in baseline.features if feature not in predictions.keys]
    return LogDrift(
        name,
        version,
        predictions.count,
        predictions.first,
        predictions.last,
        absent,
        predictions.report(),
    )


def _lines(paths: Iterable[Path]) -> Iterable[tuple[Path, int, dict[str, Any]]]:
    for path in paths:
        for number, line in json_lines(path):
            yield path, number, line


def _check_values(features: dict[str, Any], prediction: Any, path: Path, number: int) -> None:
    """InputError for a JSON array or object among a line's features and prediction: servers log
    numbers and strings, and only values like them have a bin."""
    if type(prediction) in _SCALARS and _SCALARS.issuperset(map(type, features.values())):
        return  # the usual case, checked without a Python loop
    values = [
        *((f"feature {name!r}", v) for name, v in features.items()),
        ("`prediction`", prediction),
    ]
    what, value = next((what, v) for what, v in values if type(v) not in _SCALARS)
    kind = "an array" if isinstance(value, list) else "an object"
    raise InputError(f"{path} line {number}: {what} is {kind}, not a number, a string or null")


def _timestamp(value: Any, path: Path, number: int) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path} line {number}: timestamp {value!r} is not ISO 8601") from exc
    # The servers write UTC with a Z; a time without a zone is taken as UTC too, and one with
    # another offset is converted, since the report prints UTC.
    return when.astimezone(UTC) if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _only(
    found: dict[tuple[str, str], _Predictions],
    paths: Sequence[Path],
    model: str | None,
    model_version: str | None,
) -> tuple[tuple[str, str], _Predictions]:
    """The one model version found; InputError when there is none or several."""
    where = ", ".join(str(p) for p in paths)
    if not found:
        chosen = " ".join(
            f"{option} {value}"
            for option, value in (("--model", model), ("--model-version", model_version))
            if value is not None
        )
        chosen = f" of {chosen}" if chosen else ""
        raise InputError(f"no successful inference events{chosen} in {where}")
    if len(found) > 1:
        names = {name for name, _ in found}
        option = "--model" if len(names) > 1 else "--model-version"
        listed = ", ".join(f"{name} {version}" for name, version in sorted(found))
        raise InputError(f"{where} holds predictions of {listed}: choose one with {option}")
    [(key, predictions)] = found.items()
    return key, predictions
