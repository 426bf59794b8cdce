"""Graceful shutdown: on SIGTERM a model server drains before it stops.

A rolling deploy, `docker compose stop` or Kubernetes sends SIGTERM. Stopping at once resets every
prediction in flight. Instead, at the first SIGTERM (or Ctrl-C): readiness answers 503 at once, so
load balancers stop sending; new predictions are shed with 503 and Retry-After; the predictions in
flight finish within the grace period; then the server's own handler runs (uvicorn closes its
sockets, the app's lifespan flushes log lines and drift counts). A second Ctrl-C stops at once.

The handler wraps the one the server installed, so it is installed from the app's lifespan, which
uvicorn runs after installing its own, in the main thread. Elsewhere (a test client's thread)
nothing is installed and `begin` can be called directly.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_POLL_SECONDS = 0.05  # how often the drain looks at the number of requests left


class GracefulShutdown:
    """Counts prediction requests in flight and drains them when the process is asked to stop."""

    def __init__(self, grace_seconds: float, log: Any) -> None:
        self.grace_seconds = grace_seconds
        self.log = log
        self.draining = False
        self.active = 0  # prediction requests being answered; the middleware counts them
        self._previous: dict[int, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    def install(self) -> None:
        """Wrap the server's SIGTERM/SIGINT handlers; only in the main thread, inside the loop."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def uninstall(self) -> None:
        """Put the server's handlers back (the server restores its own after that)."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self.draining:
            # Ctrl-C twice: stop now. A second SIGTERM is no such request: with several workers,
            # each gets one from uvicorn's supervisor on top of a signal to the process group.
            if sig == signal.SIGINT:
                self._hand_over(sig, frame)
            return
        assert self._loop is not None
        self.draining = True
        self._loop.call_soon_threadsafe(self._start_drain, sig, frame)

    def _start_drain(self, sig: int, frame: FrameType | None) -> None:
        self._drain_task = asyncio.get_running_loop().create_task(self._drain_then_stop(sig, frame))

    def begin(self) -> None:
        """Stop taking predictions: readiness and new predictions answer 503 from now on."""
        self.draining = True

    async def drained(self) -> bool:
        """Wait until no prediction is in flight or the grace period is over; True if drained."""
        self.begin()
        deadline = time.monotonic() + self.grace_seconds
        while self.active and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_SECONDS)
        return not self.active

    async def _drain_then_stop(self, sig: int, frame: FrameType | None) -> None:
        self.log.info("draining", signal=signal.Signals(sig).name, in_flight=self.active)
        started = time.monotonic()
        if await self.drained():
            self.log.info("drained", seconds=round(time.monotonic() - started, 3))
        else:
            self.log.warning(
                "grace_period_over", grace_seconds=self.grace_seconds, in_flight=self.active
            )
        self._hand_over(sig, frame)

    def _hand_over(self, sig: int, frame: FrameType | None) -> None:
        if sig not in self._previous:  # not installed: nothing to hand over to
            return
        previous = self._previous[sig]
        if callable(previous):
            previous(sig, frame)
        elif previous != signal.SIG_IGN:  # the default action: stop the process by the signal
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)
