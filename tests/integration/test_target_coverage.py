"""Alert coverage when a model server goes away, whatever way it goes: for every model of the spec,
a server that stops answering (its target stays, `up` is 0) and a server whose target vanishes
(with DNS discovery a stopped container drops out of DNS and Prometheus marks `up` stale instead
of 0), with one replica or all of several, fires a critical alert labelled with that model. The
check names no alert: it reads ALERTS, so it holds whichever rule provides the coverage.

promtool evaluates the committed rule files; `stale` is the marker Prometheus writes when
discovery drops a target (tests/integration/test_target_vanishes.py shows that with the real
binary)."""

from __future__ import annotations

import pytest

from mlobs.spec import duration_seconds, load_spec
from tests.conftest import REPO
from tests.support.promtool import promtool_test, series

SPEC = load_spec(REPO / "observability.yaml")
HOLD = int(duration_seconds(SPEC.alerts.server_down.for_) // 60)
UP = 5  # minutes with a healthy target before it goes
END = UP + HOLD + 10
MODES = {
    # mode -> `up` values of each replica after UP minutes
    "one replica stops answering": ["0"],
    "every replica stops answering": ["0", "0"],
    "the only target vanishes": ["stale"],
    "every target vanishes": ["stale", "stale"],
}


def _case(model: str, after: list[str]) -> dict:
    inputs = [
        series("up", {"job": m.name, "instance": f"{m.name}/10.0.1.1"}, f"1x{END}")
        for m in SPEC.models
        if m.name != model
    ]
    for replica, value in enumerate(after, start=1):
        gone = "stale" if value == "stale" else f"0x{END - UP - 1}"
        inputs.append(
            series("up", {"job": model, "instance": f"{model}/10.0.0.{replica}"}, f"1x{UP} {gone}")
        )
    firing = f'ALERTS{{alertstate="firing", severity="critical", model="{model}"}}'
    return {
        "interval": "1m",
        "input_series": inputs,
        "promql_expr_test": [
            {"expr": f"max by (model) ({firing})", "eval_time": f"{UP}m", "exp_samples": []},
            {
                "expr": f"max by (model) ({firing})",
                "eval_time": f"{UP + HOLD + 2}m",
                "exp_samples": [{"labels": f'{{model="{model}"}}', "value": 1}],
            },
        ],
    }


@pytest.mark.parametrize("mode", MODES)
def test_every_model_fires_a_critical_alert_when_its_server_goes(tmp_path, mode):
    promtool_test(tmp_path, [_case(m.name, MODES[mode]) for m in SPEC.models])
