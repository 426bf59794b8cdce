"""The drift command: fit a baseline from a user's table, report the drift of an inference log.

The offline report must be what GET /drift says for the same requests, and every kind of bad
input must end in one line naming the file (and line and column), exit code 2, nothing written.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from mlobs.drift import Baseline, NumericBins, psi_from_counts
from mlobs.drift.baseline import FeatureBaseline
from mlobs.drift.cli import main
from services.anomaly_detector.data import FEATURES, simulate_normal
from services.anomaly_detector.model import LABELS, AnomalyDetector

ERROR_PREFIX = "python -m mlobs.drift: error: "


def _run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _write_lines(path: Path, lines: list[dict | str]) -> Path:
    path.write_bytes(
        b"".join(
            (line.encode() if isinstance(line, str) else orjson.dumps(line)) + b"\n"
            for line in lines
        )
    )
    return path


# --- fit ------------------------------------------------------------------------------------


def test_fit_from_csv_equals_fitting_in_python(tmp_path, capsys):
    rng = np.random.default_rng(3)
    age = [
        None if i % 17 == 0 else round(float(v), 2) for i, v in enumerate(rng.normal(40, 9, 500))
    ]
    income = rng.lognormal(10, 1, 500).round(1).tolist()
    country = [
        None if i % 23 == 0 else str(c) for i, c in enumerate(rng.choice(["de", "fr", "it"], 500))
    ]
    predicted = rng.choice(["approve", "reject"], 500, p=[0.8, 0.2]).tolist()
    rows = [
        ["" if a is None else a, i, "" if c is None else c, p]
        for a, i, c, p in zip(age, income, country, predicted, strict=True)
    ]
    table = _write_csv(tmp_path / "train.csv", ["age", "income", "country", "predicted"], rows)
    output = tmp_path / "baseline.json"

    code, out, err = _run(
        capsys, "fit", table, "--numeric", "age,income", "--categorical", "country",
        "--prediction", "predicted", "--bins", 8, "-o", output,
    )  # fmt: skip

    assert (code, err) == (0, "")
    assert "4 features (2 numeric, 2 categorical) fitted on 500 rows" in out
    expected = Baseline.fit(
        {"age": age, "income": income, "country": country, "prediction": predicted},
        bins=8,
        categorical={"country", "prediction"},
    )
    fitted = Baseline.load(output)
    assert fitted == expected
    assert len(fitted.features["age"].bins.edges) == 7
    # The empty cells (every 17th row of 500) are the missing bin.
    assert fitted.features["age"].proportions[-1] == pytest.approx(30 / 500)


def test_fit_from_json_lines_takes_nulls_and_absent_keys_as_missing(tmp_path, capsys):
    lines = [
        {"x": 1.5, "grade": 1},
        {"x": None, "grade": 2},
        {"grade": 2},  # x absent
        {"x": 3, "grade": None, "other": "ignored"},
        {"x": 4.25, "grade": 3},
    ]
    table = _write_lines(tmp_path / "train.jsonl", lines)
    output = tmp_path / "baseline.json"
    code, _, err = _run(
        capsys, "fit", table, "--numeric", "x", "--categorical", "grade", "--bins", 2, "-o", output
    )
    assert (code, err) == (0, "")
    expected = Baseline.fit(
        {"x": [1.5, None, None, 3.0, 4.25], "grade": ["1", "2", "2", None, "3"]},
        bins=2,
        categorical={"grade"},
    )
    assert Baseline.load(output) == expected
    assert Baseline.load(output).features["grade"].bins.categories == ("2", "1", "3")


# --- report ---------------------------------------------------------------------------------


def _training_table(model: AnomalyDetector, path: Path) -> Path:
    sample = np.column_stack([model.params.training_sample[f] for f in FEATURES])
    predicted = np.where(model.score(sample) > model.params.threshold, LABELS[1], LABELS[0])
    return _write_csv(
        path, [*FEATURES, "label"], [[*r, p] for r, p in zip(sample, predicted, strict=True)]
    )


def test_a_fitted_baseline_is_served_and_the_offline_report_equals_drift(
    serve, anomaly_model, tmp_path, capsys
):
    table = _training_table(anomaly_model, tmp_path / "train.csv")
    baseline_path = tmp_path / "baseline.json"
    code, _, err = _run(
        capsys, "fit", table, "--numeric", ",".join(FEATURES), "--prediction", "label",
        "-o", baseline_path,
    )  # fmt: skip
    assert (code, err) == (0, "")
    model = AnomalyDetector(anomaly_model.params, Baseline.load(baseline_path))
    rows = simulate_normal(300, np.random.default_rng(6), load_shift=1.5)
    started = time.monotonic()
    with serve(model) as client:
        for row in rows:
            body = {"features": dict(zip(FEATURES, map(float, row), strict=True))}
            assert client.post("/predict", json=body).status_code == 200
        assert client.post("/predict", json={"features": {}}).status_code == 422  # not counted
        online = client.get("/drift").json()
    elapsed = time.monotonic() - started

    log = tmp_path / "inference.log"  # the serve fixture's MLOBS_LOG_FILE
    code, _, err = _run(capsys, "report", baseline_path, log, "--json", "-o", tmp_path / "r.json")
    assert (code, err) == (0, "")
    offline = json.loads((tmp_path / "r.json").read_text())
    # Same counts, same statistics; only the window differs: the server's setting vs the log's span.
    assert 0 <= offline.pop("window_seconds") <= elapsed
    online.pop("window_seconds")
    assert offline == online
    temperature = next(f for f in offline["features"] if f["feature"] == "temperature_c")
    assert temperature["count"] == 300 and temperature["exceeds_threshold"] is True

    # The text report shows the same numbers, one row per feature.
    code, text, _ = _run(capsys, "report", baseline_path, log)
    assert code == 0
    assert text.startswith("anomaly-detector 1.0.0: 300 predictions")
    table = _text_table(text)
    assert list(table) == [feature["feature"] for feature in offline["features"]]
    for feature in offline["features"]:
        row = table[feature["feature"]]
        assert (row["kind"], row["count"], row["missing"], row["PSI"]) == (
            feature["kind"],
            str(feature["count"]),
            str(feature["missing"]),
            f"{feature['psi']:.4f}",
        )
        assert row["drift"].startswith("PSI > 0.2") == feature["exceeds_threshold"], row


def _text_table(text: str) -> dict[str, dict[str, str]]:
    """The text report's feature table: feature -> column -> cell (cells are 2+ spaces apart)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("feature "))
    header = re.split(r"\s{2,}", lines[start].strip())
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.append(dict(zip(header, re.split(r"\s{2,}", line.strip()), strict=True)))
    return {row["feature"]: row for row in rows}


def _event(features: dict | None, prediction: str | None, **fields) -> dict:
    return {
        "timestamp": "2026-01-01T00:00:00.000000Z",
        "level": "info",
        "message": "inference",
        "model": "m",
        "model_version": "1",
        "prediction": prediction,
        "status": "success",
        "features": features,
        **fields,
    }


def _binned_one_by_one(feature: FeatureBaseline, values: list) -> tuple[np.ndarray, int]:
    """Bin counts and out-of-range count, value by value, as the report should count them."""
    counts = np.zeros(feature.bins.size)
    outside = 0
    for value in values:
        if isinstance(feature.bins, NumericBins):
            number = value if isinstance(value, float) else math.nan  # None, a word: missing
            counts[feature.bins.index(number)] += 1
            outside += number < feature.bins.low or number > feature.bins.high
        else:
            counts[feature.bins.index(value)] += 1
            outside += value is not None and value not in feature.bins.categories
    return counts, outside


def test_the_offline_report_counts_every_counted_line_value_by_value(tmp_path, capsys):
    rng = np.random.default_rng(9)
    baseline = Baseline.fit(
        {"x": rng.normal(size=1000).tolist(), "prediction": ["yes"] * 700 + ["no"] * 300}
    )
    baseline_path = tmp_path / "baseline.json"
    baseline.save(baseline_path)
    values: list[dict] = [{"x": float(v)} for v in rng.normal(0.5, 2.0, 400)]
    values += [{}, {"x": None}, {"x": "n/a"}]  # absent, null (NaN is logged as null), a word
    labels = rng.choice(["yes", "no", "maybe"], len(values)).tolist()
    labels[:2] = [None, None]  # no prediction logged: missing
    counted = [
        _event(v, p, timestamp=f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z")
        for i, (v, p) in enumerate(zip(values, labels, strict=True))
    ]
    ignored = [
        _event(None, None, status="server_error", error_type="ValueError"),
        _event(None, None, status="client_error"),
        {"timestamp": "2026-01-01T00:00:00Z", "message": "server_ready", "level": "info"},
        "",  # a blank line
    ]
    # A log and its rotated predecessor, lines of both kinds in each.
    _write_lines(tmp_path / "inference.log.1", [*counted[:200], *ignored])
    _write_lines(tmp_path / "inference.log", [*ignored, *counted[200:]])

    code, out, err = _run(
        capsys, "report", baseline_path, tmp_path / "inference.log.1", tmp_path / "inference.log",
        "--json",
    )  # fmt: skip
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["window_seconds"] == len(values) - 1  # one line a second
    assert (report["model"], report["model_version"]) == ("m", "1")
    by_feature = {f["feature"]: f for f in report["features"]}
    logged = {"x": [v.get("x") for v in values], "prediction": labels}
    for name, feature in baseline.features.items():
        counts, outside = _binned_one_by_one(feature, logged[name])
        drift = by_feature[name]
        assert drift["count"] == len(values)
        assert drift["missing"] == counts[-1] == (3 if name == "x" else 2)
        assert drift["out_of_range_share"] == pytest.approx(outside / (len(values) - counts[-1]))
        assert [b["current"] for b in drift["bins"]] == pytest.approx(counts / len(values))
        expected_psi = psi_from_counts(np.array(feature.proportions), counts)
        assert drift["psi"] == pytest.approx(expected_psi, abs=1e-9)


def test_a_log_of_several_model_versions_needs_a_choice(tmp_path, capsys):
    baseline = Baseline.fit({"x": [1.0, 2.0, 3.0]})
    baseline.save(tmp_path / "baseline.json")
    log = _write_lines(
        tmp_path / "inference.log",
        [_event({"x": 1.0}, "a"), _event({"x": 2.0}, "a", model_version="2")] * 3,
    )
    code, _, err = _run(capsys, "report", tmp_path / "baseline.json", log)
    assert code == 2
    assert (
        err
        == f"{ERROR_PREFIX}{log} holds predictions of m 1, m 2: choose one with --model-version\n"
    )
    code, out, _ = _run(
        capsys, "report", tmp_path / "baseline.json", log, "--model-version", "2", "--json"
    )
    assert code == 0 and json.loads(out)["features"][0]["count"] == 3
    code, _, err = _run(capsys, "report", tmp_path / "baseline.json", log, "--model", "other")
    assert code == 2 and "no successful inference events of --model other in" in err


def test_the_per_bin_table_lists_every_bin(tmp_path, capsys):
    baseline = Baseline.fit({"x": list(range(100)), "prediction": ["a", "b"] * 50})
    baseline.save(tmp_path / "baseline.json")
    log = _write_lines(tmp_path / "inference.log", [_event({"x": 5.0}, "a")] * 10)
    code, out, _ = _run(capsys, "report", tmp_path / "baseline.json", log, "--per-bin")
    assert code == 0
    for feature in baseline.features.values():
        section = out.split(f"\n{feature.name}:\n", 1)[1].split("\n\n")[0].splitlines()
        assert [line.split()[0] for line in section[1:]] == feature.bins.labels


def test_the_module_runs_as_a_command(tmp_path):
    table = _write_csv(tmp_path / "t.csv", ["x"], [[1], [2], [3]])
    command = [sys.executable, "-m", "mlobs.drift", "fit", str(table), "--numeric"]
    done = subprocess.run(
        [*command, "x", "-o", str(tmp_path / "b.json")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert Baseline.load(tmp_path / "b.json").features["x"].count == 3
    failed = subprocess.run(
        [*command, "y", "-o", str(tmp_path / "c.json")], capture_output=True, text=True, timeout=60
    )
    assert failed.returncode == 2
    assert failed.stderr == f"{ERROR_PREFIX}{table}: no column 'y' (columns: x)\n"
    assert not (tmp_path / "c.json").exists()


# --- bad input: one line naming the place, exit code 2, nothing written ------------------------

FIT_CASES = {
    "missing column": (
        "t.csv",
        b"a,b\n1,2\n",
        ["--numeric", "c"],
        "t.csv: no column 'c' (columns: a, b)",
    ),
    "not a number": (
        "t.csv",
        b"a,b\n1,2\nx,3\n",
        ["--numeric", "a"],
        "t.csv line 3: column 'a': 'x' is not a number",
    ),
    "empty file": ("t.csv", b"", ["--numeric", "a"], "t.csv is empty"),
    "header only": ("t.csv", b"a,b\n", ["--numeric", "a"], "t.csv has no data rows"),
    "ragged row": (
        "t.csv",
        b"a,b\n1,2\n3\n",
        ["--numeric", "a"],
        "t.csv line 3: 1 fields, the header has 2",
    ),
    "unterminated quote": (
        "t.csv",
        b'a\n1\n"2\n',
        ["--numeric", "a"],
        "t.csv line 3: not valid CSV",
    ),
    "no number at all": (
        "t.csv",
        b"a,b\n,1\n,2\n",
        ["--numeric", "a"],
        "t.csv: baseline feature 'a' has no finite value",
    ),
    "not UTF-8": ("t.csv", b"a,b\n\xff,1\n", ["--numeric", "a"], "t.csv: not UTF-8 text"),
    "malformed JSON line": (
        "t.jsonl",
        b'{"a": 1}\n{"a": \n',
        ["--numeric", "a"],
        "t.jsonl line 2: not valid JSON",
    ),
    "JSON line not an object": (
        "t.jsonl",
        b"[1, 2]\n",
        ["--numeric", "a"],
        "t.jsonl line 1: not a JSON object",
    ),
    "JSON column missing": (
        "t.jsonl",
        b'{"a": 1}\n',
        ["--numeric", "b"],
        "t.jsonl: no column 'b' (columns: a)",
    ),
    "JSON string number": (
        "t.jsonl",
        b'{"a": 1}\n{"a": "x"}\n',
        ["--numeric", "a"],
        "t.jsonl line 2: column 'a': 'x' is not a number",
    ),
    "JSON boolean number": (
        "t.jsonl",
        b'{"a": true}\n',
        ["--numeric", "a"],
        "t.jsonl line 1: column 'a': True is not a number",
    ),
    "JSON list category": (
        "t.jsonl",
        b'{"a": [1]}\n',
        ["--categorical", "a"],
        "t.jsonl line 1: column 'a': [1] is not a category",
    ),
    "empty JSON lines": ("t.jsonl", b"\n\n", ["--numeric", "a"], "t.jsonl is empty"),
    "no column chosen": (
        "t.csv",
        b"a\n1\n",
        [],
        "choose columns with --numeric, --categorical or --prediction",
    ),
    "a column of two kinds": (
        "t.csv",
        b"a\n1\n",
        ["--numeric", "a", "--prediction", "a"],
        "column 'a' is chosen as numeric and as categorical",
    ),
    "a column numeric and categorical": (
        "t.csv",
        b"a\n1\n",
        ["--numeric", "a", "--categorical", "a"],
        "column 'a' is chosen as numeric and as categorical",
    ),
    "numbers too far apart to bin": (
        "t.csv",
        b"a\n-1.7e308\n1.7e308\n",
        ["--numeric", "a"],
        "t.csv: baseline feature 'a': values span more than 1.8e308",
    ),
}


def _assert_one_line_error(code: int, out: str, err: str, message: str) -> None:
    assert code == 2
    assert out == ""
    assert err.startswith(ERROR_PREFIX) and err.endswith("\n") and err.count("\n") == 1, err
    assert message in err


@pytest.mark.filterwarnings("error")  # a warning would be a line of its own on stderr
@pytest.mark.parametrize("case", FIT_CASES.values(), ids=FIT_CASES.keys())
def test_bad_training_files_are_refused_clearly(tmp_path, capsys, monkeypatch, case):
    name, content, options, message = case
    (tmp_path / name).write_bytes(content)
    output = tmp_path / "out" / "baseline.json"
    output.parent.mkdir()
    output.write_text("the previous baseline")
    monkeypatch.chdir(tmp_path)  # messages name the file as given
    code, out, err = _run(capsys, "fit", name, *options, "-o", output)
    _assert_one_line_error(code, out, err, message)
    assert output.read_text() == "the previous baseline"
    assert os.listdir(output.parent) == ["baseline.json"]


def test_unreadable_training_files_are_refused_clearly(tmp_path, capsys):
    code, out, err = _run(
        capsys, "fit", tmp_path / "absent.csv", "--numeric", "a", "-o", tmp_path / "b.json"
    )
    _assert_one_line_error(
        code, out, err, f"cannot read {tmp_path / 'absent.csv'}: No such file or directory"
    )
    code, out, err = _run(capsys, "fit", tmp_path, "--numeric", "a", "-o", tmp_path / "b.json")
    _assert_one_line_error(code, out, err, f"cannot read {tmp_path}: Is a directory")
    assert not (tmp_path / "b.json").exists()


REPORT_CASES = {
    "malformed JSON line": (
        b'{"message": "inference"}\n{"message": \n',
        "inference.log line 2: not valid JSON",
    ),
    "empty log": (b"", "inference.log is empty"),
    "no inference events": (
        b'{"message": "server_ready"}\n',
        "no successful inference events in inference.log",
    ),
    "features not an object": (
        orjson.dumps(_event([1.0], "a")) + b"\n",
        "inference.log line 1: `features` is not a JSON object",
    ),
    "bad timestamp": (
        orjson.dumps(_event({}, "a", timestamp="yesterday")) + b"\n",
        "inference.log line 1: timestamp 'yesterday' is not ISO 8601",
    ),
    "a feature value not a scalar": (
        orjson.dumps(_event({"x": 1.0}, "a")) + b"\n" + orjson.dumps(_event({"x": [1.0]}, "a")),
        "inference.log line 2: feature 'x' is an array, not a number, a string or null",
    ),
    "a prediction not a scalar": (
        orjson.dumps(_event({"x": 1.0}, {"label": "a"})) + b"\n",
        "inference.log line 1: `prediction` is an object, not a number, a string or null",
    ),
}


@pytest.mark.parametrize("case", REPORT_CASES.values(), ids=REPORT_CASES.keys())
def test_bad_logs_are_refused_clearly(tmp_path, capsys, monkeypatch, case):
    content, message = case
    Baseline.fit({"x": [1.0, 2.0, 3.0]}).save(tmp_path / "baseline.json")
    (tmp_path / "inference.log").write_bytes(content)
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, "report", "baseline.json", "inference.log", "-o", "report.txt")
    _assert_one_line_error(code, out, err, message)
    assert not (tmp_path / "report.txt").exists()


def _baseline_file(features: object = None, **changes: object) -> bytes:
    """A baseline file of feature x, its feature entry changed, or `features` instead."""
    data = Baseline.fit({"x": [1.0, 2.0, 3.0]}).to_dict()
    data["features"][0] |= changes
    if features is not None:
        data["features"] = features
    return json.dumps(data).encode()


BASELINE_CASES = {
    "absent": (None, "cannot read baseline.json: No such file or directory"),
    "not JSON": (b"{", "baseline.json: not JSON"),
    "not a baseline": (b'{"features": []}', "baseline.json: not a baseline: format is None"),
    "a key missing": (
        b'{"format": "mlobs.baseline/v1", "features": [{"name": "x", "kind": "numeric"}]}',
        "baseline.json: not a baseline: feature entry 0 has no 'edges'",
    ),
    "no features": (
        b'{"format": "mlobs.baseline/v1"}',
        "baseline.json: not a baseline: `features` is not a list of at least one feature",
    ),
    "empty features": (
        _baseline_file(features=[]),
        "baseline.json: not a baseline: `features` is not a list of at least one feature",
    ),
    "count not a number": (
        _baseline_file(count="x"),
        "baseline.json: not a baseline: feature entry 0: invalid literal for int()",
    ),
    "count zero": (
        _baseline_file(count=0),
        "baseline.json: not a baseline: feature entry 0: baseline feature 'x': count 0 is not",
    ),
    "a proportion not a number": (
        _baseline_file(proportions=[0.5, 0.5, "x"]),
        "baseline.json: not a baseline: feature entry 0: could not convert string to float: 'x'",
    ),
    "low not a number": (
        _baseline_file(low=None),
        "baseline.json: not a baseline: feature entry 0: float() argument must be",
    ),
}


@pytest.mark.parametrize("case", BASELINE_CASES.values(), ids=BASELINE_CASES.keys())
def test_bad_baselines_are_refused_clearly(tmp_path, capsys, monkeypatch, case):
    content, message = case
    if content is not None:
        (tmp_path / "baseline.json").write_bytes(content)
    _write_lines(tmp_path / "inference.log", [_event({"x": 1.0}, "a")])
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, "report", "baseline.json", "inference.log")
    _assert_one_line_error(code, out, err, message)


def test_unreadable_logs_are_refused_clearly(tmp_path, capsys, monkeypatch):
    Baseline.fit({"x": [1.0, 2.0, 3.0]}).save(tmp_path / "baseline.json")
    (tmp_path / "folder.log").mkdir()
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, "report", "baseline.json", "absent.log")
    _assert_one_line_error(code, out, err, "cannot read absent.log: No such file or directory")
    code, out, err = _run(capsys, "report", "baseline.json", "folder.log")
    _assert_one_line_error(code, out, err, "cannot read folder.log: Is a directory")


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path, capsys, monkeypatch):
    table = _write_csv(tmp_path / "t.csv", ["x"], [[1], [2], [3]])
    output = tmp_path / "out" / "baseline.json"
    output.parent.mkdir()
    output.write_text("the previous baseline")

    def no_rename(source: object, target: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    code, out, err = _run(capsys, "fit", table, "--numeric", "x", "-o", output)
    _assert_one_line_error(code, out, err, f"cannot write {output}: No space left on device")
    assert output.read_text() == "the previous baseline"
    assert os.listdir(output.parent) == ["baseline.json"]


def test_a_baseline_feature_no_line_has_is_reported_on_stderr(tmp_path, capsys):
    # Usually the wrong baseline for this log: every value would count as missing.
    Baseline.fit({"x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0]}).save(tmp_path / "baseline.json")
    log = _write_lines(tmp_path / "inference.log", [_event({"x": 1.0}, "a")] * 3)
    code, out, err = _run(capsys, "report", tmp_path / "baseline.json", log, "--json")
    assert code == 0
    warning = "python -m mlobs.drift: warning: no counted line has feature 'y'"
    assert err == f"{warning}: all counted as missing\n"
    assert next(f for f in json.loads(out)["features"] if f["feature"] == "y")["missing"] == 3
