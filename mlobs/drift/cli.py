"""The drift command: fit a baseline from a training file, report the drift of an inference log.

    python -m mlobs.drift fit train.csv --numeric age,income --categorical country \\
        --prediction predicted_label -o artifacts/baseline.json
    python -m mlobs.drift report artifacts/baseline.json inference.log [--json] [--per-bin]

Bad input gets one line on stderr naming the file, line and column, and exit code 2; outputs are
written atomically, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mlobs.drift.baseline import PREDICTION_FEATURE, Baseline
from mlobs.drift.bins import MAX_CATEGORIES
from mlobs.drift.files import (
    InputError,
    cannot_read,
    read_table,
    table_format,
    write_atomically,
)
from mlobs.drift.monitor import DEFAULT_MIN_SAMPLES, DEFAULT_PSI_THRESHOLD
from mlobs.drift.offline import LogDrift, log_drift
from mlobs.drift.report import DriftReport, FeatureDrift, drift_json

PROG = "python -m mlobs.drift"
_COLUMNS = (
    "feature",
    "kind",
    "count",
    "missing",
    "out of range",
    "PSI",
    "KS",
    "JS",
    "critical",
    "drift",
)
BAD_INPUT = 2  # as argparse's usage errors


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in `argv` (default: sys.argv); the exit code."""
    args = _parser().parse_args(argv)
    command: Callable[[argparse.Namespace], None] = args.command
    try:
        command(args)
    except InputError as exc:
        message = " ".join(str(exc).splitlines())  # one line, whatever the message holds
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return BAD_INPUT
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Fit a drift baseline from training data; report the drift of an "
        "inference log against it.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    fit = commands.add_parser(
        "fit",
        help="fit a baseline from a CSV or JSON-lines training file",
        description="Fit the baseline.json that create_app's models load: quantile bins for "
        "numeric columns, the most frequent values for categorical ones. An empty cell or JSON "
        "null is a missing value.",
    )
    fit.add_argument(
        "table", type=Path, help="CSV with a header line, or JSON lines (one object a line)"
    )
    fit.add_argument(
        "--numeric",
        action="append",
        default=[],
        metavar="COLUMNS",
        help="numeric columns, comma-separated (repeatable)",
    )
    fit.add_argument(
        "--categorical",
        action="append",
        default=[],
        metavar="COLUMNS",
        help="categorical columns, comma-separated (repeatable)",
    )
    fit.add_argument(
        "--prediction",
        metavar="COLUMN",
        help=f"column of predicted labels, fitted as categorical feature {PREDICTION_FEATURE!r}: "
        "the servers count each predicted label under that name",
    )
    fit.add_argument(
        "--bins",
        type=_at_least(2),
        default=10,
        metavar="N",
        help="bins per numeric column, at quantiles of the data (default 10)",
    )
    fit.add_argument(
        "--max-categories",
        type=_at_least(1),
        default=MAX_CATEGORIES,
        metavar="N",
        help=f"categories kept per column, the most frequent (default {MAX_CATEGORIES})",
    )
    fit.add_argument(
        "--format",
        choices=["csv", "jsonl"],
        help="the table's format (default: jsonl for .jsonl, .ndjson, .json; else csv)",
    )
    fit.add_argument("-o", "--output", type=Path, required=True, help="the baseline JSON to write")
    fit.set_defaults(command=_fit)

    report = commands.add_parser(
        "report",
        help="drift of an inference log against a baseline (the table of GET /drift)",
        description="Count the successful predictions of a model server's inference log (its "
        "MLOBS_LOG_FILE, rotated files too) as the server counts live requests, and report PSI, "
        "KS, Jensen-Shannon and significance per feature over the whole log. Out of range: the "
        "share of present values outside the training range (numbers) or unseen (categories).",
    )
    report.add_argument("baseline", type=Path, help="the model's baseline.json")
    report.add_argument("logs", type=Path, nargs="+", metavar="LOG", help="inference log files")
    report.add_argument("--model", help="count only this model's lines")
    report.add_argument("--model-version", help="count only this model version's lines")
    report.add_argument(
        "--psi-threshold",
        type=float,
        default=DEFAULT_PSI_THRESHOLD,
        help=f"PSI above which a feature has drifted (default {DEFAULT_PSI_THRESHOLD})",
    )
    report.add_argument(
        "--min-samples",
        type=_at_least(1),
        default=DEFAULT_MIN_SAMPLES,
        help="values a feature needs before its PSI counts, as the spec's "
        f"alerts.drift.min_samples (default {DEFAULT_MIN_SAMPLES})",
    )
    report.add_argument("--json", action="store_true", help="the JSON of GET /drift instead")
    report.add_argument("--per-bin", action="store_true", help="also each bin's shares")
    report.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    report.set_defaults(command=_report)
    return parser


def _at_least(low: int) -> Callable[[str], int]:
    def integer(text: str) -> int:  # argparse names the function in its message
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is less than {low}")
        return value

    return integer


def _names(options: list[str]) -> list[str]:
    """Column names from repeated comma-separated options, each once."""
    names = [name.strip() for option in options for name in option.split(",")]
    return list(dict.fromkeys(name for name in names if name))


def _fit(args: argparse.Namespace) -> None:
    numeric, categorical = _names(args.numeric), _names(args.categorical)
    prediction = [] if args.prediction is None else [args.prediction]
    text_columns = list(dict.fromkeys([*categorical, *prediction]))
    for column in text_columns:
        if column in numeric:
            raise InputError(f"column {column!r} is chosen as numeric and as categorical")
    # Feature name -> column: the prediction column becomes feature `prediction`.
    features = {name: name for name in [*numeric, *categorical]}
    if args.prediction is not None:
        if PREDICTION_FEATURE in features:
            raise InputError(f"feature {PREDICTION_FEATURE!r} is chosen twice (with --prediction)")
        features[PREDICTION_FEATURE] = args.prediction
    if not features:
        raise InputError("choose columns with --numeric, --categorical or --prediction")
    table = read_table(args.table, numeric, text_columns, args.format or table_format(args.table))
    samples = {name: table[column] for name, column in features.items()}
    kinds = set(features) - set(numeric)
    try:
        baseline = Baseline.fit(samples, args.bins, args.max_categories, categorical=kinds)
    except ValueError as exc:  # e.g. a numeric column without a single number
        raise InputError(f"{args.table}: {exc}") from exc
    _write(args.output, lambda: baseline.save(args.output))
    rows = len(next(iter(table.values())))
    print(
        f"{len(baseline.features)} features ({len(numeric)} numeric, {len(kinds)} categorical) "
        f"fitted on {rows} rows of {args.table} -> {args.output}"
    )


def _report(args: argparse.Namespace) -> None:
    try:
        baseline = Baseline.load(args.baseline)
    except OSError as exc:
        raise cannot_read(args.baseline, exc) from exc
    except ValueError as exc:  # names the file
        raise InputError(str(exc)) from exc
    drift = log_drift(
        baseline,
        args.logs,
        psi_threshold=args.psi_threshold,
        min_samples=args.min_samples,
        model=args.model,
        model_version=args.model_version,
    )
    for name in drift.absent_features:
        print(
            f"{PROG}: warning: no counted line has feature {name!r}: all counted as missing",
            file=sys.stderr,
        )
    text = (
        json.dumps(drift_json(drift.model, drift.model_version, drift.report), indent=2) + "\n"
        if args.json
        else format_report(drift, per_bin=args.per_bin)
    )
    if args.output is None:
        sys.stdout.write(text)
    else:
        _write(args.output, lambda: write_atomically(args.output, text))


def _write(path: Path, write: Callable[[], None]) -> None:
    try:
        write()
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _verdict(feature: FeatureDrift, report: DriftReport) -> str:
    if feature.psi is None:
        return "no data"
    if feature.count < report.min_samples:
        flags = [f"fewer than {report.min_samples} values"]
    else:
        flags = [f"PSI > {report.psi_threshold:g}"] if feature.exceeds_threshold else []
    flags += ["significant"] if feature.significant else []
    return ", ".join(flags) or "-"


def format_report(drift: LogDrift, *, per_bin: bool = False) -> str:
    """The report as a text table: one row per feature; with `per_bin`, each bin's shares."""
    report = drift.report
    span = (
        f"{drift.first:%Y-%m-%d %H:%M:%S} to {drift.last:%Y-%m-%d %H:%M:%S} UTC "
        f"({report.window_seconds:.0f} s)"
        if drift.first is not None and drift.last is not None
        else "no timestamps"
    )
    lines = [
        f"{drift.model} {drift.model_version}: {drift.predictions} predictions, {span}",
        "",
    ]
    rows = [_COLUMNS]
    for f in report.features:
        outside = None if f.out_of_range_share is None else 100 * f.out_of_range_share
        rows.append(
            (
                f.feature,
                f.kind,
                str(f.count),
                str(f.missing),
                "-" if outside is None else f"{outside:.1f} %",
                _number(f.psi),
                _number(f.ks),
                _number(f.js),
                _number(f.critical_value),
                _verdict(f, report),
            )
        )
    lines += _aligned(rows, right={2, 3, 4, 5, 6, 7, 8})
    if per_bin:
        for f in report.features:
            lines += ["", f"{f.feature}:"]
            bin_rows = [("  bin", "baseline", "current")] + [
                (f"  {b.bin}", f"{100 * b.baseline:.2f} %", f"{100 * b.current:.2f} %")
                for b in f.bins
            ]
            lines += _aligned(bin_rows, right={1, 2})
    return "\n".join(lines) + "\n"


def _aligned(rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
