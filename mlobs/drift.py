"""Drift against the training baseline: bins, PSI/KS/JS, critical values and a streaming monitor.

Numeric features get inner bin edges at baseline quantiles and open outer edges, so values outside
the training range land in the outer bins instead of being dropped (the `np.histogram(range=...)`
recipe drops exactly them), plus a bin for missing values. Bins are right-closed: (e[i-1], e[i]].
Categorical features get the baseline vocabulary plus `__other__` and `__missing__`.
Counts add up across windows, replicas and workers, so PSI from summed counts is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal, Protocol

import numpy as np

PROPORTION_FLOOR = 1e-4
MISSING_BIN = "missing"
OTHER_CATEGORY = "__other__"
MISSING_CATEGORY = "__missing__"
MAX_CATEGORIES = 20
# The feature under which a baseline tracks the model's predicted label (prediction drift).
PREDICTION_FEATURE = "prediction"
BASELINE_FORMAT = "mlobs.baseline/v1"

Value = float | int | str | None


def _fmt(x: float) -> str:
    return "inf" if x == math.inf else "-inf" if x == -math.inf else f"{x:.4g}"


def _float_array(values: Iterable[Value]) -> np.ndarray:
    """Values as a float array, None as NaN (numpy converts None itself for float dtype)."""
    if not isinstance(values, np.ndarray | list | tuple):
        values = list(values)
    return np.asarray(values, dtype=float)


def _as_float(value: Value) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _live_float_array(values: list[Value] | np.ndarray) -> np.ndarray:
    """Live values as floats, as float() reads them ("1.5" too); the rest is missing (NaN)."""
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError):  # e.g. a word where a number belongs: that value only
        return np.array([_as_float(v) for v in values])


def _finite(values: Iterable[Value], what: str) -> tuple[np.ndarray, np.ndarray]:
    """All values as floats (missing as NaN) and the finite ones; ValueError when none is finite."""
    array = _float_array(values)
    if array.size == 0:
        raise ValueError(f"{what} is empty: drift needs at least one value")
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        raise ValueError(f"{what} has no finite value: every value is missing, NaN or infinite")
    return array, finite


@dataclass(frozen=True)
class NumericBins:
    """Right-closed bins (-inf, e0], (e0, e1], ..., (e_last, +inf) and a last bin for missing."""

    edges: tuple[float, ...]
    low: float  # training minimum and maximum: values outside count as out of range
    high: float
    kind: Literal["numeric"] = "numeric"

    @classmethod
    def fit(cls, finite: np.ndarray, bins: int) -> NumericBins:
        """Inner edges at the quantiles of `finite` values; equal quantiles are merged."""
        if bins < 2:
            raise ValueError(f"bins={bins}: need at least 2 bins")
        quantiles = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1])
        edges = tuple(float(e) for e in np.unique(quantiles))
        return cls(edges=edges, low=float(finite.min()), high=float(finite.max()))

    @property
    def size(self) -> int:
        return len(self.edges) + 2

    @property
    def labels(self) -> list[str]:
        bounds = [-math.inf, *self.edges, math.inf]
        last = len(self.edges)
        intervals = [
            f"{i:02d}:({_fmt(bounds[i])},{_fmt(bounds[i + 1])}{')' if i == last else ']'}"
            for i in range(last + 1)
        ]
        return [*intervals, MISSING_BIN]

    def index(self, value: Value) -> int:
        """Bin of one value (the same bins as `counts`)."""
        if value is None or value != value or isinstance(value, str):
            return len(self.edges) + 1
        return bisect_left(self.edges, value)

    def counts(self, values: Iterable[Value]) -> np.ndarray:
        """Vectorised bin counts of many values (same bins as `index`)."""
        array = _float_array(values)
        index = np.searchsorted(np.asarray(self.edges), array, side="left")
        index[np.isnan(array)] = len(self.edges) + 1
        return np.bincount(index, minlength=self.size).astype(float)

    def tally(self, values: list[Value] | np.ndarray) -> tuple[np.ndarray, int]:
        """Bin counts of live values, and how many fall outside the training range."""
        array = _live_float_array(values)
        outside = np.count_nonzero((array < self.low) | (array > self.high))  # NaN: neither
        return self.counts(array), int(outside)


@dataclass(frozen=True)
class CategoricalBins:
    """One bin per baseline category, then `__other__` (unseen values) and `__missing__`."""

    categories: tuple[str, ...]
    kind: Literal["categorical"] = "categorical"
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index.update({c: i for i, c in enumerate(self.categories)})

    @classmethod
    def fit(cls, values: Sequence[Value], max_categories: int = MAX_CATEGORIES) -> CategoricalBins:
        """The most frequent categories (ties broken by name, so fitting is reproducible)."""
        counts = Counter(str(v) for v in values if v is not None)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_categories]
        return cls(categories=tuple(c for c, _ in ranked))

    @property
    def size(self) -> int:
        return len(self.categories) + 2

    @property
    def labels(self) -> list[str]:
        return [*self.categories, OTHER_CATEGORY, MISSING_CATEGORY]

    def index(self, value: Value) -> int:
        if value is None:
            return len(self.categories) + 1
        return self._index.get(str(value), len(self.categories))

    def counts(self, values: Iterable[Value]) -> np.ndarray:
        # Counted in C by distinct value first: a batch has few distinct categories.
        counts = np.zeros(self.size)
        for value, n in Counter(values).items():
            counts[self.index(value)] += n
        return counts

    def tally(self, values: list[Value]) -> tuple[np.ndarray, int]:
        """Bin counts of live values, and how many are unseen categories (`__other__`)."""
        counts = self.counts(values)
        return counts, int(counts[len(self.categories)])


Bins = NumericBins | CategoricalBins


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
    ) -> Baseline:
        """Fit bins per feature; a feature with any string value is categorical."""
        features = {}
        for name, values in samples.items():
            if any(isinstance(v, str) for v in values):
                feature_bins: Bins = CategoricalBins.fit(values, max_categories)
            else:
                _, finite = _finite(values, f"baseline feature {name!r}")
                feature_bins = NumericBins.fit(finite, bins)
            counts = feature_bins.counts(values)
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
        if data.get("format") != BASELINE_FORMAT:
            raise ValueError(
                f"not a baseline: format is {data.get('format')!r}, expected {BASELINE_FORMAT!r}"
            )
        features = {}
        for entry in data["features"]:
            if entry["kind"] == "numeric":
                bins: Bins = NumericBins(tuple(entry["edges"]), entry["low"], entry["high"])
            else:
                bins = CategoricalBins(tuple(entry["categories"]))
            proportions = tuple(entry["proportions"])
            if len(proportions) != bins.size:
                raise ValueError(
                    f"baseline feature {entry['name']!r}: "
                    f"{len(proportions)} proportions for {bins.size} bins"
                )
            features[entry["name"]] = FeatureBaseline(
                entry["name"], bins, proportions, entry["count"]
            )
        return cls(features)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Baseline:
        return cls.from_dict(json.loads(path.read_text()))


# --- statistics on binned counts -------------------------------------------------------------


def psi_from_counts(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI of two count (or proportion) vectors over the same bins, proportions floored at 1e-4."""
    p_expected = np.maximum(np.asarray(expected, float) / np.sum(expected), PROPORTION_FLOOR)
    p_actual = np.maximum(np.asarray(actual, float) / np.sum(actual), PROPORTION_FLOOR)
    return float(np.sum((p_actual - p_expected) * np.log(p_actual / p_expected)))


def psi(
    expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, bins: int = 10
) -> float:
    """Population stability index of `actual` against `expected` for numeric data.

    Edges are quantiles of `expected` with open outer edges, plus a missing-value bin; per-bin
    proportions are floored at 1e-4 without renormalising; PSI = sum((a - e) * ln(a / e)).
    Raises ValueError when either input is empty or has no finite value.
    """
    expected_all, expected_finite = _finite(expected, "expected")
    actual_all, _ = _finite(actual, "actual")
    numeric_bins = NumericBins.fit(expected_finite, bins)
    return psi_from_counts(numeric_bins.counts(expected_all), numeric_bins.counts(actual_all))


def ks_from_counts(expected: np.ndarray, actual: np.ndarray) -> float | None:
    """Kolmogorov-Smirnov statistic on ordered numeric bins (the missing bin excluded)."""
    e, a = np.asarray(expected, float)[:-1], np.asarray(actual, float)[:-1]
    if e.sum() == 0 or a.sum() == 0:
        return None
    return float(np.max(np.abs(np.cumsum(e) / e.sum() - np.cumsum(a) / a.sum())))


def js_from_counts(expected: np.ndarray, actual: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between the two binned distributions."""
    p = np.asarray(expected, float) / np.sum(expected)
    q = np.asarray(actual, float) / np.sum(actual)
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float(np.sum(x[nz] * np.log2(x[nz] / m[nz])))

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


def psi_critical_value(
    n_expected: int, n_actual: int, n_bins: int, confidence: float = 0.95
) -> float:
    """PSI above which drift is significant at `confidence` for these sample sizes.

    Yurdakul (2018): PSI is approximately chi-square distributed, so the critical value is
    chi2_ppf(confidence, bins - 1) * (1/n_expected + 1/n_actual). The chi-square quantile uses the
    Wilson-Hilferty approximation (within about 1 % for the bin counts used here).
    """
    k = n_bins - 1
    z = NormalDist().inv_cdf(confidence)
    chi2 = k * (1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3
    return chi2 * (1 / n_expected + 1 / n_actual)


# --- the streaming monitor -------------------------------------------------------------------


class Incrementable(Protocol):
    def inc(self, amount: float = 1) -> None: ...


@dataclass(frozen=True)
class DriftExport:
    """Where the monitor mirrors its counts: e.g. Prometheus counter children per feature, bin."""

    bins: Mapping[str, Sequence[Incrementable]]
    out_of_range: Mapping[str, Incrementable]


@dataclass(frozen=True)
class BinDrift:
    bin: str
    baseline: float
    current: float


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature over the report's window."""

    feature: str
    kind: str
    count: int
    missing: int
    out_of_range_share: float | None
    psi: float | None
    ks: float | None
    js: float | None
    critical_value: float | None
    significant: bool
    exceeds_threshold: bool
    bins: list[BinDrift]


@dataclass(frozen=True)
class DriftReport:
    window_seconds: float
    psi_threshold: float
    features: list[FeatureDrift]


class _Counts:
    """Bin counts and out-of-range counts per feature."""

    def __init__(self, counts: dict[str, np.ndarray], out_of_range: dict[str, int]) -> None:
        self.counts = counts
        self.out_of_range = out_of_range

    @classmethod
    def zero(cls, baseline: Baseline) -> _Counts:
        return cls(
            {name: np.zeros(f.bins.size) for name, f in baseline.features.items()},
            dict.fromkeys(baseline.features, 0),
        )

    def copy(self) -> _Counts:
        return _Counts({n: c.copy() for n, c in self.counts.items()}, dict(self.out_of_range))


def _column(queue: list[Mapping[str, Value]], name: str) -> list[Value]:
    """One feature's values across queued requests; an absent feature is None (missing)."""
    try:
        return list(map(itemgetter(name), queue))  # in C: every request normally has it
    except KeyError:
        return [values.get(name) for values in queue]


def _numeric_column(queue: list[Mapping[str, Value]], name: str) -> np.ndarray:
    """One numeric feature's values as floats, missing or unreadable ones as NaN."""
    try:  # the usual case, all present and numbers, converted in C without a list in between
        return np.fromiter(map(itemgetter(name), queue), dtype=float, count=len(queue))
    except (KeyError, TypeError, ValueError):
        return _live_float_array(_column(queue, name))


def _given_or(given: list[Value], fallback: list[Value]) -> list[Value]:
    """`given`, with its None entries taken from `fallback`."""
    if None not in given:
        return given
    return [f if g is None else g for g, f in zip(given, fallback, strict=True)]


class DriftMonitor:
    """Counts live values per baseline bin; thread-safe; reports drift on demand.

    A request only queues its values. Queued values are binned together, vectorised, once
    `batch_size` have queued, when the oldest has waited `max_delay_seconds` (a timer on the
    running event loop, if any), and before every read: per value that costs a small fraction of
    binning each request on its own.

    Counts are cumulative totals; windows are differences of totals. The monitor notes the totals
    when each tumbling window of `window_seconds` begins, and a report covers the previous and the
    current window, i.e. between one and two windows of recent traffic. Totals are exported as
    counters (`totals`), and added to `export` at every binning if set.
    """

    def __init__(
        self,
        baseline: Baseline,
        *,
        window_seconds: float = 3600.0,
        psi_threshold: float = 0.2,
        export: DriftExport | None = None,
        batch_size: int = 256,
        max_delay_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.baseline = baseline
        self.window_seconds = window_seconds
        self.psi_threshold = psi_threshold
        self.export = export
        self.batch_size = batch_size
        self.max_delay_seconds = max_delay_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._queue: list[Mapping[str, Value]] = []
        self._predictions: list[Value] = []  # one per queued request
        self._totals = _Counts.zero(baseline)
        # Totals when the previous and the current window began.
        self._previous_start = self._current_start = self._totals.copy()
        self._window_started = clock()
        # When observe must look up: the window ends, or the oldest queued value is due.
        self._deadline = self._window_started + window_seconds

    def observe(self, values: Mapping[str, Value], prediction: Value = None) -> None:
        """Count one request's values; a feature absent from `values` counts as missing.

        `prediction` is the predicted label, counted as feature `prediction` when the baseline
        has it (without it, `values["prediction"]` is). `values` is kept until it is binned: do
        not change it afterwards.
        """
        now = self._clock()
        with self._lock:
            if now >= self._deadline and now - self._window_started >= self.window_seconds:
                self._catch_up(now)  # queued values belong to the window that just ended
            self._queue.append(values)
            self._predictions.append(prediction)
            queued = len(self._queue)
            if queued == 1:
                self._first_queued(now)
            if queued >= self.batch_size or now >= self._deadline:
                self._bin_queue()

    def _first_queued(self, now: float) -> None:
        self._deadline = min(self._deadline, now + self.max_delay_seconds)
        # Under an event loop, queued values are binned within max_delay_seconds even when no
        # further request comes: other workers' exported counters must not wait for traffic.
        with contextlib.suppress(RuntimeError):  # no loop: the next observe or read bins them
            asyncio.get_running_loop().call_later(self.max_delay_seconds, self.flush)

    def flush(self) -> None:
        """Bin every queued value now (reads do this themselves)."""
        with self._lock:
            self._catch_up(self._clock())

    def _catch_up(self, now: float) -> None:
        """Bin the queue, then start a new window if the current one has ended (lock held)."""
        self._bin_queue()
        elapsed = now - self._window_started
        if elapsed < self.window_seconds:
            return
        totals = self._totals.copy()
        # Two or more windows idle: nothing recent is left to report.
        self._previous_start = self._current_start if elapsed < 2 * self.window_seconds else totals
        self._current_start = totals
        self._window_started = now
        self._deadline = now + self.window_seconds

    def _bin_queue(self) -> None:
        self._deadline = self._window_started + self.window_seconds
        queue, predictions = self._queue, self._predictions
        if not queue:
            return
        self._queue, self._predictions = [], []
        for name, feature in self.baseline.features.items():
            if feature.kind == "numeric":
                column: list[Value] | np.ndarray = _numeric_column(queue, name)
            else:
                column = _column(queue, name)
                if name == PREDICTION_FEATURE:
                    column = _given_or(predictions, column)
            counts, outside = feature.bins.tally(column)
            self._totals.counts[name] += counts
            self._totals.out_of_range[name] += outside
            if self.export is not None:
                self._export(name, counts, outside)

    def _export(self, name: str, counts: np.ndarray, outside: int) -> None:
        assert self.export is not None
        for index in np.flatnonzero(counts):
            self.export.bins[name][index].inc(float(counts[index]))
        if outside:
            self.export.out_of_range[name].inc(outside)

    def totals(self) -> tuple[dict[str, list[int]], dict[str, int]]:
        """Counts per feature and bin, and out-of-range counts, since the monitor started."""
        with self._lock:
            self._catch_up(self._clock())
            totals = self._totals.copy()
        return {n: [int(x) for x in c] for n, c in totals.counts.items()}, totals.out_of_range

    def _window(self) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """Bin and out-of-range counts over the report window (previous + current)."""
        with self._lock:
            self._catch_up(self._clock())
            totals, start = self._totals.copy(), self._previous_start
        counts = {n: totals.counts[n] - start.counts[n] for n in totals.counts}
        outside = {n: totals.out_of_range[n] - start.out_of_range[n] for n in totals.out_of_range}
        return counts, outside

    def counts(self) -> dict[str, np.ndarray]:
        """Counts per feature and bin over the report window (previous + current)."""
        return self._window()[0]

    def report(self) -> DriftReport:
        """PSI, KS, JS, counts, out-of-range share and significance per feature."""
        counts, outside = self._window()
        features = [
            self._feature_drift(f, counts[name], outside[name])
            for name, f in self.baseline.features.items()
        ]
        return DriftReport(self.window_seconds, self.psi_threshold, features)

    def _feature_drift(
        self, feature: FeatureBaseline, counts: np.ndarray, outside: int
    ) -> FeatureDrift:
        total = int(counts.sum())
        expected = np.asarray(feature.proportions)
        current = counts / total if total else np.zeros_like(counts)
        bins = [
            BinDrift(label, float(e), float(c))
            for label, e, c in zip(feature.bins.labels, expected, current, strict=True)
        ]
        missing = int(counts[-1])
        if total == 0:
            return FeatureDrift(
                feature.name, feature.kind, 0, 0, None, None, None, None, None, False, False, bins
            )
        value = psi_from_counts(expected, counts)
        critical = psi_critical_value(feature.count, total, feature.bins.size)
        ks = ks_from_counts(expected, counts) if feature.kind == "numeric" else None
        present = total - missing
        return FeatureDrift(
            feature=feature.name,
            kind=feature.kind,
            count=total,
            missing=missing,
            out_of_range_share=outside / present if present else None,
            psi=value,
            ks=ks,
            js=js_from_counts(expected, counts),
            critical_value=critical,
            significant=value > critical,
            exceeds_threshold=value > self.psi_threshold,
            bins=bins,
        )
