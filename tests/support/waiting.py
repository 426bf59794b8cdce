"""Polling with a deadline: every wait in the tests has a timeout and says what it waited for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

WAIT = 60.0  # seconds any one condition may take unless a test says otherwise


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT, every: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except httpx.HTTPError as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
