"""The generator of the promtool rule tests (mlobs.generate.prometheus_tests): a counter given in
phases grows, minute by minute, by each phase's rate, whatever the number of phases; an alert
without cases is named."""

from __future__ import annotations

import itertools

import pytest

from mlobs.generate import prometheus_tests
from mlobs.generate.prometheus_tests import Phase, counter
from mlobs.spec import DEFAULT_SPEC_PATH, load_spec


def _expand(series: str) -> list[float]:
    """promtool's expanding notation: "a+bxn" is a, a+b, ..., a+n*b."""
    values: list[float] = []
    for segment in series.split():
        start, _, rest = segment.partition("+")
        step, _, count = rest.partition("x")
        values += [float(start) + float(step) * i for i in range(int(count) + 1)]
    return values


def test_a_counter_of_three_phases_grows_by_each_phases_rate():
    values = _expand(counter([Phase(2, 1.0), Phase(3, 10.0), Phase(2, 100.0)]))
    increments = [later - earlier for earlier, later in itertools.pairwise(values)]
    # One sample a minute from 0: 2 minutes at 1/min, 3 at 10/min, 2 at 100/min.
    assert increments == [1.0, 1.0, 10.0, 10.0, 10.0, 100.0, 100.0]
    assert values[0] == 0.0


def test_an_alert_without_promtool_cases_is_named_when_the_tests_are_generated(monkeypatch):
    """Adding an alert to the rules without its promtool cases fails `make generate`, naming it."""
    alert = next(iter(prometheus_tests._CASES))
    monkeypatch.delitem(prometheus_tests._CASES, alert)
    with pytest.raises(KeyError, match=f"alert {alert} has no promtool test cases"):
        prometheus_tests.alert_tests(load_spec(DEFAULT_SPEC_PATH))
