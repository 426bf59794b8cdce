"""The training baseline: per-feature bins and proportions, fitted once and shipped with the model
as JSON (`artifacts/baseline.json`, which create_app's models load)."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlobs.drift.bins import (
    MAX_CATEGORIES,
    Bins,
    CategoricalBins,
    NumericBins,
    Value,
    _checked_floats,
)
from mlobs.drift.files import write_atomically

# The feature under which a baseline tracks the model's predicted label (prediction drift).
PREDICTION_FEATURE = "prediction"
BASELINE_FORMAT = "mlobs.baseline/v1"


@dataclass(frozen=True)
class FeatureBaseline:
    """The bins of one feature and the share of the training data in each."""

    name: str
    bins: Bins
    proportions: tuple[float, ...]
    count: int

    @property
    def kind(self) -> str:
        return self.bins.kind


@dataclass(frozen=True)
class Baseline:
    """Per-feature bins and proportions, fitted once on training data, shipped with the model."""

    features: dict[str, FeatureBaseline]

    @classmethod
    def fit(
        cls,
        samples: Mapping[str, Sequence[Value]],
        bins: int = 10,
        max_categories: int = MAX_CATEGORIES,
        categorical: Collection[str] = (),
    ) -> Baseline:
        """Fit bins per feature. Features named in `categorical` are categorical, and so is any
        feature with a string value; the others are numeric (None and NaN count as missing)."""
        features = {}
        for name, values in samples.items():
            if name in categorical or any(isinstance(v, str) for v in values):
                feature_bins: Bins = CategoricalBins.fit(values, max_categories)
                counts = feature_bins.counts(values)
            else:
                array = _checked_floats(values, f"baseline feature {name!r}")
                try:
                    feature_bins, counts = NumericBins.fit_counts(array, bins)
                except ValueError as exc:
                    raise ValueError(f"baseline feature {name!r}: {exc}") from exc
            proportions = tuple(float(p) for p in counts / counts.sum())
            features[name] = FeatureBaseline(name, feature_bins, proportions, len(values))
        return cls(features)

    def to_dict(self) -> dict[str, Any]:
        out = []
        for f in self.features.values():
            entry: dict[str, Any] = {"name": f.name, "kind": f.kind, "count": f.count}
            if isinstance(f.bins, NumericBins):
                entry |= {"edges": list(f.bins.edges), "low": f.bins.low, "high": f.bins.high}
            else:
                entry["categories"] = list(f.bins.categories)
            entry["proportions"] = list(f.proportions)
            out.append(entry)
        return {"format": BASELINE_FORMAT, "features": out}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Baseline:
        """The baseline `to_dict` wrote; ValueError naming the problem otherwise."""
        if not isinstance(data, Mapping) or data.get("format") != BASELINE_FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"not a baseline: format is {found!r}, expected {BASELINE_FORMAT!r}")
        entries = data.get("features")
        if not isinstance(entries, list) or not entries:
            raise ValueError("not a baseline: `features` is not a list of at least one feature")
        features = {}
        for number, entry in enumerate(entries):
            try:
                feature = _feature_from_dict(entry)
            except KeyError as exc:
                raise ValueError(f"not a baseline: feature entry {number} has no {exc}") from exc
            except (TypeError, ValueError) as exc:  # a value of the wrong type or size
                raise ValueError(f"not a baseline: feature entry {number}: {exc}") from exc
            features[feature.name] = feature
        return cls(features)

    def save(self, path: Path) -> None:
        """Write the baseline as JSON, atomically: a reader never sees half a file."""
        write_atomically(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Baseline:
        """Read a baseline file; OSError when unreadable, ValueError naming the file otherwise."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON ({exc})") from exc
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc


def _feature_from_dict(entry: Mapping[str, Any]) -> FeatureBaseline:
    if entry["kind"] == "numeric":
        edges = tuple(float(e) for e in entry["edges"])
        bins: Bins = NumericBins(edges, float(entry["low"]), float(entry["high"]))
    elif entry["kind"] == "categorical":
        bins = CategoricalBins(tuple(entry["categories"]))
    else:
        raise ValueError(f"kind {entry['kind']!r} is neither numeric nor categorical")
    proportions = tuple(float(p) for p in entry["proportions"])
    if len(proportions) != bins.size:
        raise ValueError(
            f"baseline feature {entry['name']!r}: "
            f"{len(proportions)} proportions for {bins.size} bins"
        )
    count = int(entry["count"])
    if count < 1:  # the critical value of PSI divides by it
        raise ValueError(f"baseline feature {entry['name']!r}: count {count} is not positive")
    return FeatureBaseline(entry["name"], bins, proportions, count)
