"""Polling with a deadline: every wait in the tests has a timeout and says what it waited for.

A check answers with a bool, or with a collection whose emptiness means "not yet" (the list of
matching alerts, say). Anything else is refused with a TypeError naming the wait: an
`httpx.Response` has no `__bool__`, so `lambda: client.get(url)` would be satisfied by any answer,
a 400 included; a count of -1 meaning "error" is truthy; so is any error text. A check that wants
its reason for "not yet" in the timeout message raises `NotYet(reason)`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sized
from typing import Any

import httpx
import pytest

WAIT = 60.0  # seconds any one condition may take unless a test says otherwise
PROGRESS_EVERY = 30.0  # seconds between "still waiting" lines on long waits


class NotYet(Exception):
    """Raised by a check to keep waiting; its message is the reason shown if the wait times out."""


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


_report: Callable[[str], None] = _to_stderr


def set_progress_reporter(report: Callable[[str], None]) -> Callable[[str], None]:
    """Where "still waiting" lines go (stderr by default); returns the previous reporter."""
    global _report
    previous, _report = _report, report
    return previous


def _satisfied(what: str, result: object) -> bool:
    """Whether a check's result means "done"; TypeError for results whose truth means nothing."""
    if result is None or isinstance(result, bool):
        return bool(result)
    if isinstance(result, Sized) and not isinstance(result, str | bytes | bytearray):
        return len(result) > 0
    hint = (
        " (an httpx.Response is true whatever its status; compare response.status_code)"
        if isinstance(result, httpx.Response)
        else ""
    )
    raise TypeError(
        f"the check of the wait for {what!r} returned {type(result).__name__}{hint}: return a "
        "bool or a collection (non-empty means done), or raise NotYet(reason)"
    )


def _shown(value: object, limit: int = 500) -> str:
    text = f"{type(value).__name__}: {value}" if isinstance(value, Exception) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float = WAIT,
    every: float = 0.5,
    progress_every: float = PROGRESS_EVERY,
) -> Any:
    """Poll `check` until it returns True or a non-empty collection, and return that.

    Transport errors (httpx.HTTPError) and NotYet count as "not yet". Fails the test naming
    `what` and the last result after `timeout` seconds; on long waits, reports progress every
    `progress_every` seconds.
    """
    if timeout <= 0 or every <= 0:
        raise ValueError(f"wait for {what!r}: timeout and every must be positive")
    start = time.monotonic()
    deadline = start + timeout
    next_report = start + progress_every
    last: object = None
    while True:
        try:
            result = check()
        except (httpx.HTTPError, NotYet) as exc:
            last = exc
        else:
            if _satisfied(what, result):
                return result
            last = result
        now = time.monotonic()
        if now >= deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {_shown(last)})")
        if now >= next_report:
            _report(
                f"still waiting for {what}: {now - start:.0f}s of {timeout:.0f}s "
                f"(last: {_shown(last, 200)})"
            )
            next_report += progress_every
        time.sleep(min(every, max(deadline - now, 0.0)))
