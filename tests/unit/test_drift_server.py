"""Both servers count their inputs per baseline bin, export them, and report drift at /drift."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from services.anomaly_detector.data import FEATURES, simulate_normal
from services.anomaly_detector.model import AnomalyDetector
from tests.support.generated import spec_yaml
from tests.support.http import metric_samples, sample


def _readings(rows: np.ndarray) -> list[dict]:
    return [{"features": dict(zip(FEATURES, map(float, row), strict=True))} for row in rows]


def _bin_counts(text: str, model: str, feature: str) -> dict[str, float]:
    return {
        dict(labels)["bin"]: value
        for (name, labels), value in metric_samples(text).items()
        if name == "model_feature_bin_total"
        and dict(labels)["model"] == model
        and dict(labels)["feature"] == feature
    }


def test_healthy_traffic_shows_no_drift(serve, anomaly_model):
    with serve(anomaly_model) as client:
        for body in _readings(simulate_normal(800, np.random.default_rng(5))):
            client.post("/predict", json=body)
        report = client.get("/drift").json()
    assert report["model"] == "anomaly-detector"
    by_feature = {f["feature"]: f for f in report["features"]}
    assert set(by_feature) == {*FEATURES, "prediction"}
    for name in FEATURES:
        assert by_feature[name]["count"] == 800
        assert by_feature[name]["psi"] < 0.1
        assert by_feature[name]["exceeds_threshold"] is False


def test_shifted_inputs_are_reported_and_exported(serve, anomaly_model):
    rows = simulate_normal(400, np.random.default_rng(6), load_shift=2.0)
    with serve(anomaly_model) as client:
        for body in _readings(rows):
            assert client.post("/predict", json=body).status_code == 200
        report = client.get("/drift").json()
        text = client.get("/metrics").text
    # The server reads the alert's line from the spec.
    assert report["psi_threshold"] == spec_yaml()["alerts"]["drift"]["psi_threshold"]
    temperature = next(f for f in report["features"] if f["feature"] == "temperature_c")
    assert (temperature["exceeds_threshold"], temperature["significant"]) == (True, True)
    assert temperature["psi"] > 1.0
    assert temperature["out_of_range_share"] > 0
    assert temperature["critical_value"] < 0.2
    # The same counts in Prometheus: every request in exactly one bin, bins named as in the report.
    exported = _bin_counts(text, "anomaly-detector", "temperature_c")
    assert sum(exported.values()) == 400
    assert list(exported) == [b["bin"] for b in temperature["bins"]]
    assert sample(
        text, "model_feature_out_of_range_total", model="anomaly-detector", feature="temperature_c"
    ) == round(temperature["out_of_range_share"] * 400)
    ratios = [
        sample(
            text,
            "model_feature_baseline_ratio",
            model="anomaly-detector",
            feature="temperature_c",
            bin=b,
        )
        for b in exported
    ]
    # The baseline share of each bin, as the report states it.
    assert ratios == [b["baseline"] for b in temperature["bins"]]
    assert sum(ratios) == pytest.approx(1.0)


def test_every_bin_is_exported_before_any_traffic(serve, anomaly_model):
    with serve(anomaly_model) as client:
        text = client.get("/metrics").text
    for feature in anomaly_model.baseline.features.values():
        counts = _bin_counts(text, "anomaly-detector", feature.name)
        assert list(counts) == feature.bins.labels
        assert set(counts.values()) == {0.0}


def test_chatbot_tracks_message_shape_and_prediction_drift(serve, chatbot_model):
    with serve(chatbot_model) as client:
        for i in range(300):
            client.post("/predict", json={"message": f"zxq{i} blorp vrumm kaplink " * 5})
        report = client.get("/drift").json()
        text = client.get("/metrics").text
    by_feature = {f["feature"]: f for f in report["features"]}
    assert set(by_feature) == {"length", "tokens", "oov_share", "prediction"}
    for name in ("length", "tokens", "oov_share", "prediction"):
        assert by_feature[name]["exceeds_threshold"] is True, name
    assert by_feature["prediction"]["kind"] == "categorical"
    assert by_feature["prediction"]["ks"] is None
    fallback = next(b for b in by_feature["prediction"]["bins"] if b["bin"] == "fallback")
    assert fallback["current"] == 1.0
    assert _bin_counts(text, "chatbot", "prediction")["fallback"] == 300


def test_model_without_a_baseline_has_no_drift_report(serve, anomaly_model):
    with serve(AnomalyDetector(anomaly_model.params, baseline=None)) as client:
        assert (
            client.post(
                "/predict", json=_readings(simulate_normal(1, np.random.default_rng(1)))[0]
            ).status_code
            == 200
        )
        response = client.get("/drift")
        text = client.get("/metrics").text
    assert response.status_code == 404 and response.json()["error"] == "no_baseline"
    assert "model_feature_bin_total" not in text


def test_without_a_spec_drift_is_reported_over_the_default_hour(serve, anomaly_model, monkeypatch):
    """A team that copies the library without observability.yaml still gets /drift, over the
    documented default window of one hour and PSI threshold of 0.2, with no minimum of values."""
    monkeypatch.setattr("mlobs.server.DEFAULT_SPEC_PATH", Path("/nonexistent/observability.yaml"))
    with serve(anomaly_model) as client:
        for body in _readings(simulate_normal(5, np.random.default_rng(5))):
            assert client.post("/predict", json=body).status_code == 200
        report = client.get("/drift").json()
    assert (report["window_seconds"], report["psi_threshold"], report["min_samples"]) == (
        3600.0,
        0.2,
        1,
    )
    assert {f["feature"]: f["count"] for f in report["features"]}[FEATURES[0]] == 5


def _spec_with_drift(path: Path, window: str, psi_threshold: float) -> Path:
    spec = spec_yaml()
    spec["alerts"]["drift"].update(window=window, psi_threshold=psi_threshold)
    path.write_text(yaml.safe_dump(spec))
    return path


def test_the_spec_is_read_from_the_working_directory_unless_mlobs_spec_names_one(
    serve, anomaly_model, tmp_path, monkeypatch
):
    """README: MLOBS_SPEC, else ./observability.yaml; /drift reports over its window and line."""
    monkeypatch.chdir(tmp_path)
    _spec_with_drift(tmp_path / "observability.yaml", "30m", 0.25)
    with serve(anomaly_model) as client:
        report = client.get("/drift").json()
    assert (report["window_seconds"], report["psi_threshold"]) == (1800.0, 0.25)
    named = _spec_with_drift(tmp_path / "team-spec.yaml", "2h", 0.3)
    with serve(anomaly_model, spec_path=named) as client:
        report = client.get("/drift").json()
    assert (report["window_seconds"], report["psi_threshold"]) == (7200.0, 0.3)
