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


def _with(path: list[str], value):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
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


def test_unreadable_or_invalid_yaml_is_reported(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("models: [")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path / "bad.yaml")


def test_durations():
    assert duration_seconds("90s") == 90 and duration_seconds("1h") == 3600
    with pytest.raises(ValueError):
        duration_seconds("5 m")
