"""Users' files for the drift command: training tables (CSV or JSON lines) in, JSON out.

Every problem with a file is an `InputError` whose message names the file and, where there is
one, the line and the column, so the command can print it as one line.
"""

from __future__ import annotations

import csv
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from mlobs.drift.bins import Value

TableFormat = Literal["csv", "jsonl"]
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson", ".json")


class InputError(ValueError):
    """A user's file that cannot be used as asked: the message says where and why."""


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder renamed over it, so
    `path` holds either the old or the whole new content, never a part."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 leaves the umask in charge of the mode, as a plain open() would.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def table_format(path: Path) -> TableFormat:
    """The format a file name suggests: JSON lines for .jsonl, .ndjson and .json, else CSV."""
    return "jsonl" if path.suffix.lower() in JSON_LINES_SUFFIXES else "csv"


def cannot_read(path: Path, exc: OSError) -> InputError:
    """The error for a file that cannot be opened or read."""
    return InputError(f"cannot read {path}: {exc.strerror or exc}")


@contextmanager
def _reading(path: Path, *, text: bool) -> Iterator[IO[Any]]:
    """`path` open for reading; InputError naming it when opening or reading fails, or when its
    text is not UTF-8."""
    try:
        # utf-8-sig: spreadsheet programs start their CSV files with a byte-order mark.
        with open(path, encoding="utf-8-sig", newline="") if text else open(path, "rb") as file:
            yield file
    except OSError as exc:
        raise cannot_read(path, exc) from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Line number and object of each non-blank line of a JSON-lines file; InputError naming the
    file (and line) when it is unreadable, has no such line, or a line is not a JSON object."""
    empty = True
    with _reading(path, text=False) as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"{path} line {number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(value, dict):
                raise InputError(f"{path} line {number}: not a JSON object")
            empty = False
            yield number, value
    if empty:
        raise InputError(f"{path} is empty")


def read_table(
    path: Path,
    numeric: Sequence[str],
    categorical: Sequence[str],
    table_format: TableFormat = "csv",
) -> dict[str, list[Value]]:
    """The chosen columns of a training table, numbers as floats and categories as strings.

    An empty cell, a JSON null or a key absent from a line is a missing value (None).
    InputError when the file is unreadable or empty, a column does not exist, a numeric column
    holds something that is not a number, or a line is malformed.
    """
    columns = [_Column(name, name in numeric) for name in (*numeric, *categorical)]
    read = _read_csv if table_format == "csv" else _read_json_lines
    rows = read(path, columns)
    if rows == 0:
        raise InputError(f"{path} has no data rows")
    return {column.name: column.values for column in columns}


class _Column:
    """One chosen column, converted value by value; errors name the line."""

    def __init__(self, name: str, numeric: bool) -> None:
        self.name = name
        self.numeric = numeric
        self.values: list[Value] = []

    def add(self, raw: Any, path: Path, line: int) -> None:
        if raw is None or raw == "":
            self.values.append(None)
        elif self.numeric:
            self.values.append(self._number(raw, path, line))
        elif isinstance(raw, str | int | float):
            self.values.append(str(raw))
        else:
            raise InputError(f"{path} line {line}: column {self.name!r}: {raw!r} is not a category")

    def _number(self, raw: Any, path: Path, line: int) -> float:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        if isinstance(raw, str):
            try:
                return float(raw)
            except ValueError:
                pass
        raise InputError(f"{path} line {line}: column {self.name!r}: {raw!r} is not a number")


def _no_column(path: Path, name: str, found: Sequence[str]) -> InputError:
    shown = ", ".join(list(found)[:20]) + (", ..." if len(found) > 20 else "")
    return InputError(f"{path}: no column {name!r} (columns: {shown})")


def _read_csv(path: Path, columns: Sequence[_Column]) -> int:
    """Fill `columns` from a CSV file with a header line; the number of data rows."""
    with _reading(path, text=True) as file:
        reader = csv.reader(file, strict=True)  # an unterminated quote is an error
        try:
            header = next(reader, None)
            if header is None:
                raise InputError(f"{path} is empty")
            missing = [c.name for c in columns if c.name not in header]
            if missing:
                raise _no_column(path, missing[0], header)
            positions = [header.index(c.name) for c in columns]
            rows = 0
            for row in reader:
                if not row:  # a blank line
                    continue
                if len(row) != len(header):
                    raise InputError(
                        f"{path} line {reader.line_num}: {len(row)} fields, "
                        f"the header has {len(header)}"
                    )
                for column, position in zip(columns, positions, strict=True):
                    column.add(row[position], path, reader.line_num)
                rows += 1
        except csv.Error as exc:  # e.g. a NUL byte, an unterminated quote
            raise InputError(f"{path} line {reader.line_num}: not valid CSV ({exc})") from exc
    return rows


def _read_json_lines(path: Path, columns: Sequence[_Column]) -> int:
    """Fill `columns` from a JSON-lines file, one object per line; the number of objects."""
    keys: set[str] = set()
    rows = 0
    for number, row in json_lines(path):
        keys.update(row)
        for column in columns:
            column.add(row.get(column.name), path, number)
        rows += 1
    for column in columns:
        if column.name not in keys:
            raise _no_column(path, column.name, sorted(keys))
    return rows
