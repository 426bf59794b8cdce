"""The streaming drift monitor: counts live values per baseline bin and reports drift on demand.

Counts add up across windows, replicas and workers, so PSI from summed counts is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Protocol

import numpy as np

from mlobs.drift.baseline import PREDICTION_FEATURE, Baseline
from mlobs.drift.bins import Value, _live_float_array
from mlobs.drift.report import DriftReport, drift_report

# PSI above which a feature counts as drifted when no spec says otherwise (observability.yaml
# sets the same 0.2 for the alert).
DEFAULT_PSI_THRESHOLD = 0.2
DEFAULT_MIN_SAMPLES = 1  # without a spec's alerts.drift.min_samples: every PSI counts


class Incrementable(Protocol):
    def inc(self, amount: float = 1) -> None: ...


@dataclass(frozen=True)
class DriftExport:
    """Where the monitor mirrors its counts: e.g. Prometheus counter children per feature, bin."""

    bins: Mapping[str, Sequence[Incrementable]]
    out_of_range: Mapping[str, Incrementable]


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
        psi_threshold: float = DEFAULT_PSI_THRESHOLD,
        min_samples: int = DEFAULT_MIN_SAMPLES,
        export: DriftExport | None = None,
        batch_size: int = 256,
        max_delay_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.baseline = baseline
        self.window_seconds = window_seconds
        self.psi_threshold = psi_threshold
        self.min_samples = min_samples
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
                if name == PREDICTION_FEATURE:  # the predictions given, else the queued values'
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
        return drift_report(
            self.baseline,
            counts,
            outside,
            self.window_seconds,
            self.psi_threshold,
            self.min_samples,
        )
