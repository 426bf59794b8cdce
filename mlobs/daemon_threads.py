"""A thread pool whose threads do not keep a stopping process alive.

concurrent.futures.ThreadPoolExecutor joins its threads when the interpreter exits, so a single
predict that never returns (a model stuck on a lock, or on a network call without a timeout)
kept a server that had drained, closed its connections and flushed its logs running until its
supervisor killed it (compose and Kubernetes wait for the whole grace period first). By then the
server has given up on that prediction: its caller was answered and its log line written. The
pool's threads are therefore daemon threads, which the interpreter does not wait for.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

# A call to make: its future, the function and its arguments. None tells a thread to stop.
_Call = tuple[Future, Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DaemonThreadPool(Executor):
    """Runs calls in at most `threads` daemon threads, started as calls need them and named
    `<name>_<n>` as ThreadPoolExecutor names its threads."""

    def __init__(self, threads: int, name: str) -> None:
        self._max_threads = threads
        self._name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)  # threads waiting for a call
        self._lock = threading.Lock()
        self._stopped = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Schedule `fn(*args, **kwargs)`; its future has the result or the exception."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("cannot schedule new calls after shutdown")
            future: Future = Future()
            self._calls.put((future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max_threads:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
            return future

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            future, fn, args, kwargs = call
            del call  # an idle thread keeps no reference to the last call's arguments
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args, kwargs
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more calls; with `cancel_futures`, cancel the calls not started yet; with
        `wait`, wait for the threads to finish the calls they are making."""
        with self._lock:
            self._stopped = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    call = self._calls.get_nowait()
                except queue.Empty:
                    break
                if call is not None:
                    call[0].cancel()
        for _ in threads:
            self._calls.put(None)
        if wait:
            for thread in threads:
                thread.join()
