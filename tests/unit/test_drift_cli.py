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
from mlobs.drift.offline import log_drift
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
    fitted_on = f"fitted on 500 rows of {table} -> {output}"
    assert out == f"4 features (2 numeric, 2 categorical) {fitted_on}\n"
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
    code, _, err = _run(
        capsys, "report", baseline_path, log, "--json", "-o", tmp_path / "r.json",
        "--min-samples", str(online["min_samples"]),
    )  # fmt: skip
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
        "t.csv line 3: not valid CSV (...",
    ),
    "no number at all": (
        "t.csv",
        b"a,b\n,1\n,2\n",
        ["--numeric", "a"],
        "t.csv: baseline feature 'a' has no finite value: every value is missing, NaN or infinite",
    ),
    "not UTF-8": (
        "t.csv",
        b"a,b\n\xff,1\n",
        ["--numeric", "a"],
        "t.csv: not UTF-8 text (invalid start byte at byte 4)",
    ),
    "malformed JSON line": (
        "t.jsonl",
        b'{"a": 1}\n{"a": \n',
        ["--numeric", "a"],
        "t.jsonl line 2: not valid JSON (...",
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
        "t.csv: baseline feature 'a': values span more than 1.8e308: their quantiles overflow",
    ),
    "numbers too far apart, each twice": (  # a quantile exactly at one: inf * 0, no warning
        "t.csv",
        b"a\n-1.7e308\n-1.7e308\n1.7e308\n1.7e308\n",
        ["--numeric", "a", "--bins", "3"],
        "t.csv: baseline feature 'a': values span more than 1.8e308: their quantiles overflow",
    ),
    "a categorical column named like the prediction feature": (
        "t.csv",
        b"prediction,label\na,b\n",
        ["--categorical", "prediction", "--prediction", "label"],
        "feature 'prediction' is chosen twice (with --prediction)",
    ),
}


def _assert_one_line_error(code: int, out: str, err: str, message: str) -> None:
    """Exit code 2 and `message` as the one line on stderr; a message ending in "..." is the
    start of the line (the rest is the library's wording)."""
    assert code == 2
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    if message.endswith("..."):
        assert err.startswith(ERROR_PREFIX + message.removesuffix("...")), err
    else:
        assert err == f"{ERROR_PREFIX}{message}\n"


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


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2
    message = "python -m mlobs.drift: error: the following arguments are required: COMMAND\n"
    assert capsys.readouterr().err.endswith(message)


OPTION_CASES = {
    "one bin": (["--bins", "1"], "argument --bins: 1 is less than 2"),
    "no category": (["--max-categories", "0"], "argument --max-categories: 0 is less than 1"),
    "bins not a number": (["--bins", "x"], "argument --bins: invalid integer value: 'x'"),
    "an unknown format": (
        ["--format", "xml"],
        "argument --format: invalid choice: 'xml' (choose from 'csv', 'jsonl')",
    ),
}


@pytest.mark.parametrize("case", OPTION_CASES.values(), ids=OPTION_CASES.keys())
def test_options_out_of_range_are_usage_errors(tmp_path, capsys, case):
    options, message = case
    table = _write_csv(tmp_path / "t.csv", ["a"], [[1], [2]])
    with pytest.raises(SystemExit) as exit_:
        main(["fit", str(table), "--numeric", "a", *options, "-o", str(tmp_path / "b.json")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.endswith(f"python -m mlobs.drift fit: error: {message}\n")
    assert not (tmp_path / "b.json").exists()


def test_the_smallest_allowed_bins_and_categories_are_accepted(tmp_path, capsys):
    table = _write_csv(tmp_path / "t.csv", ["a", "c"], [[1, "u"], [2, "v"], [3, "v"], [4, "w"]])
    output = tmp_path / "b.json"
    code, _, err = _run(
        capsys, "fit", table, "--numeric", "a", "--categorical", "c", "--bins", 2,
        "--max-categories", 1, "-o", output,
    )  # fmt: skip
    assert (code, err) == (0, "")
    fitted = Baseline.load(output).features
    assert fitted["a"].bins.edges == (2.5,)  # the median: two bins
    assert fitted["c"].bins.categories == ("v",)  # the most frequent only


def test_by_default_ten_bins_and_the_twenty_most_frequent_categories(tmp_path, capsys):
    # Category c<i> occurs i + 1 times: c5 to c24 are the 20 most frequent.
    categories = [f"c{i}" for i in range(25) for _ in range(i + 1)]
    rows = [[n, c] for n, c in enumerate(categories)]
    table = _write_csv(tmp_path / "t.csv", ["n", "c"], rows)
    code, _, err = _run(
        capsys, "fit", table, "--numeric", "n", "--categorical", "c", "-o", tmp_path / "b.json"
    )
    assert (code, err) == (0, "")
    fitted = Baseline.load(tmp_path / "b.json").features
    assert len(fitted["n"].bins.edges) == 9
    assert set(fitted["c"].bins.categories) == {f"c{i}" for i in range(5, 25)}


def test_blank_lines_between_rows_are_skipped(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("a\n1\n\n2\n3\n\n")
    code, out, err = _run(capsys, "fit", table, "--numeric", "a", "-o", tmp_path / "b.json")
    assert (code, err) == (0, "")
    assert out.startswith("1 features (1 numeric, 0 categorical) fitted on 3 rows of ")
    assert Baseline.load(tmp_path / "b.json").features["a"].count == 3


@pytest.mark.parametrize("columns", [20, 21])
def test_a_missing_column_error_lists_at_most_20_columns(tmp_path, capsys, columns):
    header = [f"c{i}" for i in range(columns)]
    table = _write_csv(tmp_path / "t.csv", header, [list(range(columns))])
    code, out, err = _run(capsys, "fit", table, "--numeric", "x", "-o", tmp_path / "b.json")
    shown = ", ".join(f"c{i}" for i in range(20)) + (", ..." if columns > 20 else "")
    _assert_one_line_error(code, out, err, f"{table}: no column 'x' (columns: {shown})")


def test_a_categorical_column_of_numbers_or_of_empty_cells_is_categorical(tmp_path, capsys):
    # The kind is the option's, not the data's: no number is binned, no cell needs a value.
    table = _write_csv(tmp_path / "t.csv", ["code", "note"], [[7, ""], [7, ""], [9, ""]])
    output = tmp_path / "b.json"
    code, out, err = _run(
        capsys, "fit", table, "--categorical", "code,note", "-o", output, "--bins", 2
    )
    assert (code, err) == (0, "")
    assert out.startswith("2 features (0 numeric, 2 categorical) fitted on 3 rows of ")
    fitted = Baseline.load(output).features
    assert (fitted["code"].kind, fitted["code"].bins.categories) == ("categorical", ("7", "9"))
    assert (fitted["note"].kind, fitted["note"].bins.categories) == ("categorical", ())
    assert fitted["note"].proportions == (0.0, 1.0)  # __other__, __missing__


def test_columns_are_named_once_however_the_options_list_them(tmp_path, capsys):
    table = _write_csv(tmp_path / "t.csv", ["a", "b", "c"], [[1, 2, "x"], [3, 4, "y"]])
    output = tmp_path / "b.json"
    code, out, err = _run(
        capsys, "fit", table, "--numeric", " a , b", "--numeric", "a,", "--categorical", "c,c",
        "-o", output,
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert out.startswith("3 features (2 numeric, 1 categorical) fitted on 2 rows of ")
    assert list(Baseline.load(output).features) == ["a", "b", "c"]


# file name -> the format it is read in without --format
FORMAT_BY_NAME = {
    "t.jsonl": "jsonl",
    "t.ndjson": "jsonl",
    "t.JSON": "jsonl",
    "t.csv": "csv",
    "t.txt": "csv",
}


@pytest.mark.parametrize("name", FORMAT_BY_NAME)
def test_the_file_name_or_format_option_decides_how_a_table_is_read(tmp_path, capsys, name):
    contents = {"csv": b"a\n1\n2\n3\n", "jsonl": b'{"a": 1}\n{"a": 2}\n{"a": 3}\n'}
    expected = Baseline.fit({"a": [1.0, 2.0, 3.0]})
    (tmp_path / name).write_bytes(contents[FORMAT_BY_NAME[name]])
    code, _, err = _run(capsys, "fit", tmp_path / name, "--numeric", "a", "-o", tmp_path / "b")
    assert (code, err) == (0, "")
    assert Baseline.load(tmp_path / "b") == expected
    # --format overrides the name: the other format's content is read as asked.
    other = "csv" if FORMAT_BY_NAME[name] == "jsonl" else "jsonl"
    (tmp_path / name).write_bytes(contents[other])
    code, _, err = _run(
        capsys, "fit", tmp_path / name, "--numeric", "a", "--format", other, "-o", tmp_path / "c"
    )
    assert (code, err) == (0, "")
    assert Baseline.load(tmp_path / "c") == expected


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
        "inference.log line 2: not valid JSON (...",
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
    # Read as bytes, so the message names the line, as for any other malformed line.
    "not UTF-8": (
        b'{"message": "inference"}\n{"message": "\xff"}\n',
        "inference.log line 2: not valid JSON (str is not valid UTF-8...",
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
    "not JSON": (b"{", "baseline.json: not JSON (..."),
    "not a baseline": (
        b'{"features": []}',
        "baseline.json: not a baseline: format is None, expected 'mlobs.baseline/v1'",
    ),
    "a list": (
        b"[]",
        "baseline.json: not a baseline: format is 'list', expected 'mlobs.baseline/v1'",
    ),
    "another format": (
        b'{"format": "mlobs.baseline/v0", "features": []}',
        "baseline.json: not a baseline: format is 'mlobs.baseline/v0', expected "
        "'mlobs.baseline/v1'",
    ),
    "an unknown kind": (
        _baseline_file(kind="ordinal"),
        "baseline.json: not a baseline: feature entry 0: "
        "kind 'ordinal' is neither numeric nor categorical",
    ),
    "proportions for fewer bins": (
        _baseline_file(proportions=[1.0]),
        "baseline.json: not a baseline: feature entry 0: "
        "baseline feature 'x': 1 proportions for 11 bins",
    ),
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
        "baseline.json: not a baseline: feature entry 0: invalid literal for int()...",
    ),
    "count zero": (
        _baseline_file(count=0),
        "baseline.json: not a baseline: feature entry 0: "
        "baseline feature 'x': count 0 is not positive",
    ),
    "a proportion not a number": (
        _baseline_file(proportions=[0.5, 0.5, "x"]),
        "baseline.json: not a baseline: feature entry 0: could not convert string to float: 'x'",
    ),
    "low not a number": (
        _baseline_file(low=None),
        "baseline.json: not a baseline: feature entry 0: float() argument must be...",
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


def test_a_baseline_of_one_row_is_used(tmp_path, capsys, monkeypatch):
    """The smallest baseline the spec allows (count 1) gives a report, not an error."""
    (tmp_path / "baseline.json").write_bytes(_baseline_file(count=1))
    _write_lines(tmp_path / "inference.log", [_event({"x": 1.0}, "a")])
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, "report", "baseline.json", "inference.log")
    assert (code, err) == (0, "")
    row = out.splitlines()[-1].split()
    assert row[:3] == ["x", "numeric", "1"]
    assert float(row[8]) > 0  # the critical value of PSI, which divides by the count


def test_unreadable_logs_are_refused_clearly(tmp_path, capsys, monkeypatch):
    Baseline.fit({"x": [1.0, 2.0, 3.0]}).save(tmp_path / "baseline.json")
    (tmp_path / "folder.log").mkdir()
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, "report", "baseline.json", "absent.log")
    _assert_one_line_error(code, out, err, "cannot read absent.log: No such file or directory")
    code, out, err = _run(capsys, "report", "baseline.json", "folder.log")
    _assert_one_line_error(code, out, err, "cannot read folder.log: Is a directory")


def test_an_error_stays_one_line_when_a_file_name_holds_a_line_break(tmp_path, capsys):
    Baseline.fit({"x": [1.0, 2.0, 3.0]}).save(tmp_path / "baseline.json")
    log = tmp_path / "first\nsecond.log"
    code, out, err = _run(capsys, "report", tmp_path / "baseline.json", log)
    assert (code, out) == (2, "")
    one_line = f"{tmp_path}/first second.log"
    assert err == f"{ERROR_PREFIX}cannot read {one_line}: No such file or directory\n"


def test_outputs_get_the_mode_a_plain_open_would_give(golden, tmp_path, capsys):
    table = _write_csv(tmp_path / "t.csv", ["x"], [[1], [2], [3]])
    previous = os.umask(0o022)
    try:
        _run(capsys, "fit", table, "--numeric", "x", "-o", tmp_path / "b.json")
        _run(capsys, "report", *golden, "-o", tmp_path / "report.txt")
    finally:
        os.umask(previous)
    for output in ("b.json", "report.txt"):
        assert (tmp_path / output).stat().st_mode & 0o777 == 0o644, output  # not executable


def test_reports_are_utf_8_whatever_the_locale(tmp_path):
    # A POSIX locale (ASCII), as on a bare server: categories read as UTF-8 are written as UTF-8.
    Baseline.fit({"city": ["Köln", "Zürich"]}).save(tmp_path / "baseline.json")
    _write_lines(tmp_path / "inference.log", [_event({"city": "Köln"}, None)])
    env = {**os.environ, "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    files = [str(tmp_path / name) for name in ("baseline.json", "inference.log")]
    done = subprocess.run(
        [sys.executable, "-m", "mlobs.drift", "report", *files, "--per-bin",
         "-o", str(tmp_path / "report.txt")],
        capture_output=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "report.txt").read_bytes().decode("utf-8")
    section = text.split("\ncity:\n")[1].splitlines()
    assert [line.split()[0] for line in section] == [
        "bin",
        "Köln",
        "Zürich",
        "__other__",
        "__missing__",
    ]


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


# --- the text and JSON reports, exactly -----------------------------------------------------

# A hand-written baseline: x and y numeric (training range -5..15 and 0..2), w and the predicted
# label categorical; w was fitted on only 10 rows, so its critical value is large.
GOLDEN_BASELINE = {
    "format": "mlobs.baseline/v1",
    "features": [
        {"name": "x", "kind": "numeric", "count": 1000, "edges": [0, 10], "low": -5, "high": 15,
         "proportions": [0.25, 0.5, 0.25, 0]},
        {"name": "y", "kind": "numeric", "count": 1000, "edges": [1], "low": 0, "high": 2,
         "proportions": [0.5, 0.5, 0]},
        {"name": "w", "kind": "categorical", "count": 10, "categories": ["a"],
         "proportions": [1, 0, 0]},
        {"name": "prediction", "kind": "categorical", "count": 1000, "categories": ["yes", "no"],
         "proportions": [0.5, 0.5, 0, 0]},
    ],
}  # fmt: skip
# 100 lines, one a second from 12:00:00; y is in none of them.
_GOLDEN_X = [-10.0] * 4 + [-1.0] * 22 + [5.0] * 49 + [12.0] * 22 + [20.0] * 3  # 7 out of range
_GOLDEN_W = ["a"] * 92 + ["b"] * 8
_GOLDEN_LABELS = ["yes"] * 63 + ["no"] * 36 + ["maybe"]

# Statistics computed by hand from the bin counts (PSI with shares floored at 1e-4; the critical
# value chi2_0.95(bins - 1) * (1/1000 + 1/100), chi2 by Wilson-Hilferty; KS numeric only).
GOLDEN_TABLE = """\
m 1: 100 predictions, 2026-03-01 12:00:00 to 2026-03-01 12:01:39 UTC (99 s)

feature     kind         count  missing  out of range      PSI      KS      JS  critical  drift
x           numeric        100        0         7.0 %   0.0006  0.0100  0.0104    0.0855  -
y           numeric        100      100             -  17.7249       -  1.0000    0.0653  PSI > 0.2, significant
w           categorical    100        0         8.0 %   0.5408       -  0.2030    0.6531  PSI > 0.2
prediction  categorical    100        0         1.0 %   0.1216       -  0.1366    0.0855  significant
"""  # noqa: E501
GOLDEN_BINS = """
x:
  bin          baseline  current
  00:(-inf,0]   25.00 %  26.00 %
  01:(0,10]     50.00 %  49.00 %
  02:(10,inf)   25.00 %  25.00 %
  missing        0.00 %   0.00 %

y:
  bin          baseline   current
  00:(-inf,1]   50.00 %    0.00 %
  01:(1,inf)    50.00 %    0.00 %
  missing        0.00 %  100.00 %

w:
  bin          baseline  current
  a            100.00 %  92.00 %
  __other__      0.00 %   8.00 %
  __missing__    0.00 %   0.00 %

prediction:
  bin          baseline  current
  yes           50.00 %  63.00 %
  no            50.00 %  36.00 %
  __other__      0.00 %   1.00 %
  __missing__    0.00 %   0.00 %
"""
Y_WARNING = (
    "python -m mlobs.drift: warning: no counted line has feature 'y': all counted as missing\n"
)


@pytest.fixture
def golden(tmp_path: Path) -> tuple[Path, Path]:
    """The golden baseline file and log."""
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(GOLDEN_BASELINE))
    lines = [
        _event({"x": x, "w": w}, label, timestamp=f"2026-03-01T12:{i // 60:02d}:{i % 60:02d}Z")
        for i, (x, w, label) in enumerate(zip(_GOLDEN_X, _GOLDEN_W, _GOLDEN_LABELS, strict=True))
    ]
    return baseline, _write_lines(tmp_path / "inference.log", lines)


def test_the_text_report_is_the_documented_table(golden, capsys):
    code, out, err = _run(capsys, "report", *golden)
    assert (code, err) == (0, Y_WARNING)
    assert out == GOLDEN_TABLE


def test_the_per_bin_report_adds_each_bins_shares(golden, capsys):
    code, out, err = _run(capsys, "report", *golden, "--per-bin")
    assert (code, err) == (0, Y_WARNING)
    assert out == GOLDEN_TABLE + GOLDEN_BINS


# Options of `report` -> the text table's drift column on the golden log; --json's
# exceeds_threshold must agree with it (a feature exceeds when the column says "PSI >").
DRIFT_TESTS = {
    # 0.55 is between w's PSI (0.5408) and y's (17.7249).
    "a higher PSI threshold": (
        ["--psi-threshold", "0.55"],
        {"x": "-", "y": "PSI > 0.55, significant", "w": "-", "prediction": "significant"},
    ),
    # Every feature of the golden log has 100 values: at a minimum of 100 the verdicts stand...
    "min_samples at the count": (
        ["--min-samples", "100"],
        {"x": "-", "y": "PSI > 0.2, significant", "w": "PSI > 0.2", "prediction": "significant"},
    ),
    # ... at 101 PSI is noise (the DataDrift rule has none then), and the table says why.
    "min_samples over the count": (
        ["--min-samples", "101"],
        {
            "x": "fewer than 101 values",
            "y": "fewer than 101 values, significant",
            "w": "fewer than 101 values",
            "prediction": "fewer than 101 values, significant",
        },
    ),
}


@pytest.mark.parametrize(("options", "column"), DRIFT_TESTS.values(), ids=DRIFT_TESTS)
def test_the_threshold_and_minimum_decide_which_features_have_drifted(
    golden, capsys, options, column
):
    code, out, _ = _run(capsys, "report", *golden, *options)
    assert code == 0
    assert {row["feature"]: row["drift"] for row in _text_table(out).values()} == column
    code, out, _ = _run(capsys, "report", *golden, *options, "--json")
    report = json.loads(out)
    option, value = options
    assert report[option.removeprefix("--").replace("-", "_")] == json.loads(value)
    exceeds = {f["feature"]: f["exceeds_threshold"] for f in report["features"]}
    assert exceeds == {name: cell.startswith("PSI >") for name, cell in column.items()}
    assert all(f["psi"] is not None for f in report["features"])  # shown, if not counted


def test_a_minimum_of_no_values_is_a_usage_error(golden, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["report", *map(str, golden), "--min-samples", "0"])
    assert exit_.value.code == 2
    message = "argument --min-samples: 0 is less than 1"
    assert capsys.readouterr().err.endswith(f"python -m mlobs.drift report: error: {message}\n")


def test_the_library_reports_a_log_with_the_clis_defaults(golden):
    """log_drift, for a team's own scripts: a PSI threshold of 0.2 and no minimum of values, as
    the command line's defaults."""
    report = log_drift(Baseline.load(golden[0]), [golden[1]]).report
    assert (report.psi_threshold, report.min_samples) == (0.2, 1)
    assert [f.exceeds_threshold for f in report.features] == [False, True, True, False]


# The golden log's statistics as /drift's JSON fields, from the table above (4 decimals).
GOLDEN_FIELDS = {
    # feature: kind, count, missing, out_of_range_share, psi, ks, js, critical_value
    "x": ("numeric", 100, 0, 0.07, 0.0006, 0.0100, 0.0104, 0.0855),
    "y": ("numeric", 100, 100, None, 17.7249, None, 1.0, 0.0653),
    "w": ("categorical", 100, 0, 0.08, 0.5408, None, 0.2030, 0.6531),
    "prediction": ("categorical", 100, 0, 0.01, 0.1216, None, 0.1366, 0.0855),
}
GOLDEN_VERDICTS = {  # feature: significant, exceeds_threshold
    "x": (False, False),
    "y": (True, True),
    "w": (False, True),
    "prediction": (True, False),
}


def _approx(value: float | None) -> object:
    return None if value is None else pytest.approx(value, abs=5e-5)


def test_the_json_report_is_the_json_of_drift_pretty_printed(golden, capsys):
    code, out, err = _run(capsys, "report", *golden, "--json")
    assert (code, err) == (0, Y_WARNING)
    # Indented by two, in /drift's key order, one line per value: readable and diffable.
    assert out.splitlines()[:9] == [
        "{",
        '  "model": "m",',
        '  "model_version": "1",',
        '  "window_seconds": 99.0,',
        '  "psi_threshold": 0.2,',
        '  "min_samples": 1,',
        '  "features": [',
        "    {",
        '      "feature": "x",',
    ]
    assert out.endswith("\n  ]\n}\n")
    report = json.loads(out)
    keys = ["model", "model_version", "window_seconds", "psi_threshold", "min_samples", "features"]
    assert list(report) == keys
    names = ["kind", "count", "missing", "out_of_range_share", "psi", "ks", "js", "critical_value"]
    for feature in report["features"]:
        expected = GOLDEN_FIELDS[feature["feature"]]
        assert [feature[n] for n in names] == [*expected[:3], *map(_approx, expected[3:])]
        verdict = (feature["significant"], feature["exceeds_threshold"])
        assert verdict == GOLDEN_VERDICTS[feature["feature"]]
    shares = {
        f["feature"]: [(b["bin"], b["baseline"], b["current"]) for b in f["bins"]]
        for f in report["features"]
    }
    assert shares["x"] == [
        ("00:(-inf,0]", 0.25, 0.26),
        ("01:(0,10]", 0.5, 0.49),
        ("02:(10,inf)", 0.25, 0.25),
        ("missing", 0.0, 0.0),
    ]
    assert shares["prediction"] == [
        ("yes", 0.5, 0.63),
        ("no", 0.5, 0.36),
        ("__other__", 0.0, 0.01),
        ("__missing__", 0.0, 0.0),
    ]


def test_the_report_written_to_a_file_is_what_stdout_shows(golden, tmp_path, capsys):
    output = tmp_path / "report.txt"
    code, out, _ = _run(capsys, "report", *golden, "-o", output)
    assert (code, out) == (0, "")
    assert output.read_text() == GOLDEN_TABLE


def test_a_report_that_cannot_be_written_names_the_output(golden, tmp_path, capsys):
    output = tmp_path / "absent" / "report.txt"
    code, out, err = _run(capsys, "report", *golden, "-o", output)
    assert (code, out) == (2, "")
    assert err == Y_WARNING + f"{ERROR_PREFIX}cannot write {output}: No such file or directory\n"
