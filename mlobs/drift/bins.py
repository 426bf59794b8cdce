"""Drift bins of one feature: quantile bins with open outer edges for numbers, a vocabulary for
categories, each with a bin for missing values.

Numeric bins are right-closed, (e[i-1], e[i]], with open outer edges, so values outside the
training range land in the outer bins instead of being dropped (the `np.histogram(range=...)`
recipe drops exactly them). Categorical bins are the baseline vocabulary plus `__other__` and
`__missing__`.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

MISSING_BIN = "missing"
OTHER_CATEGORY = "__other__"
MISSING_CATEGORY = "__missing__"
MAX_CATEGORIES = 20

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


def _checked_floats(values: Iterable[Value], what: str) -> np.ndarray:
    """Values as floats (missing as NaN); ValueError when there is none or none is finite."""
    array = _float_array(values)
    if array.size == 0:
        raise ValueError(f"{what} is empty: drift needs at least one value")
    if not np.isfinite(array).any():
        raise ValueError(f"{what} has no finite value: every value is missing, NaN or infinite")
    return array


# Counting takes one comparison pass per edge instead of a binary search per value when there are
# enough values for the number of edges: searchsorted's branches mispredict on unsorted values, a
# comparison pass does not branch but costs a numpy call. Measured on fresh batches (numpy 2.4,
# this project's 2-vCPU test machine), the passes win from about 500 values with 3 edges, 1,900
# with 49 and 4,100 with 127; 1,024 + 32 per edge is past that for every edge count. For 1,000,000
# values: 15 ms instead of 44 ms with 99 edges. The monitor bins batches of 256: binary search.
_COMPARISON_MIN_VALUES = 1024
_COMPARISON_VALUES_PER_EDGE = 32
_COMPARISON_MAX_EDGES = 128  # the passes add up: with about 400 edges they cost what a search does


def _counts_by_search(edges: np.ndarray, array: np.ndarray) -> np.ndarray:
    """Bin counts (k + 1 right-closed bins of k edges, then missing): a binary search per value."""
    index = np.searchsorted(edges, array, side="left")
    index[np.isnan(array)] = edges.size + 1
    return np.bincount(index, minlength=edges.size + 2).astype(float)


def _counts_from_at_most(at_most: np.ndarray, present: int, missing: int) -> np.ndarray:
    """Bin counts from how many present values are <= each edge, and the number missing."""
    return np.diff(np.array([0, *at_most, present, present + missing], dtype=float))


def _counts_by_comparison(edges: np.ndarray, array: np.ndarray) -> np.ndarray:
    """The same counts as `_counts_by_search`, from one vectorised comparison pass per edge."""
    missing = int(np.count_nonzero(np.isnan(array)))
    at_most = np.array([np.count_nonzero(array <= edge) for edge in edges])  # NaN never is
    return _counts_from_at_most(at_most, array.size - missing, missing)


@dataclass(frozen=True)
class NumericBins:
    """Right-closed bins (-inf, e0], (e0, e1], ..., (e_last, +inf) and a last bin for missing."""

    edges: tuple[float, ...]
    low: float  # training minimum and maximum: values outside count as out of range
    high: float
    kind: Literal["numeric"] = "numeric"

    def __post_init__(self) -> None:
        edges = np.asarray(self.edges, dtype=float)
        # Counting relies on it; a hand-edited baseline.json could break it.
        if not (np.isfinite(edges).all() and (np.diff(edges) > 0).all()):
            raise ValueError(f"bin edges must be finite and increasing: {list(self.edges)}")

    @classmethod
    def fit(cls, values: Iterable[Value], bins: int) -> NumericBins:
        """Inner edges at the quantiles of the finite `values` (at least one); equal quantiles are
        merged."""
        return cls.fit_counts(_float_array(values), bins)[0]

    @classmethod
    def fit_counts(cls, values: np.ndarray, bins: int) -> tuple[NumericBins, np.ndarray]:
        """Bins fitted on the finite ones of `values` (at least one), and the bin counts of all
        `values`: one sort serves the quantiles and the counts."""
        if bins < 2:
            raise ValueError(f"bins={bins}: need at least 2 bins")
        ordered = np.sort(values)  # -inf first, +inf after the finite values, NaN last
        present = ordered.size - int(np.count_nonzero(np.isnan(values)))
        ordered = ordered[:present]
        first = np.searchsorted(ordered, -np.inf, side="right")
        end = np.searchsorted(ordered, np.inf, side="left")
        finite = ordered[first:end]
        # np.quantile's own interpolation (exactly as on unsorted data), fast on sorted data. Its
        # b - a overflows when values span more than the float range: the error below, no warning.
        with np.errstate(over="ignore", invalid="ignore"):
            quantiles = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1])
        if not np.isfinite(quantiles).all():
            raise ValueError("values span more than 1.8e308: their quantiles overflow")
        fitted = cls(
            edges=tuple(float(e) for e in np.unique(quantiles)),
            low=float(finite[0]),
            high=float(finite[-1]),
        )
        at_most = np.searchsorted(ordered, fitted.edges, side="right")
        return fitted, _counts_from_at_most(at_most, present, values.size - present)

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
        edges = np.asarray(self.edges)
        enough = _COMPARISON_MIN_VALUES + _COMPARISON_VALUES_PER_EDGE * edges.size
        if array.size >= enough and edges.size <= _COMPARISON_MAX_EDGES:
            return _counts_by_comparison(edges, array)
        return _counts_by_search(edges, array)

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
