"""mlobs.drift at its edges: values given as a generator, a value observed exactly when a window
ends, a clock that does not start at 0, batches exactly at the size where counting changes path."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

from mlobs.drift import Baseline, DriftExport, DriftMonitor, NumericBins
from mlobs.drift import bins as bins_module

VALUES = [0.5, 3.0, -1.0, 2.0, 2.0, None, 7.5, 1.0, math.nan, 4.0, 2.5, 6.0]


def _generated(values: list[float | None]) -> Iterator[float | None]:
    return (v for v in values)


def test_numeric_bins_fit_and_count_a_generator_as_they_do_a_list():
    """NumericBins.fit and .counts take any iterable: a generator gives the same bins and counts
    as the list of its values, not a numpy TypeError."""
    from_list = NumericBins.fit(VALUES, 4)
    assert NumericBins.fit(_generated(VALUES), 4) == from_list
    assert from_list.edges  # real bins, so the counts below say something
    assert from_list.counts(_generated(VALUES)).tolist() == from_list.counts(VALUES).tolist()
    assert from_list.counts(iter(VALUES)).tolist() == from_list.counts(VALUES).tolist()


def _monitor(now: list[float]) -> DriftMonitor:
    return DriftMonitor(
        Baseline.fit({"x": [1.0, 2.0, 3.0]}), window_seconds=60, clock=lambda: now[0]
    )


@pytest.mark.parametrize("read_first", [False, True], ids=["observed", "read-then-observed"])
def test_a_value_observed_exactly_when_a_window_ends_counts_in_the_next_window(read_first):
    """A window of 60 s started at 0 is [0, 60): a value at 60 belongs to [60, 120), whether or
    not something read the monitor at that instant. So at 150 it is still reported (its window
    is the previous one), while everything from [0, 60) has aged out."""
    now = [0.0]
    monitor = _monitor(now)
    monitor.observe({"x": 1.0})  # in [0, 60)
    now[0] = 30.0
    assert monitor.counts()["x"].sum() == 1  # binned now: nothing is queued at 60
    now[0] = 60.0
    if read_first:
        assert monitor.counts()["x"].sum() == 1
    monitor.observe({"x": 2.0})
    assert monitor.counts()["x"].sum() == 2
    now[0] = 150.0
    assert monitor.counts()["x"].sum() == 1


Steps = list[tuple[int, list[float]]]


def _exports_over_time(origin: float) -> Steps:
    """What the exported counters (bins, then out of range) and then the report show at each step
    of a scenario at `origin` + 0 to 150 seconds (max_delay 1 s, batches of 3, windows of 60 s)."""
    now = [origin]
    baseline = Baseline.fit({"x": [1.0, 2.0, 3.0]})
    size = baseline.features["x"].bins.size
    bins = {"x": [_Counter() for _ in range(size)]}
    outside = {"x": _Counter()}
    monitor = DriftMonitor(
        baseline,
        window_seconds=60,
        export=DriftExport(bins, outside),
        batch_size=3,
        max_delay_seconds=1.0,
        clock=lambda: now[0],
    )
    seen: Steps = []
    for at, value in [(0, 1.0), (0, 9.0), (0, None), (0, 2.0), (1, 2.0), (1, 3.0), (70, 1.0)]:
        now[0] = origin + at
        monitor.observe({"x": value})
        seen.append((at, [*(c.value for c in bins["x"]), outside["x"].value]))
    for at in (70, 150):
        now[0] = origin + at
        seen.append((at, monitor.counts()["x"].tolist()))
    return seen


class _Counter:
    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


def test_the_monitor_behaves_the_same_whatever_its_clocks_origin():
    """time.monotonic() counts from an arbitrary point (e.g. boot), never from the monitor's
    start: the exports and windows must not depend on it. In particular the value arriving when
    the oldest queued one is due is exported with it, not max_delay_seconds later."""
    from_zero = _exports_over_time(0.0)
    at, exported = from_zero[4]
    assert (at, sum(exported[:-1])) == (1, 5)  # all 5 values so far: 2.0 was due, 2.0 arrived
    assert _exports_over_time(123_456.0) == from_zero
    assert _exports_over_time(-50.0) == from_zero


def _reference_counts(edges: np.ndarray, values: np.ndarray) -> list[int]:
    """Right-closed bins (-inf, e0], ..., (e_last, inf), then missing: a value's bin is the
    number of edges below it."""
    present = values[~np.isnan(values)]
    bins = (edges[np.newaxis, :] < present[:, np.newaxis]).sum(axis=1)
    counts = np.bincount(bins, minlength=edges.size + 1).tolist()
    return [*counts, int(values.size - present.size)]


@pytest.mark.parametrize("edge_count", [1, 3, 127, 128, 129])
def test_counts_are_right_at_the_batch_size_where_counting_changes_method(edge_count):
    """Below, at and above the size from which counts take one comparison pass per edge (and at
    the edge count where they stop doing so), every value is counted in its bin, including values
    exactly on an edge, infinities and NaN."""
    rng = np.random.default_rng(edge_count)
    edges = np.linspace(-2.0, 2.0, edge_count) if edge_count > 1 else np.array([0.0])
    bins = NumericBins(edges=tuple(float(e) for e in edges), low=-3.0, high=3.0)
    threshold = (
        bins_module._COMPARISON_MIN_VALUES + bins_module._COMPARISON_VALUES_PER_EDGE * edge_count
    )
    for size in (threshold - 1, threshold, threshold + 1):
        values = rng.normal(size=size)
        values[:edge_count] = edges  # on the edges: where right-closed bins differ
        values[-4:] = [math.inf, -math.inf, math.nan, math.nan]
        rng.shuffle(values)
        assert bins.counts(values).tolist() == _reference_counts(edges, values), size
