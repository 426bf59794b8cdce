"""Where a model's predict runs: awaited, in a bounded thread pool, or inline on the event loop.

Production models take milliseconds to seconds. A synchronous predict called on the event loop
stalls everything the process serves, health checks and scrapes included, so by default it runs in
a thread pool (numpy, PyTorch and most native code release the GIL, so threads run in parallel).
An `async def predict` is awaited. A model whose predict takes microseconds may opt in to running
inline (`inline_predict = True`), which saves the hand-over to a thread.

Awaited and threaded predictions share one per-process limit (inline ones cannot overlap on the
loop, so they take no slot): at most `concurrency` predictions run at once and at most
`queue` wait for a slot; past that a request is refused at once (Overloaded, answered 503) rather
than queued without bound. A prediction that takes longer than the timeout is abandoned by its
caller (PredictionTimeout, answered 504); a synchronous one that keeps running in its thread
keeps its slot until it returns, so the limit stays true.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

from pydantic import BaseModel

from mlobs.daemon_threads import DaemonThreadPool
from mlobs.model import Prediction, ServedModel


class Overloaded(Exception):
    """Every slot is busy and the wait queue is full: the request is refused at once."""


class PredictionTimeout(Exception):
    """The prediction took longer than the timeout; its caller stops waiting."""


class ConcurrencyLimit:
    """At most `slots` holders at once, at most `queue` waiting, first come first served.

    Used from one event loop; `release` may be called from a loop callback.
    """

    def __init__(self, slots: int, queue: int) -> None:
        self.slots = slots
        self.queue = queue
        self.running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        # Called after every change of `running` or `queued` (multi-worker gauges); None: no cost.
        self.on_change: Callable[[], None] | None = None

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return len(self._waiters)

    async def acquire(self) -> None:
        """Take a slot, waiting in line if needed; raise Overloaded when the line is full."""
        if self.running < self.slots and not self._waiters:
            self.running += 1
            self._changed()
            return
        if len(self._waiters) >= self.queue:
            raise Overloaded(f"{self.slots} running, {self.queue} waiting")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._changed()
        try:
            await waiter  # `release` hands its slot over: `running` stays as it is
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot, then cancelled before using it: pass it on
            else:
                # A release between the cancellation and now has already dropped it.
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                self._changed()
            raise

    def release(self) -> None:
        """Give the slot to the first waiter, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._changed()
                return
        self.running -= 1
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


# A prediction and the seconds spent inside the model's predict (queueing excluded). A plain
# tuple: this is on every request's path.
Ran = tuple[Prediction, float]


def predict_mode(model: ServedModel) -> str:
    """`async` for an `async def predict`, `inline` when the model opts in, else `thread`."""
    if inspect.iscoroutinefunction(model.predict):
        return "async"
    return "inline" if getattr(model, "inline_predict", False) else "thread"


class PredictionRunner:
    """Runs `model.predict` in the model's mode, within the concurrency limit and the timeout."""

    def __init__(self, model: ServedModel, concurrency: int, queue: int, timeout: float) -> None:
        self.model = model
        self.mode = predict_mode(model)
        self.inline = self.mode == "inline"
        self.limit = ConcurrencyLimit(concurrency, queue)
        self.timeout = timeout
        self._executor: DaemonThreadPool | None = None
        if self.mode == "thread":
            # One thread per slot: the limit, not the pool, decides how many run.
            self._executor = DaemonThreadPool(concurrency, "mlobs-predict")

    def run_now(self, payload: BaseModel) -> Ran | None:
        """An inline model's prediction, called right here; None for the other modes.

        Inline predictions take no slot: on the event loop they cannot overlap, and a
        microsecond model has nothing to queue for or time out. This is the request path of the
        sample models, kept free of a coroutine, a timer and the limit's bookkeeping.
        """
        return self._call(payload) if self.inline else None

    async def run(
        self, payload: BaseModel, before: Callable[[], Awaitable[None]] | None = None
    ) -> Ran:
        """Predict `payload` within a slot and the timeout; `before` (injected faults) runs
        inside both, as a slow model would.

        Raises Overloaded (no slot, line full), PredictionTimeout, or what predict raised (a
        TimeoutError of the model's own, say from a feature store, stays the model's error).
        """
        try:
            async with asyncio.timeout(self.timeout) as deadline:
                await self.limit.acquire()
                if self.mode == "thread":
                    return await self._in_thread(payload, before)
                try:
                    if before is not None:
                        await before()
                    if self.mode == "async":
                        start = perf_counter()
                        prediction = await self.model.predict(payload)  # type: ignore[misc]
                        return prediction, perf_counter() - start
                    return self._call(payload)
                finally:
                    self.limit.release()
        except TimeoutError as exc:
            if deadline.expired():
                raise PredictionTimeout(f"no prediction within {self.timeout:g} s") from exc
            raise

    async def warm_up(self, payload: BaseModel) -> None:
        """One prediction before readiness, in the model's mode but with no limit or timeout:
        a first call may load weights or compile for longer than any request may take."""
        if self.mode == "async":
            await self.model.predict(payload)  # type: ignore[misc]
        elif self.mode == "thread":
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self.model.predict, payload)
        else:
            self.model.predict(payload)

    def _call(self, payload: BaseModel) -> Ran:
        start = perf_counter()
        prediction = self.model.predict(payload)
        return prediction, perf_counter() - start

    async def _in_thread(
        self, payload: BaseModel, before: Callable[[], Awaitable[None]] | None
    ) -> Ran:
        # The slot is held until the thread returns, even when the caller stops waiting.
        try:
            if before is not None:
                await before()
            done = asyncio.get_running_loop().run_in_executor(self._executor, self._call, payload)
        except BaseException:
            self.limit.release()
            raise
        done.add_done_callback(self._thread_finished)
        # shield: a timeout cancels our wait, not the future whose end releases the slot.
        return await asyncio.shield(done)

    def _thread_finished(self, done: asyncio.Future[Any]) -> None:
        self.limit.release()
        if not done.cancelled():
            done.exception()  # retrieved: an abandoned prediction's error is not "never retrieved"

    def close(self) -> None:
        """Stop the thread pool; predictions still running finish in their threads, which do
        not keep the process from exiting."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
