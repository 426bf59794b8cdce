"""Offline drift of an inference log (`python -m mlobs.drift report`): whose lines are counted
when a log holds several models or versions, and when the counted lines were written."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlobs.drift import Baseline
from tests.unit.test_drift_cli import ERROR_PREFIX, _event, _run, _write_lines


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    path = tmp_path / "baseline.json"
    Baseline.fit({"x": [1.0, 2.0, 3.0]}).save(path)
    return path


def _of(model: str, version: str, lines: int) -> list[dict]:
    return [_event({"x": 2.0}, None, model=model, model_version=version)] * lines


@pytest.fixture
def mixed_log(tmp_path: Path) -> Path:
    """Lines of a 1 (2), a 2 (3) and b 1 (4), interleaved as replicas would write them."""
    a1, a2, b1 = _of("a", "1", 2), _of("a", "2", 3), _of("b", "1", 4)
    return _write_lines(tmp_path / "inference.log", [*b1[:2], *a2, *a1, *b1[2:]])


# options -> (model, version, predictions) counted, or the choice the error asks for
CHOICES = {
    "a model with one version": (["--model", "b"], ("b", "1", 4)),
    "a model and its version": (["--model", "a", "--model-version", "2"], ("a", "2", 3)),
    "a version only one model has": (["--model-version", "2"], ("a", "2", 3)),
    "a model with two versions": (["--model", "a"], "a 1, a 2: choose one with --model-version"),
    "a version two models have": (["--model-version", "1"], "a 1, b 1: choose one with --model"),
    "no choice": ([], "a 1, a 2, b 1: choose one with --model"),
}


@pytest.mark.parametrize("case", CHOICES.values(), ids=CHOICES.keys())
def test_a_log_of_several_models_counts_the_chosen_ones(baseline, mixed_log, capsys, case):
    options, expected = case
    code, out, err = _run(capsys, "report", baseline, mixed_log, "--json", *options)
    if isinstance(expected, str):
        assert (code, out) == (2, "")
        assert err == f"{ERROR_PREFIX}{mixed_log} holds predictions of {expected}\n"
    else:
        assert (code, err) == (0, "")
        report = json.loads(out)
        (x,) = report["features"]
        assert (report["model"], report["model_version"], x["count"]) == expected


NOTHING_CHOSEN = {
    "model": (["--model", "c"], "of --model c"),
    "version": (["--model-version", "9"], "of --model-version 9"),
    "both": (["--model", "a", "--model-version", "9"], "of --model a --model-version 9"),
}


@pytest.mark.parametrize("case", NOTHING_CHOSEN.values(), ids=NOTHING_CHOSEN.keys())
def test_a_choice_nothing_matches_is_named_in_the_error(baseline, mixed_log, capsys, case):
    options, chosen = case
    code, out, err = _run(capsys, "report", baseline, mixed_log, *options)
    assert (code, out) == (2, "")
    assert err == f"{ERROR_PREFIX}no successful inference events {chosen} in {mixed_log}\n"


def test_the_lines_of_several_files_are_counted_together(baseline, tmp_path, capsys):
    rotated = _write_lines(tmp_path / "inference.log.1", [*_of("a", "1", 2), *_of("b", "1", 1)])
    current = _write_lines(tmp_path / "inference.log", _of("a", "1", 3))
    code, out, err = _run(capsys, "report", baseline, rotated, current)
    assert (code, out) == (2, "")
    assert err == (
        f"{ERROR_PREFIX}{rotated}, {current} holds predictions of a 1, b 1: "
        "choose one with --model\n"
    )
    code, out, _ = _run(capsys, "report", baseline, rotated, current, "--model", "a")
    assert code == 0
    assert out.startswith("a 1: 5 predictions, ")


@pytest.fixture
def far_from_utc() -> Iterator[None]:
    """The local time zone is UTC+5:30, so a time read as local time would be 5.5 hours off."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "Asia/Kolkata")
        time.tzset()
        yield
    time.tzset()


def _at(*timestamps: str | None) -> list[dict]:
    lines = [_event({"x": 2.0}, None, timestamp=t) for t in timestamps]
    for line in lines:
        if line["timestamp"] is None:
            del line["timestamp"]  # as a line of another writer might be
    return lines


def test_the_report_spans_the_earliest_to_the_latest_line(baseline, tmp_path, capsys, far_from_utc):
    # In file order neither first nor last; the time without a zone is UTC, like the others.
    log = _write_lines(
        tmp_path / "inference.log",
        _at("2026-05-04T10:00:05", "2026-05-04T10:00:10Z", "2026-05-04T09:59:58Z", None,
            "2026-05-04T10:00:01.5Z"),
    )  # fmt: skip
    code, out, err = _run(capsys, "report", baseline, log)
    assert (code, err) == (0, "")
    header = out.splitlines()[0]
    assert header == "m 1: 5 predictions, 2026-05-04 09:59:58 to 2026-05-04 10:00:10 UTC (12 s)"
    code, out, _ = _run(capsys, "report", baseline, log, "--json")
    assert json.loads(out)["window_seconds"] == 12.0


def test_times_with_an_offset_are_compared_as_instants(baseline, tmp_path, capsys, far_from_utc):
    # 11:59:58+02:00 is 09:59:58 UTC, the earliest; 10:00:10 the latest.
    log = _write_lines(
        tmp_path / "inference.log",
        _at("2026-05-04T10:00:05", "2026-05-04T10:00:10Z", "2026-05-04T11:59:58+02:00"),
    )
    code, out, err = _run(capsys, "report", baseline, log, "--json")
    assert (code, err) == (0, "")
    assert json.loads(out)["window_seconds"] == 12.0


def test_a_time_with_an_offset_is_shown_in_utc(baseline, tmp_path, capsys):
    log = _write_lines(
        tmp_path / "inference.log", _at("2026-05-04T11:59:58+02:00", "2026-05-04T10:00:10Z")
    )
    code, out, _ = _run(capsys, "report", baseline, log)
    assert code == 0
    header = out.splitlines()[0]
    assert header == "m 1: 2 predictions, 2026-05-04 09:59:58 to 2026-05-04 10:00:10 UTC (12 s)"


def test_a_log_without_timestamps_has_no_span(baseline, tmp_path, capsys):
    log = _write_lines(tmp_path / "inference.log", _at(None, None))
    code, out, err = _run(capsys, "report", baseline, log)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "m 1: 2 predictions, no timestamps"
    code, out, _ = _run(capsys, "report", baseline, log, "--json")
    assert json.loads(out)["window_seconds"] == 0.0


def test_a_log_of_predictions_only_reports_prediction_drift(tmp_path, capsys):
    # A model that logs no features: `features` null or absent, the predicted label only.
    baseline = tmp_path / "baseline.json"
    Baseline.fit({"prediction": ["yes"] * 3 + ["no"]}).save(baseline)
    lines = [_event(None, "yes"), _event(None, "no"), _event(None, "maybe"), _event(None, None)]
    del lines[0]["features"]
    log = _write_lines(tmp_path / "inference.log", lines)
    code, out, err = _run(capsys, "report", baseline, log, "--json")
    assert (code, err) == (0, "")
    (prediction,) = json.loads(out)["features"]
    assert (prediction["feature"], prediction["count"]) == ("prediction", 4)
    assert prediction["missing"] == 1
    assert [(b["bin"], b["current"]) for b in prediction["bins"]] == [
        ("yes", 0.25),
        ("no", 0.25),
        ("__other__", 0.25),
        ("__missing__", 0.25),
    ]
    assert prediction["out_of_range_share"] == pytest.approx(1 / 3)


def test_a_log_without_any_prediction_warns_that_all_are_missing(tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    Baseline.fit({"prediction": ["yes", "no"]}).save(baseline)
    log = _write_lines(tmp_path / "inference.log", [_event(None, None)] * 2)
    code, out, err = _run(capsys, "report", baseline, log, "--json")
    assert code == 0
    assert err == (
        "python -m mlobs.drift: warning: no counted line has feature 'prediction': "
        "all counted as missing\n"
    )
    assert json.loads(out)["features"][0]["missing"] == 2
