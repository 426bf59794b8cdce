"""mlobs.drift at its edges: values given as a generator, a value observed exactly when a window
ends, a clock that does not start at 0."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from mlobs.drift import Baseline, DriftMonitor, NumericBins
from tests.support.drift_export import exported_monitor

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
    live = exported_monitor(origin, window_seconds=60)
    seen: Steps = []
    for at, value in [(0, 1.0), (0, 9.0), (0, None), (0, 2.0), (1, 2.0), (1, 3.0), (70, 1.0)]:
        live.now[0] = origin + at
        live.monitor.observe({"x": value})
        seen.append((at, [*(c.value for c in live.bins), live.outside.value]))
    for at in (70, 150):
        live.now[0] = origin + at
        seen.append((at, live.monitor.counts()["x"].tolist()))
    return seen


def test_the_monitor_behaves_the_same_whatever_its_clocks_origin():
    """time.monotonic() counts from an arbitrary point (e.g. boot), never from the monitor's
    start: the exports and windows must not depend on it. In particular the value arriving when
    the oldest queued one is due is exported with it, not max_delay_seconds later."""
    from_zero = _exports_over_time(0.0)
    at, exported = from_zero[4]
    assert (at, sum(exported[:-1])) == (1, 5)  # all 5 values so far: 2.0 was due, 2.0 arrived
    assert _exports_over_time(123_456.0) == from_zero
    assert _exports_over_time(-50.0) == from_zero
