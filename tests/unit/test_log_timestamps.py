"""The `timestamp` of every log line: UTC, ISO 8601, microseconds, as Logstash parses it."""

from __future__ import annotations

import time

import pytest

from mlobs.logs import UtcTimestamper

# time.time_ns() -> the timestamp written: six digits of microseconds (padded, truncated, never
# rounded up into the next second) and the date of the second it falls in, also right after one
# second turns into the next (the date is formatted once per second).
TIMES = [
    (1_764_380_656_677_852_999, "2025-11-29T01:44:16.677852Z"),
    (1_764_380_656_000_001_000, "2025-11-29T01:44:16.000001Z"),
    (1_764_380_657_000_000_000, "2025-11-29T01:44:17.000000Z"),
    (1_764_380_657_999_999_999, "2025-11-29T01:44:17.999999Z"),
    (1_798_761_599_999_999_000, "2026-12-31T23:59:59.999999Z"),
    (1_798_761_600_000_000_000, "2027-01-01T00:00:00.000000Z"),
]


def test_each_timestamp_is_the_utc_time_to_the_microsecond(monkeypatch):
    clock = UtcTimestamper()
    nanoseconds = iter(ns for ns, _ in TIMES)
    monkeypatch.setattr(time, "time_ns", lambda: next(nanoseconds))
    assert [clock.now() for _ in TIMES] == [written for _, written in TIMES]


def test_a_structlog_event_gets_the_timestamp(monkeypatch):
    monkeypatch.setattr(time, "time_ns", lambda: TIMES[0][0])
    event = UtcTimestamper()(None, "info", {"event": "server_ready"})
    assert event == {"event": "server_ready", "timestamp": TIMES[0][1]}


@pytest.fixture(autouse=True)
def _local_time_far_from_utc(monkeypatch):
    # A server whose local time is not UTC still writes UTC.
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
