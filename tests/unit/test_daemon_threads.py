"""The prediction thread pool (mlobs/daemon_threads.py): what ThreadPoolExecutor does, except
that a call that never returns does not keep the process alive (tests/integration/
test_process_life.py shows it for a whole server)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from mlobs.daemon_threads import DaemonThreadPool

TIMEOUT = 30  # seconds for anything that should take milliseconds


def test_calls_run_in_at_most_the_threads_given_named_like_thread_pool_executors():
    pool = DaemonThreadPool(3, "work")
    release = threading.Event()
    started = threading.Semaphore(0)

    def hold() -> str:
        started.release()
        release.wait(TIMEOUT)
        return threading.current_thread().name

    futures = [pool.submit(hold) for _ in range(5)]
    for _ in range(3):
        assert started.acquire(timeout=TIMEOUT)
    assert not started.acquire(timeout=0.2)  # the other two wait for a thread
    release.set()
    names = [f.result(timeout=TIMEOUT) for f in futures]
    assert set(names) <= {"work_0", "work_1", "work_2"} and len(set(names)) == 3
    pool.shutdown()


def test_an_idle_thread_takes_the_next_call_instead_of_a_new_thread():
    pool = DaemonThreadPool(4, "work")
    names = {pool.submit(lambda: threading.current_thread().name).result(TIMEOUT) for _ in "abc"}
    assert names == {"work_0"}
    pool.shutdown()


def test_a_calls_result_or_exception_reaches_its_future():
    pool = DaemonThreadPool(2, "work")
    assert pool.submit(int, "ff", base=16).result(TIMEOUT) == 255
    assert pool.submit(divmod, 7, 2).result(TIMEOUT) == (3, 1)
    with pytest.raises(ZeroDivisionError):
        pool.submit(divmod, 7, 0).result(TIMEOUT)
    pool.shutdown()


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_shutdown_cancels_the_calls_not_started_if_asked_and_takes_no_more():
    pool = DaemonThreadPool(1, "cancelling")
    release = threading.Event()
    running = pool.submit(release.wait, TIMEOUT)
    waiting = pool.submit(lambda: "never")
    [thread] = _threads("cancelling_0")
    pool.shutdown(wait=False, cancel_futures=True)
    assert waiting.cancelled()
    with pytest.raises(RuntimeError, match=r"^cannot schedule new calls after shutdown$"):
        pool.submit(lambda: "late")
    release.set()
    assert running.result(TIMEOUT) is True  # a running call finishes
    thread.join(TIMEOUT)  # and then its thread stops
    assert not thread.is_alive()


def test_by_default_shutdown_lets_the_calls_queued_run_and_waits_for_them():
    pool = DaemonThreadPool(1, "draining")
    release = threading.Event()
    first = pool.submit(release.wait, TIMEOUT)
    second = pool.submit(time.sleep, 0.2)
    threading.Timer(0.1, release.set).start()
    pool.shutdown()
    assert (first.done(), second.done(), second.cancelled()) == (True, True, False)
    assert _threads("draining_0") == []


NEVER_RETURNS = """
import time
from mlobs.daemon_threads import DaemonThreadPool
pool = DaemonThreadPool(1, "stuck")
pool.submit(time.sleep, 3600)
pool.shutdown(wait=False, cancel_futures=True)
print("main done", flush=True)
"""


def test_a_call_that_never_returns_does_not_keep_the_process_alive():
    done = subprocess.run(
        [sys.executable, "-c", NEVER_RETURNS], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "main done\n", "")
