"""observability.yaml: the committed spec loads; a bad spec fails with a message naming the key."""

import pytest
import yaml

from mlobs.spec import SpecError, duration_seconds, load_spec
from tests.conftest import REPO

GOOD = yaml.safe_load((REPO / "observability.yaml").read_text())


def _load(tmp_path, data) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    load_spec(path)


def _with(path: list[str], value, data=None):
    data = yaml.safe_load(yaml.safe_dump(GOOD if data is None else data))
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


def test_the_committed_spec_loads_with_every_value_as_written():
    """Nothing is dropped, renamed or converted on the way into the generators (`for` is read
    as `for_`), and no default hides a key of the file."""
    spec = load_spec(REPO / "observability.yaml")
    assert spec.model_dump(by_alias=True) == GOOD
    assert spec.alerts.latency.for_ == GOOD["alerts"]["latency"]["for"]


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (_with(["alerts", "drift", "psi_treshold"], 0.2), "alerts.drift.psi_treshold"),
        (_with(["alerts", "drift", "psi_threshold"], -0.2), "alerts.drift.psi_threshold"),
        (
            _with(["alerts", "error_rate", "threshold_ratio"], 1.5),
            "alerts.error_rate.threshold_ratio",
        ),
        (_with(["alerts", "latency", "window"], "5 minutes"), "alerts.latency.window"),
        (_with(["alerts", "latency", "threshold_seconds"], 0.6), "alerts.latency"),
        (_with(["alerts", "latency", "severity"], "page"), "alerts.latency.severity"),
        (_with(["models"], []), "models"),
        ({k: v for k, v in GOOD.items() if k != "models"}, "models"),
    ],
)
def test_bad_spec_names_the_key(tmp_path, data, named):
    with pytest.raises(SpecError, match=named.replace(".", r"\.")):
        _load(tmp_path, data)


def test_the_replaced_dashboard_url_key_names_its_successor(tmp_path):
    old = {**GOOD, "dashboard_url": "http://localhost:3000/d/ml-model-health"}
    with pytest.raises(SpecError, match="dashboard_url was replaced by grafana_url"):
        _load(tmp_path, old)


# The whole message an operator reads when the server or `make generate` refuses a spec: the
# file, then each problem as key: reason, joined by "; ".
WHOLE_MESSAGES = {
    "latency threshold inside a bucket": (
        _with(["alerts", "latency", "threshold_seconds"], 0.6),
        "alerts.latency: Value error, 0.6 is not a bucket boundary of model_latency_seconds"
        " (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10): the alert would"
        " be decided by interpolation inside a bucket",
    ),
    "two problems": (
        _with(["alerts", "latency", "window"], "0s", data=_with(["models"], [])),
        "models: List should have at least 1 item after validation, not 0;"
        " alerts.latency.window: Value error, must be longer than 0",
    ),
    "a list, not a mapping": (
        [],
        "(top level): Input should be a valid dictionary or instance of Spec",
    ),
}


@pytest.mark.parametrize(("data", "expected"), WHOLE_MESSAGES.values(), ids=WHOLE_MESSAGES)
def test_a_refused_spec_says_where_and_why_in_full(tmp_path, data, expected):
    with pytest.raises(SpecError) as refused:
        _load(tmp_path, data)
    assert str(refused.value) == f"{tmp_path / 'spec.yaml'}: {expected}"


def test_unreadable_or_invalid_yaml_is_reported(tmp_path):
    with pytest.raises(SpecError) as missing:
        load_spec(tmp_path / "missing.yaml")
    assert (
        str(missing.value)
        == f"{tmp_path}/missing.yaml: cannot read the spec: No such file or directory"
    )
    (tmp_path / "bad.yaml").write_text("models: [")
    with pytest.raises(SpecError) as invalid:
        load_spec(tmp_path / "bad.yaml")
    assert str(invalid.value).startswith(f"{tmp_path}/bad.yaml: not valid YAML: ")
    assert "line 1, column 10" in str(invalid.value)  # where the YAML parser stopped


# Every unit of a Prometheus duration the spec accepts, and what is not a duration.
DURATIONS = {"250ms": 0.25, "90s": 90, "5m": 300, "1h": 3600, "2d": 172_800, "1w": 604_800, "0s": 0}


def test_durations_in_every_unit():
    assert {text: duration_seconds(text) for text in DURATIONS} == DURATIONS


@pytest.mark.parametrize("text", ["5 m", "1.5h", "1y", "s", "-1s", "", "5m "])
def test_what_is_not_a_duration_is_refused_quoting_it(text):
    with pytest.raises(ValueError) as refused:
        duration_seconds(text)
    assert str(refused.value) == f"{text!r} is not a duration like 30s, 5m or 1h"


def test_an_alert_window_of_zero_is_refused(tmp_path):
    with pytest.raises(SpecError) as refused:
        _load(tmp_path, _with(["alerts", "latency", "window"], "0s"))
    assert str(refused.value).endswith(
        ": alerts.latency.window: Value error, must be longer than 0"
    )
