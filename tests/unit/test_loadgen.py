"""loadgen draws valid inputs (shifted ones for drift) and refuses bad arguments."""

import numpy as np
import pytest

from services.loadgen.__main__ import parse_args
from services.loadgen.inputs import InputSampler


def test_inputs_are_valid_requests_for_both_models(anomaly_model, chatbot_model):
    for drift in (False, True):
        sampler = InputSampler(seed=1, drift=drift)
        for _ in range(50):
            anomaly_model.input_model.model_validate(sampler.anomaly_body())
            chatbot_model.input_model.model_validate(sampler.chatbot_body())


def _mean_temperature(sampler: InputSampler) -> float:
    return float(np.mean([sampler.anomaly_body()["features"]["temperature_c"] for _ in range(300)]))


def _mean_message_length(sampler: InputSampler) -> float:
    return float(np.mean([len(sampler.chatbot_body()["message"]) for _ in range(300)]))


def test_drift_scenario_really_shifts_the_inputs():
    normal, drifted = InputSampler(seed=1), InputSampler(seed=1, drift=True)
    assert _mean_temperature(drifted) - _mean_temperature(normal) > 5
    assert _mean_message_length(drifted) > 2 * _mean_message_length(normal)


@pytest.mark.parametrize(
    "argv",
    [
        ["--rate", "0"],
        ["--duration", "-1"],
        ["--scenario", "nope"],
        ["--admin-token-file", "/nonexistent/token"],
    ],
)
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert "error" in capsys.readouterr().err
