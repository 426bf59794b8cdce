"""Structured JSON logging: the structlog configuration and the per-request inference event.

One JSON object per line, to stdout and, when MLOBS_LOG_FILE is set, to that file with size-based
rotation (Filebeat tails it). structlog's `event` key is renamed to `message` because `event`
collides with ECS `event.*` fields in Logstash and Elasticsearch.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

from mlobs.settings import Settings, SettingsError

INFERENCE = "inference"
_JSON_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY
_LEVEL_BY_STATUS = {
    "success": "info",
    "client_error": "warning",
    "server_error": "error",
    "shed": "warning",  # the server protected itself as designed; the error ratio still counts it
}


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    while written < len(data):  # only on a full pipe or an interrupted write
        written += os.write(fd, data[written:])


class RotatingFile:
    """Appends lines to a file and rotates it by size like logging's RotatingFileHandler
    (`x.log` -> `x.log.1` -> ... -> `x.log.<backups>`), tracking the size instead of asking the
    stream for it on every line."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._open()

    def _open(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self.size = os.fstat(self.fd).st_size

    def write(self, line: bytes) -> None:
        if self.size and self.size + len(line) > self.max_bytes:
            self._rotate()
        _write_all(self.fd, line)
        self.size += len(line)

    def _rotate(self) -> None:
        os.close(self.fd)
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def close(self) -> None:
        os.close(self.fd)


class JsonLinesSink:
    """The structlog logger behind every mlobs event: writes each JSON line to stdout and, when
    configured, to the log file.

    Inside an event loop, lines are queued and written at the loop's next turn, together with the
    other lines of that turn: under load that is one write per file per turn instead of two writes
    per request, which cost more than everything else the instrumentation does. A line thus
    reaches the file a moment after its response, never later than the loop's next turn. Outside
    a loop, lines are written at once. `flush` writes what is queued; create_app calls it at
    shutdown, and it runs at exit.

    A destination that fails (a full disk, a closed stdout) does not stop the other one nor the
    caller: the failure is reported once on stderr, and again when writing works once more.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._file: RotatingFile | None = None
        self._stdout: Any = None  # the sys.stdout that _stdout_fd belongs to
        self._stdout_fd: int | None = None
        self._queued: list[bytes] = []
        self._flush_loop: asyncio.AbstractEventLoop | None = None  # where a flush is scheduled
        self._failing: set[str] = set()  # destinations whose last write failed

    def open(self, settings: Settings) -> None:
        """Start writing to the file in `settings` (or to stdout only); the old file is closed."""
        new_file = None
        if settings.log_file is not None:
            try:
                new_file = RotatingFile(
                    settings.log_file, settings.log_max_bytes, settings.log_backup_count
                )
            except OSError as exc:
                raise SettingsError(
                    f"MLOBS_LOG_FILE={settings.log_file}: cannot open: {exc}"
                ) from exc
        with self._lock:
            self._write_queued()  # queued lines belong to the old file
            old, self._file = self._file, new_file
        if old is not None:
            old.close()

    def write_line(self, line: bytes) -> None:
        """Write one complete line (ending in a newline) now, or at the loop's next turn."""
        self._queued.append(line)  # atomic: no lock on the request path
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._flush_loop is not loop:
            self._flush_loop = loop
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the queued lines."""
        with self._lock:
            self._write_queued()

    def _write_queued(self) -> None:
        self._flush_loop = None  # lines queued from now on schedule another flush
        # Take what is queued now; lines appended meanwhile stay for the next flush.
        taken = len(self._queued)
        if not taken:
            return
        data = b"".join(self._queued[:taken])
        del self._queued[:taken]
        if self._file is not None:
            self._guarded(f"the log file {self._file.path}", self._file.write, data)
        self._guarded("stdout", self._write_stdout, data)

    def _write_stdout(self, data: bytes) -> None:
        if sys.stdout is not self._stdout:  # first line, or stdout was replaced (tests)
            self._stdout = sys.stdout
            self._stdout_fd = _fileno(sys.stdout)
        if self._stdout_fd is None:
            self._stdout.write(data.decode())
        else:
            _write_all(self._stdout_fd, data)

    def _guarded(self, destination: str, write: Callable[[bytes], None], data: bytes) -> None:
        try:
            write(data)
        except OSError as exc:
            if destination not in self._failing:
                self._failing.add(destination)
                _complain(f"cannot write to {destination}: {exc}; its log lines are lost")
        else:
            if destination in self._failing:
                self._failing.discard(destination)
                _complain(f"writing to {destination} again")

    def msg(self, message: bytes) -> None:
        self.write_line(message + b"\n")

    # structlog calls the method named after the level.
    debug = info = warning = error = critical = exception = msg


def _complain(problem: str) -> None:
    # Straight to stderr: the log is what fails.
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"mlobs: {problem}\n")
        sys.stderr.flush()


def _fileno(stream: Any) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # an in-memory stream
        return None


class UtcTimestamper:
    """structlog processor: `timestamp` as ISO 8601 UTC with microseconds and `Z`.

    Formats the date and time once per second; about four times cheaper than datetime.isoformat().
    """

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        """The current time, e.g. 2026-11-29T01:44:16.677852Z."""
        second, nanos = divmod(time.time_ns(), 1_000_000_000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        # str(1000000 + micros)[1:] pads to six digits, cheaper than a format spec.
        return self._prefix + str(1_000_000 + nanos // 1000)[1:] + "Z"

    def __call__(self, _logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict["timestamp"] = self.now()
        return event_dict


_SINK = JsonLinesSink()
atexit.register(_SINK.flush)


def flush_logs() -> None:
    """Write the log lines still queued (see JsonLinesSink)."""
    _SINK.flush()


def configure_logging(settings: Settings) -> None:
    """Send mlobs events as JSON lines to stdout and, if configured, to a rotating log file.

    Safe to call again: the newest settings win.
    """
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            UtcTimestamper(),
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=lambda *_: _SINK,
        cache_logger_on_first_use=True,
    )
    _SINK.open(settings)


def get_logger(**context: Any) -> Any:
    """A structlog logger writing mlobs JSON events, with `context` bound to every line."""
    return structlog.get_logger().bind(**context)


@dataclass(slots=True)
class InferenceRecord:
    """What one request contributes to its inference event; filled in as the request proceeds.

    `status` is the outcome label of DESIGN.md (success, client_error, server_error, shed):
    whatever answers the request with an error calls `failed`, or `shed` when the server refused
    it to protect itself.
    """

    request_id: str
    input_hash: str | None = None
    prediction: str | None = None
    confidence: float | None = None
    features: Mapping[str, float] | None = None
    error_type: str | None = None
    raw_input: Any = None
    predict_ms: float | None = None  # time inside the model's predict, when it ran
    trace: tuple[str, str] | None = None  # (trace_id, span_id) of a valid traceparent header
    status: str = "success"

    def failed(self, error_type: str, http_status: int) -> None:
        """The request is answered with error `http_status`; the first error type is kept."""
        self.error_type = self.error_type or error_type
        self.status = "server_error" if http_status >= 500 else "client_error"

    def shed(self, error_type: str) -> None:
        """The request is refused with 503 because the server is overloaded or stopping."""
        self.error_type = self.error_type or error_type
        self.status = "shed"


# The record of the request being handled: set by the middleware, filled in by the endpoint and the
# error handlers, which run in the same task. Cheaper than threading it through FastAPI parameters.
CURRENT_RECORD: ContextVar[InferenceRecord | None] = ContextVar("mlobs_record", default=None)


def _json_fallback(value: Any) -> Any:
    # Model code may hand over mappings that are not dicts, or values orjson does not know.
    return dict(value) if isinstance(value, Mapping) else repr(value)


class InferenceLog:
    """Writes the one `inference` event per prediction request (DESIGN.md, Inference log event).

    Same fields and sink as a structlog event, rendered directly with orjson: structlog's
    processor chain cost as much as all the request's metrics together, once per request.
    """

    def __init__(self, model: str, model_version: str) -> None:
        self.model = model
        self.model_version = model_version
        self._clock = UtcTimestamper()

    def write(self, record: InferenceRecord, latency_ms: float) -> None:
        """Log one finished request: `latency_ms` is what the caller waited (queueing included),
        `predict_ms` the time inside predict; a request with a valid traceparent carries
        `trace_id` and `span_id`, errors `error_type`, opted-in raw input `raw_input`."""
        status = record.status
        event: dict[str, Any] = {
            "timestamp": self._clock.now(),
            "level": _LEVEL_BY_STATUS[status],
            "message": INFERENCE,
            "model": self.model,
            "model_version": self.model_version,
            "request_id": record.request_id,
            "input_hash": record.input_hash,
            "prediction": record.prediction,
            "confidence": record.confidence,
            # Microsecond precision; int() and a division cost a tenth of round(x, 3).
            "latency_ms": int(latency_ms * 1000.0 + 0.5) / 1000.0,
            "status": status,
            "features": record.features,
        }
        if record.predict_ms is not None:
            event["predict_ms"] = record.predict_ms
        if record.trace is not None:
            event["trace_id"], event["span_id"] = record.trace
        if record.error_type is not None:
            event["error_type"] = record.error_type
        if record.raw_input is not None:
            event["raw_input"] = record.raw_input
        _SINK.write_line(orjson.dumps(event, default=_json_fallback, option=_JSON_OPTIONS))
