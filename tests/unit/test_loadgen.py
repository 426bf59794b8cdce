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
    ("argv", "message"),
    [
        (["--rate", "0"], "--rate must be greater than 0"),
        (["--duration", "-1"], "--duration must be 0 (until stopped) or more"),
        (
            ["--scenario", "nope"],
            "argument --scenario: invalid choice: 'nope' "
            "(choose from 'steady', 'latency', 'errors', 'drift')",
        ),
        (
            ["--admin-token-file", "/nonexistent/token"],
            "--admin-token-file: No such file or directory: /nonexistent/token",
        ),
    ],
)
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert last_line.endswith(f" error: {message}"), last_line
